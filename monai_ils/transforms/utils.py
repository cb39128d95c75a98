"""Validation, box statistics and morphology shared by the grounding transforms.

Box statistics use summed-area tables (integral images), so each box costs O(1) per mask instead of a
rescan of the image; morphology and connected components use OpenCV, which is an order of magnitude
faster than the scipy equivalents at 1024x1024.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch
from monai.utils import convert_to_numpy


class GroundingInputError(ValueError):
    """Bad input to a grounding transform; the message names the input (key) and the problem."""


def as_image(x, name: str = "image") -> np.ndarray:
    """A [1, H, W] or [H, W] image as a float32 [H, W] numpy array."""
    array = convert_to_numpy(x, wrap_sequence=True)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise GroundingInputError(f"{name}: expected shape [1, H, W] or [H, W], got {tuple(array.shape)}.")
    return array.astype(np.float32, copy=False)


def as_mask(x, name: str = "mask", shape: tuple[int, int] | None = None, allow_empty: bool = True) -> np.ndarray:
    """A binary mask ([1, H, W] or [H, W]; bool, {0, 1} or {0, 255}) as a bool [H, W] numpy array."""
    array = convert_to_numpy(x, wrap_sequence=True)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise GroundingInputError(f"{name}: expected a mask of shape [1, H, W] or [H, W], got {tuple(array.shape)}.")
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise GroundingInputError(f"{name}: mask shape {tuple(array.shape)} does not match the image shape {tuple(shape)}.")
    if array.dtype != bool:
        values = np.unique(array) if array.size <= 4096 else _fast_unique(array)
        if not set(values.tolist()) <= {0, 1} and not set(values.tolist()) <= {0, 255}:
            raise GroundingInputError(f"{name}: mask is not binary (values {values[:6].tolist()}...); threshold it first.")
        array = array > 0
    if not allow_empty and not array.any():
        raise GroundingInputError(f"{name}: mask is empty.")
    return array


def as_mask_stack(x, name: str = "mask", shape: tuple[int, int] | None = None) -> np.ndarray:
    """A stack of binary masks ([N, H, W], one per channel; an [H, W] mask is one channel) as bool [N, H, W].

    N may be 0 (no channel: e.g. one channel per kept box and no box kept)."""
    array = convert_to_numpy(x, wrap_sequence=True)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise GroundingInputError(f"{name}: expected masks of shape [N, H, W] or [H, W], got {tuple(array.shape)}.")
    if shape is not None and tuple(array.shape[1:]) != tuple(shape):
        raise GroundingInputError(f"{name}: mask shape {tuple(array.shape[1:])} does not match the image shape {tuple(shape)}.")
    if array.dtype != bool and array.size:
        values = np.unique(array) if array.size <= 4096 else _fast_unique(array)
        if not set(values.tolist()) <= {0, 1} and not set(values.tolist()) <= {0, 255}:
            raise GroundingInputError(f"{name}: mask is not binary (values {values[:6].tolist()}...); threshold it first.")
    return array > 0 if array.dtype != bool else array


def bbox_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Like `mask_bbox`, with OpenCV (one pass, no temporary arrays): fast for a sparse mask in a large image."""
    c, r, w, h = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))
    return None if w == 0 else (r, c, r + h, c + w)


