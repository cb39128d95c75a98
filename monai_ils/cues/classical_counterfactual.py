"""A "healthy" counterfactual without a generative model: remove focal bright structures inside the lungs.

Inside the edit region, on a copy shrunk to ``work_size`` pixels:

* ``blobs = opening(x, disk(r_small))`` removes structures thinner than ``2 r_small`` (ribs, vessels,
  fissures) but keeps rounded opacities;
* ``background = gaussian(opening(x, disk(r_large)))`` removes everything smaller than ``2 r_large``
  (the opacities too) and keeps the slowly varying lung density;
* the residual ``max(blobs - background, 0)`` (region eroded by ``margin`` so chest-wall edges do not
  count) is upsampled and subtracted: ``x_hat = x - residual``.

So ``x - x_hat`` is the excess density of focal opacities in the image's own units, and
``x_ano = clip((x - x_hat) / I_max, 0, 1)`` flags rounded opacities of a few percent of I_max while
normal lung (ribs and their crossings included) stays low. Defaults (work_size 256, radii 6 and 20,
i.e. lesions of ~3-20 % of the image width) were set on the pydicom-data ``RG1_UNCR.dcm`` CR.
The region is the lungs (``region_labels``): the heart and mediastinum are large bright structures
whose edges would leave residuals. Without a region, the classical anatomy backend's lungs are used.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage import morphology

from monai_ils import vocab
from monai_ils.cues.base import CounterfactualBackend, as_mask, max_intensity_of, register_backend, to_numpy_image
from monai_ils.cues.classical_anatomy import ClassicalAnatomy, grow, shrink


def grey_open(image: np.ndarray, radius: int) -> np.ndarray:
    """Grey-level opening with a disk (OpenCV: several times faster than scipy for large disks)."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.morphologyEx(image.astype(np.float32), cv2.MORPH_OPEN, disk, borderType=cv2.BORDER_REPLICATE)


def shrink_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA) >= 0.5


@register_backend("counterfactual", "classical")
class ClassicalCounterfactual(CounterfactualBackend):
    region_labels = (vocab.RIGHT_LUNG, vocab.LEFT_LUNG)
    """Counterfactual by morphological background estimation inside the lungs (see module doc).

    Args:
        work_size: long side of the working copy in pixels.
        small_radius: opening radius (working pixels) that removes ribs and vessels.
        large_radius: opening radius (working pixels) that removes the opacities too.
        margin: erosion (working pixels) of the region before the residual is taken.
        contrast_reference: None (default) keeps the residual in the image's own units. A fraction of I_max
            (0.36 for the DICOM this was tuned on) rescales the residual as if the lungs' 1-99 % intensity
            range spanned that fraction, so windowed or equalised 8-bit images (MIMIC-CXR-JPG) flag
            the same opacities under the same tau_ano.
    """

    def __init__(self, work_size: int = 256, small_radius: int = 6, large_radius: int = 20, margin: int = 3,
                 contrast_reference: float | None = None):
        if not 0 < small_radius < large_radius:
            raise ValueError(f"need 0 < small_radius < large_radius, got {small_radius} and {large_radius}.")
        if contrast_reference is not None and not 0 < contrast_reference <= 1:
            raise ValueError(f"contrast_reference is a fraction of I_max in (0, 1], got {contrast_reference!r}.")
        self.contrast_reference = contrast_reference
        self.work_size, self.small_radius, self.large_radius, self.margin = int(work_size), int(small_radius), int(large_radius), int(margin)
        self._anatomy = ClassicalAnatomy(work_size=work_size)

    def residual_small(self, small: np.ndarray, region: np.ndarray) -> np.ndarray:
        """Excess density of focal opacities on the working grid (0 outside ``region``)."""
        blobs = grey_open(small, self.small_radius)
        background = ndi.gaussian_filter(grey_open(small, self.large_radius), self.large_radius / 2)
        inner = ndi.binary_erosion(region, morphology.disk(self.margin)) if self.margin else region
        return np.clip(blobs - background, 0, None) * inner

    def __call__(self, image: Any, region: np.ndarray | None = None, max_intensity: float | None = None) -> np.ndarray:
        array = to_numpy_image(image)
        small, _ = shrink(array, self.work_size)
        if region is None:
            masks, _ = self._anatomy.small_masks(array)
            region_small = masks["lung"]
        else:
            region_small = shrink_mask(as_mask(region, "edit region", array.shape), small.shape)
        residual = self.residual_small(small, region_small)
        if self.contrast_reference is not None and region_small.any():
            lo, hi = np.percentile(small[region_small], [1, 99])
            target = self.contrast_reference * max_intensity_of(image, max_intensity)
            residual *= target / max(float(hi - lo), 1e-6)
        full = cv2.resize(residual, (array.shape[1], array.shape[0]), interpolation=cv2.INTER_LINEAR)
        if region is not None:
            full *= as_mask(region, "edit region", array.shape)
        else:
            full *= grow(region_small, array.shape)
        return (array - full)[None].astype(np.float32)
