"""The three spatial-cue interfaces, a name -> backend registry, and helpers shared by every backend.

A cue backend turns one chest X-ray into one kind of spatial information (paper Sec. 3.1):

* :class:`AnatomyBackend`: image -> ``{label name: binary mask [1, H, W]}`` (names from ``vocab``);
* :class:`CounterfactualBackend`: image (+ edit region) -> a "healthy" image x_hat, same shape and
  intensity scale, so that ``x_ano = clip((x - x_hat) / I_max, 0, 1)``;
* :class:`BoxBackend`: image -> :class:`Boxes` (xyxy pixels, score in [0, 1], VinBigData class id).

Images are ``[1, H, W]`` arrays or tensors in stored units (bright = dense) with ``I_max`` the maximum
possible intensity. Configs pick a backend by name: ``get_backend("anatomy", "classical")``.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from monai_ils import vocab
from monai_ils.transforms.utils import as_mask  # noqa: F401  (re-exported for the backends)

CUE_KINDS: tuple[str, ...] = ("anatomy", "counterfactual", "boxes")


class CueError(RuntimeError):
    """A backend could not produce a usable cue for one study (the runner records it and goes on)."""


class MissingWeightsError(FileNotFoundError):
    """A neural backend was configured without its weights on disk."""


def check_weights_path(path: str | os.PathLike | None, config_key: str, what: str) -> str:
    """Return ``path`` as a string, or raise an error naming the config key and what to download."""
    if path is None or str(path).strip() == "":
        raise MissingWeightsError(f"Config key '{config_key}' is not set: it must point to {what}.")
    if not os.path.exists(path):
        raise MissingWeightsError(f"Config key '{config_key}' points to {str(path)!r}, which does not exist: download {what}.")
    return str(path)


def check_weights_file(folder: str, patterns: Sequence[str], config_key: str, what: str) -> str:
    """The first file in ``folder`` matching one of ``patterns`` (glob), or an error naming the folder and key."""
    import glob

    for pattern in patterns:
        found = sorted(glob.glob(os.path.join(glob.escape(folder), pattern)))
        if found:
            return found[0]
    raise MissingWeightsError(f"Config key '{config_key}' points to {folder!r}, which has no weights file "
                              f"({' or '.join(patterns)}): it must hold {what}.")


def read_json_config(folder: str, config_key: str, what: str) -> dict:
    """``folder/config.json`` as a dict (read without importing the model library), or an error naming it."""
    import json

    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise MissingWeightsError(f"Config key '{config_key}' points to {folder!r}, which has no config.json: it must hold {what}.")
    try:
        with open(path, encoding="utf-8") as stream:
            config = json.load(stream)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} (config key '{config_key}') is not a readable JSON config: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} (config key '{config_key}') is not a JSON object.")
    return config


class LazyWeights:
    """Mixin of the neural backends: paths are checked in ``__init__``, the weights load on first use.

    A subclass names the attributes its weights live in (``lazy_attributes``) and implements ``_load()``,
    which returns them as a dict. Until then those attributes are absent from the instance; the first access
    to any of them (a call, a batch, ``backend.model``) loads all of them, once per process (:meth:`load`
    does it explicitly). Pickling or copying the backend never ships loaded weights: the copy loads its own
    on first use (so a configured but unused backend costs the driver of a parallel run nothing, and each
    worker loads once). :meth:`unload` frees them again.
    """

    lazy_attributes: tuple[str, ...] = ()

    def _load(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def loaded(self) -> bool:
        return all(name in self.__dict__ for name in type(self).lazy_attributes)

    def load(self):
        """Load the weights now (a no-op once loaded); returns the backend."""
        if not self.loaded:
            with _LOAD_LOCK:
                if not self.loaded:
                    values = self._load()
                    missing = set(type(self).lazy_attributes) - set(values)
                    if missing:
                        raise RuntimeError(f"{type(self).__name__}._load did not set {sorted(missing)}.")
                    self.__dict__.update(values)
        return self

    def unload(self) -> None:
        """Drop the loaded weights (the next use loads them again)."""
        for name in type(self).lazy_attributes:
            self.__dict__.pop(name, None)

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: for a lazy attribute that means "not loaded yet".
        if name in type(self).lazy_attributes and not name.startswith("__"):
            self.load()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in type(self).lazy_attributes}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


_LOAD_LOCK = threading.RLock()  # loads are rare: one lock for all backends of the process


# ----------------------------------------------------------------------------------------------
# Image helpers
# ----------------------------------------------------------------------------------------------
def to_numpy_image(image: Any, name: str = "image") -> np.ndarray:
    """A float32 ``[H, W]`` numpy view of a ``[1, H, W]`` (or ``[H, W]``) image; rejects anything else."""
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().float().numpy()
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor of shape [1, H, W], got {type(image).__name__}.")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape [1, H, W] (one grey channel), got {tuple(array.shape)}.")
    if array.shape[0] < 32 or array.shape[1] < 32:
        raise ValueError(f"{name} is {array.shape[0]}x{array.shape[1]} pixels; a chest X-ray needs at least 32x32.")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}.")
    array = np.asarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array


def max_intensity_of(image: Any, max_intensity: float | None = None) -> float:
    """I_max: the explicit value, else the image's ``max_intensity`` metadata, else a guess from its range."""
    if max_intensity is not None:
        value = float(max_intensity)
    else:
        meta = getattr(image, "meta", None) or {}
        value = meta.get("max_intensity")
        if isinstance(value, torch.Tensor):
            value = value.reshape(-1)[0].item()
        if value is None:
            peak = float(image.max()) if not isinstance(image, torch.Tensor) else float(image.max().item())
            value = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else float(2 ** int(np.ceil(np.log2(peak + 1))) - 1)
        value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"max_intensity must be a positive number, got {value!r}.")
    return value


