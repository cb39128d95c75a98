"""The one intensity normalisation of chest X-rays for the model and for 8-bit exports.

A radiograph loaded by `LoadCXR` keeps its stored units (12/16-bit DICOM, 8-bit PNG). What the model
sees, and what an 8-bit PNG export of a DICOM holds, is the image min-max scaled over its full dynamic
range to 0..255 and rounded. Min-max (rather than percentile windowing) is chosen because it is
idempotent on its own output: exporting a DICOM as PNG and reading the PNG back gives exactly the
pixels that reading the DICOM gives, so training on exports and serving DICOMs feed the same contrast.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import Compose, MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, get_equivalent_dtype

__all__ = [
    "ScaleCXRIntensity",
    "ScaleCXRIntensityd",
    "ScaleCXRIntensityD",
    "ScaleCXRIntensityDict",
    "cxr_image_path",
    "scale_cxr_intensity",
]


def scale_cxr_intensity(image: NdarrayOrTensor) -> NdarrayOrTensor:
    """Min-max ``image`` to 0..255 and round (float result, same type and device); a constant image gives 0."""
    if isinstance(image, torch.Tensor):
        x = image.detach().to(torch.float64)
        low, high = (x.min(), x.max()) if x.numel() else (x.new_zeros(()), x.new_zeros(()))
        out = torch.round((x - low) / (high - low) * 255.0) if high > low else torch.zeros_like(x)
    else:
        x = np.asarray(image, dtype=np.float64)
        low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        out = np.round((x - low) / (high - low) * 255.0) if high > low else np.zeros_like(x)
    return out


class ScaleCXRIntensity(Transform):
    """Scale a radiograph (any shape, e.g. [1, H, W]) over its full dynamic range to 0..255, rounded.

    Args:
        dtype: output dtype; ``np.uint8`` (default) for PNG export and the model's RGB branches.

    MetaTensor metadata is kept; ``meta["max_intensity"]`` becomes 255 so that later steps that divide
    by I_max see the new range.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, dtype: DtypeLike = np.uint8):
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        out = scale_cxr_intensity(img)
        dtype = get_equivalent_dtype(self.dtype, type(img)) if self.dtype is not None else None
        result = convert_to_dst_type(out, img, dtype=dtype)[0]
        meta = getattr(result, "meta", None)
        if isinstance(meta, dict) and "max_intensity" in meta:
            meta["max_intensity"] = 255.0
        return result


class ScaleCXRIntensityd(MapTransform):
    """Dictionary form of `ScaleCXRIntensity`: each of ``keys`` is scaled on its own."""

    backend = ScaleCXRIntensity.backend

    def __init__(self, keys: KeysCollection = "image", dtype: DtypeLike = np.uint8, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleCXRIntensity(dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d


ScaleCXRIntensityD = ScaleCXRIntensityDict = ScaleCXRIntensityd


def cxr_image_path(frontal_check: str = "ignore", dtype: DtypeLike = np.uint8) -> Compose:
    """The model's image path: `LoadCXR` then `ScaleCXRIntensity` (file -> [1, H, W] 0..255 MetaTensor).

    Training, the inference bundle, the predictor and the label app all read images through this.
    """
    from monai_ils.transforms.io import LoadCXR

    return Compose([LoadCXR(frontal_check=frontal_check), ScaleCXRIntensity(dtype)])