def _fast_unique(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return np.flatnonzero(np.bincount(array.ravel(), minlength=256))
    return np.unique(array)


def as_boxes(boxes, name: str = "boxes", scores=None, scores_name: str = "box_scores") -> tuple[np.ndarray, np.ndarray | None]:
    """Boxes as float64 [N, 4] xyxy (and scores as float64 [N]) with shape and ordering checks."""
    array = np.asarray(convert_to_numpy(boxes, wrap_sequence=True), dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise GroundingInputError(f"{name}: expected boxes of shape [N, 4] (x0, y0, x1, y1), got {tuple(array.shape)}.")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise GroundingInputError(f"{name}[{bad}]: box {array[bad].tolist()} has a coordinate that is not a finite number.")
    if np.any(array[:, 2] < array[:, 0]) or np.any(array[:, 3] < array[:, 1]):
        raise GroundingInputError(f"{name}: every box needs x1 >= x0 and y1 >= y0 (xyxy order).")
    if scores is None:
        return array, None
    scores_array = np.asarray(convert_to_numpy(scores, wrap_sequence=True), dtype=np.float64).reshape(-1)
    if scores_array.shape[0] != array.shape[0]:
        raise GroundingInputError(f"{scores_name}: {scores_array.shape[0]} scores for {array.shape[0]} boxes.")
    return array, scores_array


def box_pixel_bounds(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Integer pixel bounds [N, 4] (r0, c0, r1, c1), end-exclusive and clipped to the image.

    A box covers the pixels whose index range it overlaps: columns floor(x0) .. ceil(x1) - 1.
    """
    height, width = shape
    bounds = np.empty((len(boxes), 4), dtype=np.int64)
    bounds[:, 0] = np.clip(np.floor(boxes[:, 1]), 0, height)
    bounds[:, 1] = np.clip(np.floor(boxes[:, 0]), 0, width)
    bounds[:, 2] = np.clip(np.ceil(boxes[:, 3]), 0, height)
    bounds[:, 3] = np.clip(np.ceil(boxes[:, 2]), 0, width)
    return bounds


def count(mask: np.ndarray) -> int:
    return int(np.count_nonzero(mask))


def integral_image(mask: np.ndarray) -> np.ndarray:
    """Summed-area table of a binary mask, shape [H + 1, W + 1]."""
    return cv2.integral(mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8), sdepth=cv2.CV_32S)


def box_sums(table: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Number of foreground pixels inside each box, read from a summed-area table in O(1) per box."""
    r0, c0, r1, c1 = bounds.T
    return (table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]).astype(np.int64)


def box_areas(bounds: np.ndarray) -> np.ndarray:
    return np.clip(bounds[:, 2] - bounds[:, 0], 0, None) * np.clip(bounds[:, 3] - bounds[:, 1], 0, None)


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator), dtype=np.float64), where=denominator > 0)


def remove_noise(mask: np.ndarray, radius: int) -> np.ndarray:
    """Erosion then dilation (a morphological opening) with a (2r+1)-square: removes specks thinner than 2r+1.

    Pixels outside the image count as background (border value 0), so a thin strip along the image border is
    removed like any other; OpenCV's default would treat them as foreground during the erosion."""
    if radius <= 0 or not mask.any():
        return mask
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    opened = cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return opened.view(bool)


def dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(mask.view(np.uint8), kernel).view(bool)


def label_components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """8-connected components: (number of labels including background 0, int32 label image)."""
    return cv2.connectedComponentsWithAlgorithm(mask.view(np.uint8), 8, cv2.CV_32S, cv2.CCL_GRANA)


def keep_labels(mask: np.ndarray, labels: np.ndarray, keep_table: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` whose component label is marked in ``keep_table``.

    Only foreground pixels are looked up: anomaly maps are sparse, so this is much cheaper than a
    lookup over the whole label image.
    """
    index = np.flatnonzero(mask)
    out = np.zeros(mask.shape, dtype=bool)
    out.ravel()[index[keep_table[labels.ravel()[index]]]] = True
    return out


def component_sizes(labels: np.ndarray, count: int) -> np.ndarray:
    """Pixel count of every component label (bincount over the label image)."""
    return np.bincount(labels.ravel(), minlength=count)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(r0, c0, r1, c1) end-exclusive bounding box of a mask, None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def masks_from_mapping(anatomy, labels: Sequence[str], shape, key: str) -> dict[str, np.ndarray]:
    """Pick ``labels`` from an anatomy dict as bool masks; a missing label names the key and the label."""
    if not isinstance(anatomy, Mapping):
        raise GroundingInputError(f"{key}: expected a mapping of anatomical label -> mask, got {type(anatomy).__name__}.")
    out = {}
    for label in labels:
        if label not in anatomy:
            raise GroundingInputError(f"{key}: no mask for anatomical label {label!r} (have {sorted(anatomy)}).")
        out[label] = as_mask(anatomy[label], f"{key}[{label!r}]", shape)
    return out


def like(output: np.ndarray, reference):
    """Return ``output`` in the container type and layout of ``reference``; MetaTensor metadata is kept.

    A 2-D ``output`` comes back as [H, W] when ``reference`` is [H, W] and as [1, H, W] otherwise (a
    channel-first reference, or one without a shape); a 3-D ``output`` (a stack of channels) is kept as is.
    """
    if output.ndim == 2 and getattr(reference, "ndim", None) != 2:
        output = output[None]
    if isinstance(reference, torch.Tensor):
        tensor = torch.as_tensor(output, device=reference.device)
        if hasattr(reference, "meta"):
            from monai.data import MetaTensor

            return MetaTensor(tensor, meta=dict(reference.meta), applied_operations=list(getattr(reference, "applied_operations", [])))
        return tensor
    return output
