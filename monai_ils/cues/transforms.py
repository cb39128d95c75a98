"""MONAI transforms that run a cue backend, in array and dictionary forms, and the anatomy cross-check QC.

Dictionary transforms read the image under ``keys`` (default ``"image"``), write the cue under the
``GroundingKeys`` names (``anatomy``, ``counterfactual``, ``boxes``/``box_scores``/``box_classes``) and,
with ``on_error="record"`` (default), catch a backend's failure on one study: the cue key is left out
and ``{"cue", "backend", "error"}`` is appended to ``data["cue_errors"]`` so a generation run goes on.
``batch(list_of_dicts)`` runs a whole list through the backend's batched path where it has one.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from monai_ils import vocab
from monai_ils.cues.base import (
    BoxBackend,
    Boxes,
    AnatomyBackend,
    CounterfactualBackend,
    as_mask,
    get_backend,
    max_intensity_of,
    to_numpy_image,
    union_mask,
)
from monai_ils.transforms.keys import GroundingKeys as K

CUE_ERRORS_KEY = K.CUE_ERRORS
ANATOMY_QC_KEY = K.ANATOMY_QC
ON_ERROR = ("record", "raise")


def _backend_name(backend: Any) -> str:
    return getattr(backend, "name", None) or type(backend).__name__


def _like_image(array: np.ndarray, image: Any) -> Any:
    """Return ``array`` as a MetaTensor carrying the image's metadata when the image is one."""
    if isinstance(image, MetaTensor):
        return MetaTensor(torch.as_tensor(array), meta=copy.deepcopy(dict(image.meta)))
    if isinstance(image, torch.Tensor):
        return torch.as_tensor(array, device=image.device)
    return array


# ----------------------------------------------------------------------------------------------
# Array forms
# ----------------------------------------------------------------------------------------------
class AnatomyMasks(Transform):
    """image ``[1, H, W]`` -> ``{label: uint8 mask [1, H, W]}`` from the named anatomy backend."""

    def __init__(self, backend: str | AnatomyBackend = "classical", **backend_kwargs: Any):
        self.backend = get_backend("anatomy", backend, **backend_kwargs)

    def __call__(self, img: Any) -> dict[str, np.ndarray]:
        return self.backend(img)


class Counterfactual(Transform):
    """image ``[1, H, W]`` (+ anatomy) -> lesion-free x_hat, same shape, dtype float32 and intensity scale.

    The edit region is the union of ``region_labels`` (default: the backend's, lungs and heart for
    RadEdit, lungs for the classical backend) taken from ``anatomy``.
    """

    def __init__(self, backend: str | CounterfactualBackend = "classical", region_labels: Sequence[str] | None = None, **backend_kwargs: Any):
        self.backend = get_backend("counterfactual", backend, **backend_kwargs)
        self.region_labels = tuple(region_labels) if region_labels else tuple(self.backend.region_labels)
        for label in self.region_labels:
            vocab.check_anatomy_label(label)

    def region(self, img: Any, anatomy: Mapping[str, Any] | None) -> np.ndarray | None:
        if anatomy is None:
            return None
        return union_mask(anatomy, self.region_labels, to_numpy_image(img).shape)

    def __call__(self, img: Any, anatomy: Mapping[str, Any] | None = None, max_intensity: float | None = None) -> Any:
        x_hat = self.backend(img, self.region(img, anatomy), max_intensity_of(img, max_intensity))
        return _like_image(np.asarray(x_hat, dtype=np.float32), img)


class DetectLesionBoxes(Transform):
    """image ``[1, H, W]`` -> :class:`Boxes` of hyperintense lesions (excluded VinBigData classes dropped)."""

    def __init__(self, backend: str | BoxBackend = "classical", **backend_kwargs: Any):
        self.backend = get_backend("boxes", backend, **backend_kwargs)

    def __call__(self, img: Any, max_intensity: float | None = None, **cues: Any) -> Boxes:
        boxes = self.backend(img, max_intensity_of(img, max_intensity), **cues)
        return boxes.drop_excluded().clip(to_numpy_image(img).shape)


