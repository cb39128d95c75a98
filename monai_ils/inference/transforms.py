"""Pre- and post-processing of ROSALIA inference as MONAI dictionary transforms.

The bundles (``inference.json``, ``evaluate.json``) and the MONAI Label ``rosalia`` task wire these as
their ``preprocessing`` / ``postprocessing`` sections; the predictor uses the same defaults when built
in Python, so there is one definition of each step.

- preprocessing: ``LoadCXRd`` then ``ScaleCXRIntensityd`` (the shared image path: file -> [1, H, W]
  uint8 MetaTensor), exactly what training reads.
- postprocessing: ``SegLogitsToMaskd`` (union over the [SEG] masks of ``logit > threshold``) then
  ``ResizeToOriginald`` (nearest resize to the original image size when the mask differs from it).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform, Resize
from monai.utils import TransformBackends

from monai_ils.transforms.intensity import ScaleCXRIntensityd
from monai_ils.transforms.io import LoadCXRd

__all__ = [
    "ORIGINAL_SIZE_KEY",
    "SegLogitsToMaskd",
    "SegLogitsToMaskD",
    "SegLogitsToMaskDict",
    "ResizeToOriginald",
    "ResizeToOriginalD",
    "ResizeToOriginalDict",
    "default_preprocessing",
    "default_postprocessing",
]

ORIGINAL_SIZE_KEY = "original_size"


class SegLogitsToMaskd(MapTransform):
    """``[n_seg, H, W]`` mask logits -> ``[1, H, W]`` bool mask: foreground where any logit > ``threshold``.

    An answer without [SEG] (``n_seg == 0``) gives an empty mask of the logits' spatial size, or of
    ``data[size_key]`` when the logits carry no spatial size.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, keys: KeysCollection = "pred", threshold: float = 0.0, size_key: Hashable = ORIGINAL_SIZE_KEY,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.threshold = float(threshold)
        self.size_key = size_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            logits = torch.as_tensor(d[key]).float()
            if logits.ndim != 3:
                raise ValueError(f"SegLogitsToMaskd: '{key}' must be [n_seg, H, W] logits, got shape {tuple(logits.shape)}.")
            if logits.shape[0] == 0:
                size = tuple(logits.shape[1:]) if logits.shape[1] * logits.shape[2] else tuple(int(v) for v in d[self.size_key])
                d[key] = torch.zeros((1, *size), dtype=torch.bool)
            else:
                d[key] = (logits > self.threshold).any(0, keepdim=True)
        return d


class ResizeToOriginald(MapTransform):
    """Nearest-neighbour resize of a ``[C, H, W]`` mask to ``data[size_key]`` (H, W) when it differs."""

    backend = Resize.backend

    def __init__(self, keys: KeysCollection = "pred", size_key: Hashable = ORIGINAL_SIZE_KEY, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.size_key = size_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if self.size_key not in d:
            raise KeyError(f"ResizeToOriginald: the original image size '{self.size_key}' is missing from the data.")
        size = tuple(int(v) for v in d[self.size_key])
        for key in self.key_iterator(d):
            mask = d[key]
            if tuple(mask.shape[1:]) != size:
                resized = Resize(spatial_size=size, mode="nearest-exact")(torch.as_tensor(mask).float())
                d[key] = torch.as_tensor(resized) > 0.5
        return d


SegLogitsToMaskD = SegLogitsToMaskDict = SegLogitsToMaskd
ResizeToOriginalD = ResizeToOriginalDict = ResizeToOriginald


def default_preprocessing(keys: KeysCollection = "image") -> Compose:
    """The image path of the bundles: LoadCXRd (no frontal-view check) then ScaleCXRIntensityd (uint8)."""
    return Compose([LoadCXRd(keys=keys, frontal_check="ignore"), ScaleCXRIntensityd(keys=keys, dtype=np.uint8)])


def default_postprocessing(threshold: float = 0.0, keys: KeysCollection = "pred") -> Compose:
    """Mask threshold then resize to the original image, as in ``inference.json``."""
    return Compose([SegLogitsToMaskd(keys=keys, threshold=threshold), ResizeToOriginald(keys=keys)])