def union_mask(anatomy: Mapping[str, Any], labels: Sequence[str], shape: tuple[int, int]) -> np.ndarray:
    """Union of the named masks (bool ``[H, W]``); a label missing from ``anatomy`` is an error."""
    out = np.zeros(shape, dtype=bool)
    for label in labels:
        if label not in anatomy:
            raise KeyError(f"anatomy has no mask {label!r}; it has {sorted(anatomy)}.")
        out |= as_mask(anatomy[label], label, shape)
    return out


def edit_region(anatomy: Mapping[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """The RadEdit edit region of Appendix A.3: lungs and heart merged (bool ``[H, W]``)."""
    return union_mask(anatomy, (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART), shape)


def finish_masks(masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Masks as the contract wants them: uint8 ``[1, H, W]``, names checked against the vocabulary."""
    out = {}
    for name, mask in masks.items():
        vocab.check_anatomy_label(name)
        array = np.asarray(mask).astype(np.uint8)
        out[name] = array[None] if array.ndim == 2 else array
    return out


@dataclass
class Boxes:
    """Lesion boxes of one image: xyxy pixels (x = column), scores in [0, 1], VinBigData class ids."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        if not len(self.boxes) == len(self.scores) == len(self.classes):
            raise ValueError(f"Boxes: {len(self.boxes)} boxes, {len(self.scores)} scores, {len(self.classes)} classes.")
        if len(self.scores) and (self.scores.min() < 0 or self.scores.max() > 1):
            raise ValueError("Boxes: scores must lie in [0, 1].")
        if len(self.classes) and (self.classes.min() < 0 or self.classes.max() >= len(vocab.VINBIG_CLASSES)):
            raise ValueError(f"Boxes: class ids must lie in [0, {len(vocab.VINBIG_CLASSES) - 1}].")

    @classmethod
    def empty(cls) -> Boxes:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.boxes)

    def drop_excluded(self, excluded: Sequence[int] = tuple(vocab.VINBIG_EXCLUDED_CLASS_IDS)) -> Boxes:
        """Keep only hyperintense lesion classes (Appendix A.3 drops aortic enlargement, other lesion, pneumothorax)."""
        keep = ~np.isin(self.classes, np.asarray(list(excluded), dtype=np.int64))
        return Boxes(self.boxes[keep], self.scores[keep], self.classes[keep])

    def clip(self, shape: tuple[int, int]) -> Boxes:
        boxes = self.boxes.copy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, shape[1])
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, shape[0])
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return Boxes(boxes[keep], self.scores[keep], self.classes[keep])