def extents(anatomy: Mapping[str, Any], shape: tuple[int, int]) -> dict[str, float]:
    """The three numbers the cross-check compares: right lung's leftmost and left lung's rightmost
    columns (the lungs' outer x extents) and the heart's lowest row."""
    out = {}
    for key, label, axis, pick in (
        ("right_lung_outer_x", vocab.RIGHT_LUNG, 0, "min"),
        ("left_lung_outer_x", vocab.LEFT_LUNG, 0, "max"),
        ("heart_lowest_y", vocab.HEART, 1, "max"),
    ):
        if label not in anatomy:
            raise KeyError(f"anatomy has no mask {label!r}; it has {sorted(anatomy)}.")
        mask = as_mask(anatomy[label], label, shape)
        hits = np.flatnonzero(mask.any(axis))
        out[key] = float("nan") if len(hits) == 0 else float(hits.min() if pick == "min" else hits.max())
    return out


class CrossCheckAnatomy(Transform):
    """Appendix D.2: flag a study whose two anatomy sources disagree on the lungs' outer x extents or the
    heart's lowest y by more than ``tolerance`` (a fraction of the image width for x, height for y).

    Returns ``{"passed": bool, "differences": {...} (pixels), "tolerance_px": {...}, "failed": [...]}``.
    An empty mask in either source fails the check.
    """

    def __init__(self, tolerance: float = 0.05):
        if not 0 < float(tolerance) < 1:
            raise ValueError(f"tolerance is a fraction of the image size in (0, 1), got {tolerance!r}.")
        self.tolerance = float(tolerance)

    def __call__(self, anatomy: Mapping[str, Any], reference: Mapping[str, Any], shape: tuple[int, int] | None = None) -> dict:
        if shape is None:
            first = next(iter(anatomy.values()))
            shape = tuple(np.asarray(first).shape[-2:])
        a, b = extents(anatomy, shape), extents(reference, shape)
        limits = {"right_lung_outer_x": self.tolerance * shape[1], "left_lung_outer_x": self.tolerance * shape[1], "heart_lowest_y": self.tolerance * shape[0]}
        differences = {k: abs(a[k] - b[k]) for k in a}
        failed = [k for k, d in differences.items() if not np.isfinite(d) or d > limits[k]]
        return {"passed": not failed, "failed": failed, "differences": differences, "tolerance_px": limits, "values": a, "reference_values": b}


# ----------------------------------------------------------------------------------------------
# Dictionary forms
# ----------------------------------------------------------------------------------------------
class _CueMapTransform(MapTransform):
    cue = ""

    def __init__(self, keys: KeysCollection, on_error: str, allow_missing_keys: bool):
        super().__init__(keys, allow_missing_keys)
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}.")
        self.on_error = on_error

    def _fail(self, d: dict, backend: Any, error: Exception) -> None:
        if self.on_error == "raise":
            raise error
        d.setdefault(CUE_ERRORS_KEY, []).append({"cue": self.cue, "backend": _backend_name(backend), "error": f"{type(error).__name__}: {error}"})

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                self._apply(d, key)
            except Exception as error:  # a backend failing on one study must not stop a run
                self._fail(d, self.transform.backend, error)
        return d

    def batch(self, data: Sequence[Mapping[Hashable, Any]]) -> list[dict[Hashable, Any]]:
        """Run a list of samples; backends with a batched path (CXAS, YOLO) see them together."""
        return [self(item) for item in data]


class AnatomyMasksd(_CueMapTransform):
    """Dictionary form of :class:`AnatomyMasks`: writes the label -> mask dict under ``anatomy_key``."""

    cue = "anatomy"

    def __init__(self, keys: KeysCollection = K.IMAGE, backend: str | AnatomyBackend = "classical", anatomy_key: str = K.ANATOMY,
                 on_error: str = "record", allow_missing_keys: bool = False, **backend_kwargs: Any):
        super().__init__(keys, on_error, allow_missing_keys)
        self.transform = AnatomyMasks(backend, **backend_kwargs)
        self.anatomy_key = anatomy_key

    def _apply(self, d: dict, key: Hashable) -> None:
        d[self.anatomy_key] = self.transform(d[key])

    def batch(self, data):
        items = [dict(item) for item in data]
        images = [item[self.first_key(item)] for item in items]
        try:
            results = self.transform.backend.batch(images)
        except Exception:  # fall back to one by one so that one bad study only fails itself
            return [self(item) for item in items]
        for item, result in zip(items, results):
            item[self.anatomy_key] = result
        return items


