"""Frozen-encoder cache: SAM image embeddings and vision-tower features computed once per image.

Both encoders are frozen during ROSALIA training, so their outputs depend only on the image and
its augmentation variant (0: as stored, 1: histogram-equalised). Entries are keyed by
(image path, variant) and guarded by a fingerprint of the encoders, so a cache built for other
weights is refused instead of silently reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from tqdm import tqdm

from monai_ils.models.processing import RosaliaProcessor
from monai_ils.models.rosalia import RosaliaModel

INFO_FILE = "cache_info.json"


IMAGE_PATH_VERSION = "LoadCXR+ScaleCXRIntensity(min-max 0..255)"
"""Names the image path the cached pixels went through (monai_ils.transforms.intensity)."""


class CacheError(RuntimeError):
    """A cache folder that does not match the model, or an image that could not be encoded."""


def describe_transform(transform) -> list:
    """Class names and plain settings (str/number/bool/tuple/list attributes, and nested transforms) of a
    transform or ``Compose``, in order."""
    from monai.transforms import Transform

    steps = getattr(transform, "transforms", None)
    if steps is None:
        steps = [transform]
    described = []
    for step in steps:
        settings = {}
        for key, value in sorted(vars(step).items()):
            if key.startswith("_"):
                continue
            if isinstance(value, (str, int, float, bool, tuple, list)):
                settings[key] = value
            elif isinstance(value, Transform):
                settings[key] = describe_transform(value)
        described.append([f"{type(step).__module__}.{type(step).__qualname__}", json.dumps(settings, sort_keys=True, default=str)])
    return described


def encoder_fingerprint(model: RosaliaModel, processor: RosaliaProcessor, transform=None) -> str:
    """Hash of the frozen encoders' configs, preprocessing (and the training ``transform``'s steps when given)
    and a checksum of their weights."""
    h = hashlib.sha1()
    cfg = model.config
    h.update(json.dumps([cfg.vision_config, cfg.sam_config, cfg.vision_select_layer, cfg.vision_select_feature], sort_keys=True, default=str).encode())
    h.update(json.dumps(processor.image_processor.to_dict(), sort_keys=True, default=str).encode())
    h.update(json.dumps([processor.settings.sam_img_size, list(processor.settings.sam_pixel_mean), list(processor.settings.sam_pixel_std)]).encode())
    h.update(IMAGE_PATH_VERSION.encode())  # caches encoded under another intensity convention are refused
    if transform is not None:  # a changed train#preprocessing is a different cache
        h.update(json.dumps(describe_transform(transform)).encode())
    for module in (model.vision_tower, model.visual_model.image_encoder):
        for name, tensor in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(f"{float(tensor.double().sum()):.6e}".encode())
    return h.hexdigest()


class FrozenEncoderCache:
    """A folder of ``.pt`` entries ``{"sam", "vision", "input_size", "original_size"}``."""

    def __init__(self, folder, fingerprint: str, dtype: torch.dtype = torch.float32):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint
        self.dtype = dtype
        info = self.folder / INFO_FILE
        if info.exists():
            saved = json.loads(info.read_text()).get("fingerprint")
            if saved != fingerprint:
                raise CacheError(f"Cache {self.folder} was built for other encoder weights or preprocessing; use an empty folder.")
        else:
            info.write_text(json.dumps({"fingerprint": fingerprint}))

    @classmethod
    def for_model(cls, folder, model: RosaliaModel, processor: RosaliaProcessor, dtype: torch.dtype = torch.float32, transform=None):
        return cls(folder, encoder_fingerprint(model, processor, transform), dtype)

    def path(self, image_path: str, variant: int) -> Path:
        digest = hashlib.sha1(f"{Path(image_path).resolve()}|{int(variant)}".encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.pt"

    def __contains__(self, item) -> bool:
        return self.path(*item).exists()

    def load(self, image_path: str, variant: int) -> dict:
        path = self.path(image_path, variant)
        if not path.exists():
            raise CacheError(f"No cached encoder outputs for {image_path} (variant {variant}); run precompute first.")
        return torch.load(path, map_location="cpu", weights_only=True)

    def save(self, image_path: str, variant: int, entry: dict) -> None:
        path = self.path(image_path, variant)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(entry, tmp)
        tmp.replace(path)

    @torch.no_grad()
    def precompute(
        self,
        model: RosaliaModel,
        processor: RosaliaProcessor,
        image_paths: Iterable[str],
        variants: Iterable[int] = (0, 1),
        batch_size: int = 4,
        progress: bool = True,
        errors: list | None = None,
        transform=None,
    ) -> int:
        """Encode every (image, variant) not cached yet; resumable. Returns how many were computed.

        ``transform`` is the training dataset's image transform (``ILSTrainingDataset.transform``; default
        ``train_image_transform(processor)``), so the cache holds what the dataset would compute.
        An unreadable image raises a CacheError naming it, or, when an ``errors`` list is given, is
        recorded there and skipped (the dataset then reports the samples that use it).
        """
        from monai_ils.train.transforms import train_image_transform

        transform = transform if transform is not None else train_image_transform(processor)
        todo = [(p, v) for p in dict.fromkeys(str(p) for p in image_paths) for v in variants if (p, v) not in self]
        model.eval()
        done = 0
        for start in tqdm(range(0, len(todo), batch_size), desc="encoding images", disable=not progress or not todo):
            chunk = todo[start : start + batch_size]
            sam, clip, sizes, originals = [], [], [], []
            kept = []
            for image_path, variant in chunk:
                try:
                    inputs = transform({"image": str(image_path), "variant": int(variant)})
                except Exception as err:
                    message = f"Cannot encode image {image_path} (variant {variant}): {err}"
                    if errors is None:
                        raise CacheError(message) from err
                    errors.append(message)
                    continue
                kept.append((image_path, variant))
                sam.append(inputs["sam_pixels"])
                clip.append(inputs["clip_pixels"])
                sizes.append(inputs["input_size"])
                originals.append(inputs["original_size"])
            if not kept:
                continue
            encoded = model.encode_images(torch.stack(sam), torch.stack(clip), sizes, originals)
            for i, (image_path, variant) in enumerate(kept):
                self.save(
                    image_path,
                    variant,
                    {
                        "sam": encoded.sam_embeddings[i].to("cpu", self.dtype).clone(),
                        "vision": encoded.vision_features[i].to("cpu", self.dtype).clone(),
                        "input_size": torch.tensor(encoded.input_sizes[i]),
                        "original_size": torch.tensor(encoded.original_sizes[i]),
                    },
                )
                done += 1
        return done
