"""Histogram equalisation as MONAI transforms (ROSALIA equalises each training image with p = 0.5)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.utils import convert_to_dst_type
from monai.utils.type_conversion import convert_to_numpy


def equalize_histogram_uint8(image: np.ndarray) -> np.ndarray:
    """Classic 256-bin equalisation of a uint8 array (per channel for [H, W, C]), like OpenCV's equalizeHist."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"equalize_histogram_uint8 expects uint8, got {image.dtype}.")
    if image.ndim == 3:
        return np.stack([equalize_histogram_uint8(image[..., c]) for c in range(image.shape[-1])], axis=-1)
    hist = np.bincount(image.ravel(), minlength=256)
    cdf = hist.cumsum()
    cdf_min = cdf[np.nonzero(hist)[0][0]]
    total = image.size
    if total == cdf_min:  # constant image: nothing to spread
        return image.copy()
    lut = np.clip(np.round((cdf - cdf_min) / (total - cdf_min) * 255.0), 0, 255).astype(np.uint8)
    return lut[image]


class EqualizeHistogram(Transform):
    """Equalise the grey-level histogram of a uint8 image ([H, W] or [H, W, C]); keeps the input type."""

    def __call__(self, img):
        out = equalize_histogram_uint8(convert_to_numpy(img))
        return convert_to_dst_type(out, img)[0]


class RandEqualizeHistogramd(RandomizableTransform, MapTransform):
    """Dictionary form: equalise ``keys`` together with probability ``prob``."""

    def __init__(self, keys: KeysCollection, prob: float = 0.5, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.equalize = EqualizeHistogram()

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.equalize(d[key])
        return d