class Counterfactuald(_CueMapTransform):
    """Dictionary form of :class:`Counterfactual`: edit region from ``data[anatomy_key]`` when present."""

    cue = "counterfactual"

    def __init__(self, keys: KeysCollection = K.IMAGE, backend: str | CounterfactualBackend = "classical", counterfactual_key: str = K.COUNTERFACTUAL,
                 anatomy_key: str = K.ANATOMY, region_labels: Sequence[str] | None = None, on_error: str = "record",
                 allow_missing_keys: bool = False, **backend_kwargs: Any):
        super().__init__(keys, on_error, allow_missing_keys)
        self.transform = Counterfactual(backend, region_labels, **backend_kwargs)
        self.counterfactual_key, self.anatomy_key = counterfactual_key, anatomy_key

    def _apply(self, d: dict, key: Hashable) -> None:
        d[self.counterfactual_key] = self.transform(d[key], d.get(self.anatomy_key))


class DetectLesionBoxesd(_CueMapTransform):
    """Dictionary form of :class:`DetectLesionBoxes`: writes ``boxes``, ``box_scores``, ``box_classes``.

    The counterfactual and anatomy already in ``data`` are handed to the backend (the classical one
    detects blobs on that anomaly signal; YOLO ignores them).
    """

    cue = "boxes"

    def __init__(self, keys: KeysCollection = K.IMAGE, backend: str | BoxBackend = "classical", boxes_key: str = K.BOXES,
                 scores_key: str = K.BOX_SCORES, classes_key: str = K.BOX_CLASSES, counterfactual_key: str = K.COUNTERFACTUAL,
                 anatomy_key: str = K.ANATOMY, on_error: str = "record", allow_missing_keys: bool = False, **backend_kwargs: Any):
        super().__init__(keys, on_error, allow_missing_keys)
        self.transform = DetectLesionBoxes(backend, **backend_kwargs)
        self.boxes_key, self.scores_key, self.classes_key = boxes_key, scores_key, classes_key
        self.counterfactual_key, self.anatomy_key = counterfactual_key, anatomy_key

    def _write(self, d: dict, boxes: Boxes) -> None:
        d[self.boxes_key], d[self.scores_key], d[self.classes_key] = boxes.boxes, boxes.scores, boxes.classes

    def _apply(self, d: dict, key: Hashable) -> None:
        self._write(d, self.transform(d[key], counterfactual=d.get(self.counterfactual_key), anatomy=d.get(self.anatomy_key)))

    def batch(self, data):
        items = [dict(item) for item in data]
        images = [item[self.first_key(item)] for item in items]
        try:
            results = self.transform.backend.batch(images, [max_intensity_of(i) for i in images],
                                                   [{"counterfactual": it.get(self.counterfactual_key), "anatomy": it.get(self.anatomy_key)} for it in items])
        except Exception:
            return [self(item) for item in items]
        for item, image, boxes in zip(items, images, results):
            self._write(item, boxes.drop_excluded().clip(to_numpy_image(image).shape))
        return items


class CrossCheckAnatomyd(MapTransform):
    """Dictionary form of :class:`CrossCheckAnatomy`: ``keys`` names the two anatomy dicts to compare.

    Writes the check's result under ``qc_key``; with ``drop_failed=False`` (default) the study is only
    flagged (``data[qc_key]["passed"] is False``) and the runner decides what to skip.
    """

    def __init__(self, keys: KeysCollection = (K.ANATOMY, K.ANATOMY_REFERENCE), tolerance: float = 0.05, qc_key: str = ANATOMY_QC_KEY,
                 image_key: str = K.IMAGE, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise ValueError(f"CrossCheckAnatomyd compares exactly two anatomy keys, got {self.keys}.")
        self.check = CrossCheckAnatomy(tolerance)
        self.qc_key, self.image_key = qc_key, image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        present = [k for k in self.keys if k in d and d[k] is not None]
        if len(present) < 2:
            if self.allow_missing_keys:
                return d
            d[self.qc_key] = {"passed": False, "failed": ["missing anatomy"], "missing": [k for k in self.keys if k not in present]}
            return d
        shape = tuple(to_numpy_image(d[self.image_key]).shape) if self.image_key in d else None
        d[self.qc_key] = self.check(d[self.keys[0]], d[self.keys[1]], shape)
        return d
