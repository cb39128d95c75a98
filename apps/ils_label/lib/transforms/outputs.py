"""Model output -> the label map MONAI Label's ``Writer`` saves (PNG, NRRD or NIfTI) and OHIF overlays.

MONAI Label stores 2-D images the way ITK reads them, first axis = column (x). Its ``Writer`` transposes
back before writing, so a label map given as (x, y) lands in the file row by row, aligned with the image
OHIF shows. Our masks are (row, column) like ``LoadCXR``'s images, hence the transpose here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform


class LabelMap(Transform):
    """Masks -> one uint8 label map [H, W].

    Input: a boolean mask [H, W] (label 1) or a mapping ``{label_id: mask}``. Where masks overlap, the
    smaller one is painted last, so no lesion disappears under a larger one. ``transpose`` gives (x, y),
    MONAI Label's layout for 2-D images.
    """

    def __init__(self, transpose: bool = True):
        self.transpose = transpose

    def __call__(self, masks) -> np.ndarray:
        if not isinstance(masks, Mapping):
            masks = {1: masks}
        shape = None
        label = None
        for label_id, mask in sorted(masks.items(), key=lambda kv: -int(np.count_nonzero(kv[1]))):
            mask = np.asarray(mask).astype(bool)
            mask = mask[0] if mask.ndim == 3 and mask.shape[0] == 1 else mask
            if mask.ndim != 2:
                raise ValueError(f"LabelMap: masks must be 2-D, got shape {mask.shape} for label {label_id}.")
            if shape is None:
                shape, label = mask.shape, np.zeros(mask.shape, dtype=np.uint8)
            elif mask.shape != shape:
                raise ValueError(f"LabelMap: mask of label {label_id} has shape {mask.shape}, expected {shape}.")
            if not 0 < int(label_id) < 256:
                raise ValueError(f"LabelMap: label id {label_id} does not fit a uint8 label map.")
            label[mask] = int(label_id)
        if label is None:
            raise ValueError("LabelMap: no masks given.")
        return np.ascontiguousarray(label.T) if self.transpose else label


class LabelMapd(MapTransform):
    """Dictionary form of :class:`LabelMap`."""

    def __init__(self, keys: KeysCollection = "pred", transpose: bool = True, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.converter = LabelMap(transpose)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