# ----------------------------------------------------------------------------------------------
# Interfaces
# ----------------------------------------------------------------------------------------------
class AnatomyBackend(ABC):
    """image ``[1, H, W]`` -> ``{label: uint8 mask [1, H, W]}`` with at least right lung, left lung, heart."""

    labels: tuple[str, ...] = ()

    @abstractmethod
    def __call__(self, image: Any) -> dict[str, np.ndarray]: ...

    def batch(self, images: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        return [self(image) for image in images]


class CounterfactualBackend(ABC):
    """image ``[1, H, W]`` (+ bool edit region ``[H, W]``) -> x_hat ``[1, H, W]`` float32, same intensity scale."""

    region_labels: tuple[str, ...] = (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART)
    """Anatomy labels whose union is the edit region the transforms pass in (Appendix A.3: lungs and heart)."""

    @abstractmethod
    def __call__(self, image: Any, region: np.ndarray | None = None, max_intensity: float | None = None) -> np.ndarray: ...

    def batch(self, images, regions, max_intensities) -> list[np.ndarray]:
        return [self(i, r, m) for i, r, m in zip(images, regions, max_intensities)]


class BoxBackend(ABC):
    """image ``[1, H, W]`` -> :class:`Boxes` (hyperintense lesion classes only)."""

    @abstractmethod
    def __call__(self, image: Any, max_intensity: float | None = None, **cues: Any) -> Boxes: ...

    def batch(self, images, max_intensities, cues=None) -> list[Boxes]:
        cues = cues or [{} for _ in images]
        return [self(i, m, **c) for i, m, c in zip(images, max_intensities, cues)]


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------
_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in CUE_KINDS}
_LAZY: dict[str, dict[str, str]] = {
    "anatomy": {
        "classical": "monai_ils.cues.classical_anatomy:ClassicalAnatomy",
        "cxas": "monai_ils.cues.cxas:CXASAnatomy",
        "hybridgnet": "monai_ils.cues.hybridgnet:HybridGNetAnatomy",
        "chexmask": "monai_ils.cues.precomputed:CheXmaskAnatomy",
        "png_folder": "monai_ils.cues.precomputed:PNGFolderAnatomy",
    },
    "counterfactual": {
        "classical": "monai_ils.cues.classical_counterfactual:ClassicalCounterfactual",
        "radedit": "monai_ils.cues.radedit:RadEditCounterfactual",
        "folder": "monai_ils.cues.precomputed:FolderCounterfactual",
    },
    "boxes": {
        "classical": "monai_ils.cues.classical_boxes:ClassicalBoxes",
        "yolo": "monai_ils.cues.yolo:YOLOBoxes",
        "csv": "monai_ils.cues.precomputed:CSVBoxes",
    },
}


def register_backend(kind: str, name: str) -> Callable:
    """Decorator: make a backend class available to configs as ``get_backend(kind, name, ...)``."""
    if kind not in CUE_KINDS:
        raise ValueError(f"Unknown cue kind {kind!r}; expected one of {list(CUE_KINDS)}.")

    def wrap(factory):
        _REGISTRY[kind][name] = factory
        return factory

    return wrap


def available_backends(kind: str) -> list[str]:
    if kind not in CUE_KINDS:
        raise ValueError(f"Unknown cue kind {kind!r}; expected one of {list(CUE_KINDS)}.")
    return sorted(set(_REGISTRY[kind]) | set(_LAZY[kind]))


def get_backend(kind: str, name: str | Any = "classical", **kwargs: Any) -> Any:
    """Build the backend ``name`` of ``kind``; an object that is already a backend is returned as is."""
    if not isinstance(name, str):
        return name
    if kind not in CUE_KINDS:
        raise ValueError(f"Unknown cue kind {kind!r}; expected one of {list(CUE_KINDS)}.")
    key = name.strip().lower()
    if key not in _REGISTRY[kind] and key in _LAZY[kind]:
        import importlib

        module, attr = _LAZY[kind][key].split(":")
        _REGISTRY[kind].setdefault(key, getattr(importlib.import_module(module), attr))
    if key not in _REGISTRY[kind]:
        raise ValueError(f"Unknown {kind} backend {name!r}; available: {available_backends(kind)}.")
    return _REGISTRY[kind][key](**kwargs)
