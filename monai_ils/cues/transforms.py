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
from monai.utils import TransformBackends, ensure_tuple_rep

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
# The cue backend object (classical, CXAS, RadEdit, YOLO ...) is ``self.cue_backend``; ``backend`` is MONAI's
# class attribute listing the array types the transform computes with: backends receive a numpy image (a
# torch input is converted), so it is [TransformBackends.NUMPY].
def _like_layout(mask: np.ndarray, image: Any) -> np.ndarray:
    """A [1, H, W] (or [H, W]) cue mask laid out like ``image``: [H, W] for an [H, W] image, else [1, H, W]."""
    two_d = mask[0] if mask.ndim == 3 and mask.shape[0] == 1 else mask
    return two_d if getattr(image, "ndim", None) == 2 else two_d[None]


class AnatomyMasks(Transform):
    """image ``[1, H, W]`` -> ``{label: uint8 mask [1, H, W]}`` from the named anatomy backend
    (an ``[H, W]`` image gives ``[H, W]`` masks)."""

    backend = [TransformBackends.NUMPY]

    def __init__(self, backend: str | AnatomyBackend = "classical", **backend_kwargs: Any):
        self.cue_backend = get_backend("anatomy", backend, **backend_kwargs)

    def __call__(self, img: Any) -> dict[str, np.ndarray]:
        return self.shape_like(self.cue_backend(img), img)

    @staticmethod
    def shape_like(masks: Mapping[str, np.ndarray], img: Any) -> dict[str, np.ndarray]:
        return {label: _like_layout(np.asarray(mask), img) for label, mask in masks.items()}


