"""Training dataset over MIMIC-ILS samples (``monai_ils.data.ils_format.read_ils_json``).

Each item is one instruction-answer pair on one image. The image goes through ``transform`` (a MONAI
``Compose`` over ``{"image": path, "variant": 0 or 1}``; default :func:`~monai_ils.train.transforms.train_image_transform`:
the shared image path ``LoadCXRd`` + ``ScaleCXRIntensityd``, equalisation of variant 1, both branches of ROSALIA:
the VLM's own image preprocessing and SAM's). With probability ``equalize_prob`` the variant is 1; the choice
depends only on (seed, epoch, index), so resumed runs and the frozen-encoder cache see the same variant. Any
problem with a sample raises a :class:`SampleError` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from monai_ils.data.ils_format import ILSSample, read_ils_json
from monai_ils.models.processing import IGNORE_INDEX, RosaliaProcessor
from monai_ils.train.transforms import train_image_transform

IMAGE_INPUT_KEYS = ("sam_pixels", "clip_pixels", "input_size", "original_size")


class SampleError(RuntimeError):
    """A training sample that cannot be prepared; the message names the sample and the file."""


class ILSTrainingDataset(Dataset):
    """Items: ``input_ids``, ``labels``, ``gt_mask`` [S, S], ``input_size``, ``positive`` and either
    pixels (``sam_pixels``, ``clip_pixels``) or cached encoder outputs (``sam_embeddings``, ``vision_features``).

    ``transform`` must turn ``{"image": path, "variant": v}`` into a dictionary holding ``sam_pixels``,
    ``clip_pixels``, ``input_size`` and ``original_size`` (default: ``train_image_transform(processor)``).
    """

    def __init__(
        self,
        samples: Sequence[ILSSample],
        processor: RosaliaProcessor,
        equalize_prob: float = 0.5,
        seed: int = 0,
        cache=None,
        on_error: str = "raise",
        transform=None,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
        self.on_error = on_error
        if not 0.0 <= float(equalize_prob) <= 1.0:
            raise ValueError(f"equalize_prob must be in [0, 1], got {equalize_prob}.")
        self.samples = list(samples)
        self.processor = processor
        self.equalize_prob = float(equalize_prob)
        self.seed = int(seed)
        self.cache = cache
        self.transform = transform if transform is not None else train_image_transform(processor)
        self.epoch = 0

    @classmethod
    def from_json(cls, path, processor: RosaliaProcessor, splits=("train",), image_root=None, **kwargs) -> ILSTrainingDataset:
        return cls(read_ils_json(path, splits=splits, image_root=image_root), processor, **kwargs)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def positive_indices(self) -> list[int]:
        return [i for i, s in enumerate(self.samples) if s.positive]

    @property
    def negative_indices(self) -> list[int]:
        return [i for i, s in enumerate(self.samples) if not s.positive]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def variants(self) -> tuple[int, ...]:
        """Augmentation variants that can occur (what the cache must hold)."""
        if self.equalize_prob <= 0.0:
            return (0,)
        return (1,) if self.equalize_prob >= 1.0 else (0, 1)

    def variant(self, index: int, epoch: int | None = None) -> int:
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch), int(index)])
        return int(rng.random() < self.equalize_prob)

    def image_inputs(self, image_path: str, variant: int) -> dict:
        """``transform`` applied to one image and variant: ``sam_pixels``, ``clip_pixels``, ``input_size``, ``original_size``."""
        out = self.transform({"image": str(image_path), "variant": int(variant)})
        missing = [k for k in IMAGE_INPUT_KEYS if k not in out]
        if missing:
            raise KeyError(f"The training transform gave no {missing} for {image_path}; it must end with RosaliaImageInputsd.")
        return out

    def _describe(self, index: int, sample: ILSSample) -> str:
        return f"sample #{index} ({sample.split}/{sample.study_key}, instruction {sample.instruction!r})"

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        try:
            try:
                return self._prepare(index, sample)
            except SampleError:
                raise
            except Exception as err:
                raise SampleError(f"Cannot prepare {self._describe(index, sample)}: {err}") from err
        except SampleError as err:
            if self.on_error == "raise":
                raise
            return {"error": str(err), "index": index}  # collate_ils drops it and reports it

    def _prepare(self, index: int, sample: ILSSample) -> dict:
        variant = self.variant(index)
        input_ids, labels = self.processor.encode_example(sample.instruction, sample.answer)
        n_seg = int((labels == self.processor.seg_token_id).sum())
        if n_seg != 1:
            raise SampleError(f"{self._describe(index, sample)}: the answer must hold exactly one [SEG], found {n_seg}.")
        item = {"input_ids": input_ids, "labels": labels, "positive": bool(sample.positive), "index": index, "variant": variant}
        if self.cache is not None:
            entry = self.cache.load(sample.image_path, variant)
            original = tuple(int(v) for v in entry["original_size"])
            item.update(sam_embeddings=entry["sam"], vision_features=entry["vision"], input_size=tuple(int(v) for v in entry["input_size"]))
        else:
            try:
                inputs = self.image_inputs(sample.image_path, variant)
            except Exception as err:
                raise SampleError(f"{self._describe(index, sample)}: cannot read image {sample.image_path}: {err}") from err
            original = inputs["original_size"]
            item.update({k: inputs[k] for k in ("sam_pixels", "clip_pixels", "input_size")})
        try:
            mask = sample.load_mask(shape=original)
        except Exception as err:
            raise SampleError(f"{self._describe(index, sample)}: cannot read mask {sample.seg_mask_path}: {err}") from err
        if mask.shape != tuple(original):
            raise SampleError(
                f"{self._describe(index, sample)}: mask {sample.seg_mask_path} is {mask.shape}, image {sample.image_path} is {tuple(original)}."
            )
        if sample.positive and not mask.any():
            raise SampleError(f"{self._describe(index, sample)}: positive sample with an empty mask {sample.seg_mask_path}.")
        item["gt_mask"] = self.processor.sam_mask(mask)
        item["original_size"] = tuple(int(v) for v in original)
        return item


def collate_ils(batch: Sequence[dict], pad_token_id: int) -> dict:
    """Right-pad ids/labels, stack images (or cached embeddings) and masks.

    Items that failed (``on_error="skip"``) are left out and listed under ``"errors"``; a batch
    without any good item is ``{"errors": [...]}`` only.
    """
    errors = [item["error"] for item in batch if "error" in item]
    batch = [item for item in batch if "error" not in item]
    if not batch:
        return {"errors": errors}
    length = max(len(item["input_ids"]) for item in batch)
    ids = torch.full((len(batch), length), int(pad_token_id), dtype=torch.long)
    labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(batch), length), dtype=torch.long)
    for i, item in enumerate(batch):
        n = len(item["input_ids"])
        ids[i, :n], labels[i, :n], attention[i, :n] = item["input_ids"], item["labels"], 1
    out = {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": attention,
        "gt_masks": torch.stack([item["gt_mask"] for item in batch]),
        "input_sizes": [item["input_size"] for item in batch],
        "original_sizes": [item["original_size"] for item in batch],
        "positive": torch.tensor([item["positive"] for item in batch]),
        "index": torch.tensor([item["index"] for item in batch]),
        "errors": errors,
    }
    for key in ("sam_pixels", "clip_pixels", "sam_embeddings", "vision_features"):
        if key in batch[0]:
            out[key] = torch.stack([item[key] for item in batch])
    return out
