"""ROSALIA inference: instruction in, mask (and answer text) out, with each image encoded once.

Two modes:

- ``"segment"``: the answer is teacher-forced to ``[SEG]`` and one forward pass gives the mask
  (no text; what the paper times at 20 minutes for the 12K-sample test set).
- ``"generate"``: the answer is decoded by ``RosaliaForCausalLM.generate`` (transformers' generation,
  greedy by default); every generated ``[SEG]`` gives a mask (the paper's 1.5 hours). Prompts are
  decoded as a batch.

The frozen encoders (SAM image encoder, vision tower) run once per image; their outputs live in an
LRU :class:`~monai_ils.inference.cache.EmbeddingCache` keyed by image path (or pixel hash), so the
several instructions of one image only pay for the language model and SAM's light mask decoder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from monai_ils.inference.cache import EmbeddingCache, image_key
from monai_ils.inference.transforms import ORIGINAL_SIZE_KEY, default_postprocessing, default_preprocessing
from monai_ils.models import EncodedImages, RosaliaModel, RosaliaProcessor, load_rosalia
from monai_ils.models.processing import to_rgb_uint8
from monai_ils.vocab import SEG_TOKEN

logger = logging.getLogger(__name__)

MODES = ("segment", "generate")
NO_SEG_GENERATED = "no_seg_generated"
NO_FOREGROUND = "no_foreground"

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass
class Prediction:
    """The answer to one instruction.

    mask: bool [H, W] at the image's original size, the union of the masks of every [SEG] token
    (empty when the answer has none). text: the decoded answer (None in "segment" mode).
    n_seg: number of [SEG] masks. mask_logits: [n_seg, H, W] float logits when requested.
    empty_reason: why the mask is blank, None when it is not: ``"no_seg_generated"`` (the answer has
    no [SEG], so nothing was segmented; a negative answer when the model is right) or
    ``"no_foreground"`` (a [SEG] was generated but no logit passed ``mask_threshold``).
    """

    instruction: str
    mask: np.ndarray
    text: str | None
    n_seg: int
    mode: str
    mask_logits: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)
    empty_reason: str | None = None

    @property
    def is_empty(self) -> bool:
        return not bool(self.mask.any())


@dataclass
class _Item:
    image: object
    instruction: str
    key: str


def resolve_dtype(dtype) -> torch.dtype | None:
    """torch dtype from a config string ("bfloat16", "fp16", ...), a dtype or None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).replace("torch.", "").lower()
    if name not in _DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}.")
    return _DTYPES[name]