class Counterfactual(Transform):
    """image ``[1, H, W]`` (+ anatomy) -> lesion-free x_hat, same shape, dtype float32 and intensity scale.

    The edit region is the union of ``region_labels`` (default: the backend's, lungs and heart for
    RadEdit, lungs for the classical backend) taken from ``anatomy``. A MetaTensor image gives a MetaTensor
    with a copy of its metadata; an ``[H, W]`` image gives an ``[H, W]`` x_hat.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, backend: str | CounterfactualBackend = "classical", region_labels: Sequence[str] | None = None, **backend_kwargs: Any):
        self.cue_backend = get_backend("counterfactual", backend, **backend_kwargs)
        self.region_labels = tuple(region_labels) if region_labels else tuple(self.cue_backend.region_labels)
        for label in self.region_labels:
            vocab.check_anatomy_label(label)

    def region(self, img: Any, anatomy: Mapping[str, Any] | None) -> np.ndarray | None:
        if anatomy is None:
            return None
        return union_mask(anatomy, self.region_labels, to_numpy_image(img).shape)

    def __call__(self, img: Any, anatomy: Mapping[str, Any] | None = None, max_intensity: float | None = None) -> Any:
        x_hat = self.cue_backend(img, self.region(img, anatomy), max_intensity_of(img, max_intensity))
        return _like_image(_like_layout(np.asarray(x_hat, dtype=np.float32), img), img)


class DetectLesionBoxes(Transform):
    """image ``[1, H, W]`` -> :class:`Boxes` of hyperintense lesions (excluded VinBigData classes dropped)."""

    backend = [TransformBackends.NUMPY]

    def __init__(self, backend: str | BoxBackend = "classical", **backend_kwargs: Any):
        self.cue_backend = get_backend("boxes", backend, **backend_kwargs)

    def __call__(self, img: Any, max_intensity: float | None = None, **cues: Any) -> Boxes:
        boxes = self.cue_backend(img, max_intensity_of(img, max_intensity), **cues)
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

    backend = [TransformBackends.NUMPY]

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
    """Each key of ``keys`` (an image) gets its own cue; the ``*_key`` arguments name, for each image key, where
    its cue goes (one name, or one per key; several image keys need distinct output names)."""

    cue = ""
    backend = [TransformBackends.NUMPY]

    def __init__(self, keys: KeysCollection, on_error: str, allow_missing_keys: bool):
        super().__init__(keys, allow_missing_keys)
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}.")
        self.on_error = on_error

    def _per_key(self, name: str, value: Any, output: bool = False) -> tuple:
        try:
            names = ensure_tuple_rep(value, len(self.keys))
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: {name} needs one name or one per key of {self.keys}, got {value!r}.") from err
        if output and len(self.keys) > 1 and len(set(names)) < len(names):
            raise ValueError(f"{type(self).__name__}: {name}={value!r} would write the cue of every key of {self.keys} "
                             f"to the same place; give one {name} per key.")
        return names

    def _fail(self, d: dict, backend: Any, error: Exception) -> None:
        if self.on_error == "raise":
            raise error
        d.setdefault(CUE_ERRORS_KEY, []).append({"cue": self.cue, "backend": _backend_name(backend), "error": f"{type(error).__name__}: {error}"})

    def _safe_apply(self, d: dict, key: Hashable) -> None:
        try:
            self._apply(d, key, self.keys.index(key))
        except Exception as error:  # a backend failing on one study must not stop a run
            self._fail(d, self.transform.cue_backend, error)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            self._safe_apply(d, key)
        return d

    def batch(self, data: Sequence[Mapping[Hashable, Any]]) -> list[dict[Hashable, Any]]:
        """Run a list of samples, key by key; backends with a batched path (CXAS, YOLO) see each key's images
        together, and when that batch fails the samples are run one by one so that one bad study only fails itself."""
        items = [dict(item) for item in data]
        for slot, key in enumerate(self.keys):
            present = [item for item in items if key in item]
            if len(present) < len(items) and not self.allow_missing_keys:
                raise KeyError(f"{type(self).__name__}: key {key!r} is missing in {len(items) - len(present)} of {len(items)} samples "
                               "and allow_missing_keys is False.")
            if present:
                self._batch_key(present, key, slot)
        return items

    def _batch_key(self, items: list[dict], key: Hashable, slot: int) -> None:
        for item in items:
            self._safe_apply(item, key)


class AnatomyMasksd(_CueMapTransform):
    """Dictionary form of :class:`AnatomyMasks`: writes the label -> mask dict under ``anatomy_key``."""

    cue = "anatomy"

    def __init__(self, keys: KeysCollection = K.IMAGE, backend: str | AnatomyBackend = "classical", anatomy_key: KeysCollection = K.ANATOMY,
                 on_error: str = "record", allow_missing_keys: bool = False, **backend_kwargs: Any):
        super().__init__(keys, on_error, allow_missing_keys)
        self.transform = AnatomyMasks(backend, **backend_kwargs)
        self.anatomy_key = self._per_key("anatomy_key", anatomy_key, output=True)

    def _apply(self, d: dict, key: Hashable, slot: int) -> None:
        d[self.anatomy_key[slot]] = self.transform(d[key])

    def _batch_key(self, items, key, slot):
        images = [item[key] for item in items]
        try:
            results = self.transform.cue_backend.batch(images)
        except Exception:  # fall back to one by one so that one bad study only fails itself
            return super()._batch_key(items, key, slot)
        for item, image, result in zip(items, images, results):
            item[self.anatomy_key[slot]] = AnatomyMasks.shape_like(result, image)


class Counterfactuald(_CueMapTransform):
    """Dictionary form of :class:`Counterfactual`: edit region from ``data[anatomy_key]`` when present."""

    cue = "counterfactual"

    def __init__(self, keys: KeysCollection = K.IMAGE, backend: str | CounterfactualBackend = "classical",
                 counterfactual_key: KeysCollection = K.COUNTERFACTUAL, anatomy_key: KeysCollection = K.ANATOMY,
                 region_labels: Sequence[str] | None = None, on_error: str = "record",
                 allow_missing_keys: bool = False, **backend_kwargs: Any):
        super().__init__(keys, on_error, allow_missing_keys)
        self.transform = Counterfactual(backend, region_labels, **backend_kwargs)
        self.counterfactual_key = self._per_key("counterfactual_key", counterfactual_key, output=True)
        self.anatomy_key = self._per_key("anatomy_key", anatomy_key)

    def _apply(self, d: dict, key: Hashable, slot: int) -> None:
        d[self.counterfactual_key[slot]] = self.transform(d[key], d.get(self.anatomy_key[slot]))


class DetectLesionBoxesd(_CueMapTransform):
    """Dictionary form of :class:`DetectLesionBoxes`: writes ``boxes``, ``box_scores``, ``box_classes``.

    The counterfactual and anatomy already in ``data`` are handed to the backend (the classical one
    detects blobs on that anomaly signal; YOLO ignores them).
    """

    cue = "boxes"

    def __init__(self, keys: KeysCollection = K.IMAGE, backend: str | BoxBackend = "classical", boxes_key: KeysCollection = K.BOXES,
                 scores_key: KeysCollection = K.BOX_SCORES, classes_key: KeysCollection = K.BOX_CLASSES,
                 counterfactual_key: KeysCollection = K.COUNTERFACTUAL, anatomy_key: KeysCollection = K.ANATOMY,
                 on_error: str = "record", allow_missing_keys: bool = False, **backend_kwargs: Any):
        super().__init__(keys, on_error, allow_missing_keys)
        self.transform = DetectLesionBoxes(backend, **backend_kwargs)
        self.boxes_key = self._per_key("boxes_key", boxes_key, output=True)
        self.scores_key = self._per_key("scores_key", scores_key, output=True)
        self.classes_key = self._per_key("classes_key", classes_key, output=True)
        self.counterfactual_key = self._per_key("counterfactual_key", counterfactual_key)
        self.anatomy_key = self._per_key("anatomy_key", anatomy_key)

    def _write(self, d: dict, boxes: Boxes, slot: int) -> None:
        d[self.boxes_key[slot]], d[self.scores_key[slot]], d[self.classes_key[slot]] = boxes.boxes, boxes.scores, boxes.classes

    def _cues(self, d: dict, slot: int) -> dict:
        return {"counterfactual": d.get(self.counterfactual_key[slot]), "anatomy": d.get(self.anatomy_key[slot])}

    def _apply(self, d: dict, key: Hashable, slot: int) -> None:
        self._write(d, self.transform(d[key], **self._cues(d, slot)), slot)

    def _batch_key(self, items, key, slot):
        images = [item[key] for item in items]
        try:
            results = self.transform.cue_backend.batch(images, [max_intensity_of(i) for i in images], [self._cues(it, slot) for it in items])
        except Exception:
            return super()._batch_key(items, key, slot)
        for item, image, boxes in zip(items, images, results):
            self._write(item, boxes.drop_excluded().clip(to_numpy_image(image).shape), slot)


class CrossCheckAnatomyd(MapTransform):
    """Dictionary form of :class:`CrossCheckAnatomy`: ``keys`` names the two anatomy dicts to compare.

    Writes the check's result under ``qc_key``; with ``drop_failed=False`` (default) the study is only
    flagged (``data[qc_key]["passed"] is False``) and the runner decides what to skip.
    """

    backend = CrossCheckAnatomy.backend

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


AnatomyMasksD = AnatomyMasksDict = AnatomyMasksd
CounterfactualD = CounterfactualDict = Counterfactuald
DetectLesionBoxesD = DetectLesionBoxesDict = DetectLesionBoxesd
CrossCheckAnatomyD = CrossCheckAnatomyDict = CrossCheckAnatomyd
