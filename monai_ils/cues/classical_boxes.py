"""Lesion boxes from blob detection on the anomaly signal: the box backend that needs no weights.

``x_ano = clip((x - x_hat) / I_max, 0, 1)`` is computed from the given counterfactual (or the classical
one), shrunk to ``work_size``; blobs are connected regions of ``x_ano >= seed_threshold``, and each box
grows by ``pad`` of its size on every side to cover the opacity's soft edge. A blob becomes a box when it has at least
``min_area_fraction`` of the image. Its confidence grows with its peak anomaly and its solidity:
``score = min(1, peak / (2 * seed_threshold)) * solidity``. Compact round blobs (solidity >= 0.85,
eccentricity <= 0.85) are class 8 "nodule/mass", the rest class 7 "lung opacity" (VinBigData ids).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage import measure

from monai_ils import vocab
from monai_ils.cues.base import BoxBackend, Boxes, max_intensity_of, register_backend, to_numpy_image, union_mask
from monai_ils.cues.classical_anatomy import shrink
from monai_ils.cues.classical_counterfactual import ClassicalCounterfactual

NODULE_CLASS = vocab.VINBIG_CLASSES.index("nodule/mass")
OPACITY_CLASS = vocab.VINBIG_CLASSES.index("lung opacity")


@register_backend("boxes", "classical")
class ClassicalBoxes(BoxBackend):
    """Boxes around hyperintense blobs of the anomaly map (see module doc).

    Args:
        seed_threshold: x_ano value a blob must reach (the general tau_ano of Table 7 by default).
        min_area_fraction: smallest blob, as a fraction of the image area.
        pad: each box grows by this fraction of its size on every side (the opacity's soft edge).
        work_size: long side of the working copy in pixels.
    """

    def __init__(self, seed_threshold: float = vocab.DEFAULT_THRESHOLDS.general.ano, min_area_fraction: float = 2e-4, pad: float = 0.15, work_size: int = 256):
        if not 0 < seed_threshold < 1:
            raise ValueError(f"seed_threshold must lie in (0, 1), got {seed_threshold}.")
        self.seed_threshold, self.min_area_fraction, self.work_size = float(seed_threshold), float(min_area_fraction), int(work_size)
        self.pad = float(pad)
        self._counterfactual = ClassicalCounterfactual(work_size=work_size)

    def __call__(self, image: Any, max_intensity: float | None = None, counterfactual: Any = None, anatomy: Any = None, **_: Any) -> Boxes:
        array = to_numpy_image(image)
        i_max = max_intensity_of(image, max_intensity)
        if counterfactual is None:
            region = None
            if anatomy is not None:
                region = union_mask(anatomy, (vocab.RIGHT_LUNG, vocab.LEFT_LUNG), array.shape)
            counterfactual = self._counterfactual(array, region, i_max)
        x_hat = to_numpy_image(counterfactual, "counterfactual")
        if x_hat.shape != array.shape:
            raise ValueError(f"counterfactual has shape {x_hat.shape}, the image {array.shape}.")
        anomaly = np.clip((array - x_hat) / i_max, 0, 1)
        small, scale = shrink(anomaly, self.work_size)
        labels = measure.label(small >= self.seed_threshold)
        boxes, scores, classes = [], [], []
        min_area = self.min_area_fraction * small.size
        for region in measure.regionprops(labels, intensity_image=small):
            if region.area < min_area:
                continue
            r0, c0, r1, c1 = region.bbox
            pad_r, pad_c = self.pad * (r1 - r0), self.pad * (c1 - c0)
            boxes.append([(c0 - pad_c) / scale, (r0 - pad_r) / scale, (c1 + pad_c) / scale, (r1 + pad_r) / scale])
            scores.append(min(1.0, region.intensity_max / (2 * self.seed_threshold)) * region.solidity)
            round_blob = region.solidity >= 0.85 and region.eccentricity <= 0.85
            classes.append(NODULE_CLASS if round_blob else OPACITY_CLASS)
        if not boxes:
            return Boxes.empty()
        order = np.argsort(scores)[::-1]
        return Boxes(np.asarray(boxes)[order], np.asarray(scores)[order], np.asarray(classes)[order]).clip(array.shape)