def resolve_device(device) -> torch.device:
    """``"auto"`` picks CUDA when available; anything else goes to ``torch.device``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_network(checkpoint, device="auto", dtype=None, load_kwargs: dict | None = None) -> tuple[RosaliaModel, RosaliaProcessor]:
    """``(model, processor)`` of a local checkpoint folder: the bundles' ``network_def``.

    ``dtype`` may be a string such as "bfloat16" (default: float32 on CPU, bfloat16 on CUDA).
    """
    folder = Path(checkpoint)
    if not folder.is_dir():
        raise FileNotFoundError(f"RosaliaPredictor: checkpoint folder {folder} does not exist.")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype)
    if dtype is None and device.type == "cuda":
        dtype = torch.bfloat16
    return load_rosalia(folder, dtype=dtype, device=device, **(load_kwargs or {}))


class RosaliaPredictor:
    """Answer instructions on chest X-rays with a ROSALIA model.

    Args:
        model, processor: a loaded model and its processor (see :meth:`from_pretrained`).
        mode: default mode, "segment" or "generate".
        batch_size: prompts per forward pass (instructions of one or several images).
        cache_size: images whose encoder outputs are kept (0 disables the cache).
        max_new_tokens: answer length limit in "generate" mode.
        mask_threshold: foreground where the mask logit is above it (LISA: 0); used only to build the
            default ``postprocessing``.
        preprocessing: dictionary transform reading ``{"image": path}`` into a ``[1, H, W]`` uint8 image
            (default: :func:`~monai_ils.inference.transforms.default_preprocessing`, the shared image path).
        postprocessing: dictionary transform turning ``{"pred": [n_seg, H, W] logits, "original_size": (H, W)}``
            into ``{"pred": [1, H, W] bool}`` (default: threshold, then resize to the original image).
        generation_kwargs: options of transformers' ``generate`` (``num_beams``, ``do_sample``,
            ``temperature``, ``repetition_penalty`` ...); default greedy.
    """

    def __init__(
        self,
        model: RosaliaModel,
        processor: RosaliaProcessor,
        mode: str = "generate",
        batch_size: int = 8,
        cache_size: int = 64,
        max_new_tokens: int = 32,
        mask_threshold: float = 0.0,
        generation_kwargs: dict | None = None,
        preprocessing=None,
        postprocessing=None,
    ) -> None:
        self.model = model.eval()
        self.processor = processor
        self.mode = self._check_mode(mode)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.batch_size = int(batch_size)
        self.cache = EmbeddingCache(cache_size)
        self.max_new_tokens = int(max_new_tokens)
        self.mask_threshold = float(mask_threshold)
        self.preprocessing = preprocessing if preprocessing is not None else default_preprocessing()
        self.postprocessing = postprocessing if postprocessing is not None else default_postprocessing(self.mask_threshold)
        self.generation_kwargs = dict(generation_kwargs or {})
        self.encoded_images = 0  # how many times the frozen encoders ran (one per image when cached)

    # ------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, checkpoint, device="auto", dtype=None, load_kwargs: dict | None = None, **predictor_kwargs) -> RosaliaPredictor:
        """Load a local checkpoint folder in any layout ``load_rosalia`` reads (rosalia, lisa, hf_llava).

        ``load_kwargs`` go to the loader (``vision_tower_path``, ``sam_checkpoint`` ...); ``dtype`` may be
        a string such as "bfloat16" (default: float32 on CPU, bfloat16 on CUDA).
        """
        model, processor = load_network(checkpoint, device, dtype, load_kwargs)
        return cls(model, processor, **predictor_kwargs)

    @classmethod
    def from_network(cls, network: tuple[RosaliaModel, RosaliaProcessor], **predictor_kwargs) -> RosaliaPredictor:
        """A predictor around a bundle's ``network_def`` (the ``(model, processor)`` of :func:`load_network`)."""
        model, processor = network
        return cls(model, processor, **predictor_kwargs)

    @staticmethod
    def _check_mode(mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"Unknown inference mode {mode!r}; expected one of {list(MODES)}.")
        return mode

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------------------ encoding
    @torch.no_grad()
    def encode(self, image, key: str | None = None) -> EncodedImages:
        """Frozen-encoder outputs of one image (path, PIL image, array or tensor), from the cache when possible."""
        key = key or image_key(image)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        sam_pixels, clip_pixels, input_size, original_size = self.model_inputs(image)
        encoded = self.model.encode_images(sam_pixels[None], clip_pixels[None], [input_size], [original_size])
        self.encoded_images += 1
        self.cache.put(key, encoded)
        return encoded

    def model_inputs(self, image) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], tuple[int, int]]:
        """(SAM pixels, VLM pixels, SAM input size, original size) of one image; files are read by
        ``preprocessing`` (the shared image path: LoadCXRd + ScaleCXRIntensityd), as training reads them."""
        if isinstance(image, (str, os.PathLike)):
            if not Path(image).is_file():
                raise FileNotFoundError(f"{image}: image file not found.")
            image = np.asarray(self.preprocessing({"image": image})["image"])
        rgb = to_rgb_uint8(image)
        sam_pixels, input_size = self.processor.sam_image(rgb)
        return sam_pixels, self.processor.vlm_image(rgb), input_size, tuple(int(v) for v in rgb.shape[:2])

    # ------------------------------------------------------------------------------ public API
    def predict(self, image, instruction: str, mode: str | None = None, return_logits: bool = False) -> Prediction:
        """Answer one instruction on one image."""
        return self.predict_many(image, [instruction], mode=mode, return_logits=return_logits)[0]

    def predict_many(self, image, instructions: Sequence[str], mode: str | None = None, return_logits: bool = False) -> list[Prediction]:
        """Answer several instructions on one image; the image is encoded once."""
        if isinstance(instructions, str):
            raise TypeError("predict_many takes a list of instructions; use predict for one.")
        key = image_key(image)
        return list(self.predict_requests([(image, text) for text in instructions], mode=mode, return_logits=return_logits, keys=[key] * len(instructions)))

    def predict_requests(
        self,
        requests: Iterable[tuple[object, str]],
        mode: str | None = None,
        return_logits: bool = False,
        keys: Sequence[str] | None = None,
    ) -> Iterator[Prediction]:
        """Answer ``(image, instruction)`` pairs in order, ``batch_size`` prompts per pass.

        Keep the instructions of one image next to each other: with a small cache, an image that
        comes back after many others is encoded again.
        """
        mode = self._check_mode(mode or self.mode)
        batch: list[_Item] = []
        for index, (image, instruction) in enumerate(requests):
            if not isinstance(instruction, str) or not instruction.strip():
                raise ValueError(f"Request {index}: the instruction must be a non-empty string, got {instruction!r}.")
            key = keys[index] if keys is not None else image_key(image)
            batch.append(_Item(image, instruction, key))
            if len(batch) == self.batch_size:
                yield from self._run_batch(batch, mode, return_logits)
                batch = []
        if batch:
            yield from self._run_batch(batch, mode, return_logits)

    # ------------------------------------------------------------------------------ batches
    @torch.no_grad()
    def _run_batch(self, items: list[_Item], mode: str, return_logits: bool) -> list[Prediction]:
        encoded = _concat([self.encode(item.image, item.key) for item in items])
        if mode == "segment":
            prompts = [self.processor.encode_prompt(item.instruction, answer_prefix=SEG_TOKEN) for item in items]
            logits = self.model.segment(encoded, prompts)
            texts = [None] * len(items)
        else:
            prompts = [self.processor.encode_prompt(item.instruction) for item in items]
            results = self.model.generate(
                encoded, prompts, max_new_tokens=self.max_new_tokens, eos_token_id=self.processor.tokenizer.eos_token_id,
                **self.generation_kwargs,
            )
            logits = [r["mask_logits"] for r in results]
            texts = [self.processor.decode(r["output_ids"]) for r in results]
        predictions = []
        for item, mask_logits, text, size in zip(items, logits, texts, encoded.original_sizes):
            mask_logits = mask_logits.float().cpu()
            mask = self.postprocessing({"pred": mask_logits, ORIGINAL_SIZE_KEY: tuple(size)})["pred"]
            mask = np.asarray(torch.as_tensor(mask))[0].astype(bool)
            n_seg = int(mask_logits.shape[0])
            reason = None
            if n_seg == 0:
                reason = NO_SEG_GENERATED
            elif not mask.any():
                reason = NO_FOREGROUND
            predictions.append(
                Prediction(item.instruction, mask, text, n_seg, mode, mask_logits if return_logits else None, empty_reason=reason)
            )
        return predictions

    def cache_stats(self) -> dict:
        return {**self.cache.stats(), "encoded_images": self.encoded_images}


def _concat(parts: list[EncodedImages]) -> EncodedImages:
    if len(parts) == 1:
        return parts[0]
    return EncodedImages(
        torch.cat([p.sam_embeddings for p in parts], 0),
        torch.cat([p.vision_features for p in parts], 0),
        [s for p in parts for s in p.input_sizes],
        [s for p in parts for s in p.original_sizes],
    )
