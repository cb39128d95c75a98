"""Lungs, heart and lung zones from intensity and morphology: the anatomy backend that needs no weights.

Works on a copy shrunk to ``work_size`` pixels on the long side (fast: ~0.1 s per 2k image) and scales
the masks back. Assumes a frontal view in radiological display (the patient's right on the image left).

* Lungs: the aerated lungs are the large dark regions inside the thorax. Threshold a smoothed,
  percentile-normalised image (Otsu), drop dark regions that touch the image border (air outside the
  body), then take the largest region on each side of the midline (the spine's bright column).
  Each lung is closed, hole-filled and made row-convex so that bright opacities inside it (the very
  lesions we want to ground) stay inside the mask.
* Heart: between the lungs' medial borders, in the rows where the mediastinum widens beyond the
  upper (vascular/spinal) mediastinum, down to the lower of the two lung bases' medial points.
* Zones (rule, per lung, on the lung's own vertical extent ``top..bottom``): apical = top 15 %,
  upper = 15-40 %, mid = 40-70 %, base = 70-100 %. The apical cap roughly matches the lung above
  the clavicle and the remaining three bands the radiological upper/mid/lower zones (anterior 2nd and
  4th ribs); using each lung's own extent keeps the zones right when the hemidiaphragms differ in
  height. Zones partition each lung and do not overlap.

Sanity checks raise :class:`CueError` (the dictionary transform records it and the run goes on):
each lung covers 2-35 % of the image, the right lung lies left of the left lung, the heart lies
between them.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure, morphology

from monai_ils import vocab
from monai_ils.cues.base import AnatomyBackend, CueError, finish_masks, register_backend, to_numpy_image

ZONE_FRACTIONS: tuple[float, float, float] = (0.15, 0.40, 0.70)
"""Boundaries of apical/upper/mid/base as fractions of each lung's vertical extent."""


def shrink(image: np.ndarray, work_size: int) -> tuple[np.ndarray, float]:
    """Area-average ``image`` so that its long side is ``work_size`` (never enlarges)."""
    scale = min(1.0, work_size / max(image.shape))
    if scale == 1.0:
        return image.astype(np.float32), 1.0
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image.astype(np.float32), size, interpolation=cv2.INTER_AREA), scale


def grow(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask back to ``shape`` (rows, columns)."""
    if mask.shape == tuple(shape):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR).astype(bool)


def normalise(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1, 99])
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def row_convex(mask: np.ndarray) -> np.ndarray:
    """Fill every row between its first and last foreground pixel."""
    out = np.zeros_like(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(1))
    for r in rows:
        cols = np.flatnonzero(mask[r])
        out[r, cols[0] : cols[-1] + 1] = True
    return out


def midline_column(norm: np.ndarray) -> int:
    """Column of the spine: the brightest smoothed column in the central 40 % of the image."""
    w = norm.shape[1]
    lo, hi = int(0.3 * w), int(0.7 * w)
    profile = ndi.uniform_filter1d(norm[int(0.2 * norm.shape[0]) : int(0.8 * norm.shape[0])].mean(0), max(3, w // 25))
    return lo + int(np.argmax(profile[lo:hi]))


def lung_zones(lung: np.ndarray, side: str, fractions: tuple[float, float, float] = ZONE_FRACTIONS) -> dict[str, np.ndarray]:
    """Split one lung mask into its four zones by rows of its own vertical extent (see module doc)."""
    rows = np.flatnonzero(lung.any(1))
    names = vocab.LUNG_ZONES[side]
    if len(rows) == 0:
        return {name: np.zeros_like(lung, dtype=bool) for name in names}
    top, bottom = rows[0], rows[-1] + 1
    cuts = [top] + [int(round(top + f * (bottom - top))) for f in fractions] + [bottom]
    out = {}
    for name, start, stop in zip(names, cuts[:-1], cuts[1:]):
        band = np.zeros_like(lung, dtype=bool)
        band[start:stop] = True
        out[name] = lung & band
    return out


def geodesic_grow(seed: np.ndarray, within: np.ndarray, steps: int) -> np.ndarray:
    """Grow ``seed`` by ``steps`` 4-connected dilations, never leaving ``within``."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    grown, allowed = seed.astype(np.uint8), within.astype(np.uint8)
    for _ in range(steps):
        grown = cv2.dilate(grown, cross) & allowed
    return grown.astype(bool)


def lateral_lower_half(lung: np.ndarray, side: str) -> np.ndarray:
    """Pixels in the lower half of ``lung`` that lie lateral to its medial border (carried downwards).

    The brighter lung bases may be grown into there, but not medially into the heart shadow.
    """
    rows = np.flatnonzero(lung.any(1))
    out = np.zeros_like(lung, dtype=bool)
    border = None
    for r in range(rows[0], lung.shape[0]):
        cols = np.flatnonzero(lung[r])
        if len(cols):
            border = cols[-1] if side == "right" else cols[0]
        if r < (rows[0] + rows[-1]) // 2 or border is None:
            continue
        if side == "right":
            out[r, : border + 1] = True
        else:
            out[r, border:] = True
    return out


def segment_lungs(norm: np.ndarray, loose_margin: float = 0.6, grow_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray, int]:
    """Right and left lung masks (image left / image right) on the working grid, and the midline column."""
    h, w = norm.shape
    smooth = filters.gaussian(norm, sigma=max(1.0, w / 128))
    threshold = filters.threshold_otsu(smooth)
    dark = smooth < threshold
    loose = smooth < threshold + loose_margin * (np.percentile(smooth, 95) - threshold)
    grow_steps = int(round(grow_fraction * h))
    # Air outside the body is much darker than aerated lung; cut it (and a margin) away so that a lung
    # apex touching the dark image corner is not discarded with it.
    air = measure.label(smooth < 0.5 * threshold)
    border_air = np.isin(air, np.unique(np.concatenate([air[0], air[-1], air[:, 0], air[:, -1]]))) & (air > 0)
    dark &= ~ndi.binary_dilation(border_air, morphology.disk(max(1, w // 40)))
    # A strong opening breaks thin dark bridges (neck, shoulders) between a lung apex and the dark
    # image corners; the lung's own shape is restored below by a bounded geodesic dilation.
    neck = max(2, w // 32)
    cores = ndi.binary_opening(dark, morphology.disk(neck))
    labels = measure.label(cores)
    band = max(2, w // 50)
    edge = np.zeros_like(dark)
    edge[:band], edge[-band:], edge[:, :band], edge[:, -band:] = True, True, True, True
    border = np.unique(labels[edge & (labels > 0)])
    mid = midline_column(norm)
    candidates = {"right": [], "left": []}
    for region in measure.regionprops(labels):
        if region.label in border or region.area < 0.01 * h * w:
            continue
        side = "right" if region.centroid[1] < mid else "left"
        candidates[side].append(region)
    if not candidates["right"] or not candidates["left"]:
        missing = [s for s in ("right", "left") if not candidates[s]]
        raise CueError(f"classical anatomy: no {' or '.join(missing)} lung field found (dark region inside the thorax).")
    lungs = []
    radius = max(2, w // 40)
    for side in ("right", "left"):
        best = max(candidates[side], key=lambda r: r.area)
        lung = labels == best.label
        # Keep smaller pieces of the same lung that the opacities cut off below or beside it.
        for region in candidates[side]:
            if region.label != best.label and region.area >= 0.003 * h * w:
                lung |= labels == region.label
        # Grow back into the lung's own dark pixels, then (a bounded distance) into the brighter lung
        # bases and opacities: those stay well below the abdomen and chest wall in intensity.
        # The apex is already in the core: growing far above it would climb into the neck.
        below_apex = np.zeros_like(lung)
        below_apex[max(0, np.flatnonzero(lung.any(1))[0] - neck) :] = True
        lung = geodesic_grow(lung, dark & ~edge & below_apex, neck + 1)
        lung = geodesic_grow(lung, (dark | (loose & lateral_lower_half(lung, side))) & ~edge & below_apex, grow_steps)
        pad = radius + 1
        lung = np.pad(lung, pad)
        lung = ndi.binary_closing(lung, morphology.disk(radius))[pad:-pad, pad:-pad]
        lung = ndi.binary_fill_holes(row_convex(lung))
        # The closing must not carry the lung across the midline.
        if side == "right":
            lung[:, mid:] = False
        else:
            lung[:, : mid + 1] = False
        lungs.append(lung)
    return lungs[0], lungs[1], mid


def lowest_medial_row(lung: np.ndarray, side: str) -> int:
    """Lowest row of a lung within its medial quarter of columns (the cardiophrenic angle)."""
    cols = np.flatnonzero(lung.any(0))
    quarter = max(1, len(cols) // 4)
    medial = cols[-quarter:] if side == "right" else cols[:quarter]
    rows = np.flatnonzero(lung[:, medial].any(1))
    return int(rows[-1])


def segment_heart(right: np.ndarray, left: np.ndarray, mid: int, start_fraction: float = 0.5) -> np.ndarray:
    """Heart between the lungs' medial borders, from the widening of the mediastinum to the diaphragm.

    The top is the first row, below ``start_fraction`` of the lungs' common height, where the gap
    between the lungs exceeds 1.3x the upper mediastinum's width; the bottom is the lower of the two
    cardiophrenic angles. Where one lung has ended, its last medial column is carried down.
    """
    h, w = right.shape
    r_rows, l_rows = np.flatnonzero(right.any(1)), np.flatnonzero(left.any(1))
    top = max(r_rows[0], l_rows[0])
    bottom = max(lowest_medial_row(right, "right"), lowest_medial_row(left, "left"))
    common = min(r_rows[-1], l_rows[-1])
    if common - top < 10:
        raise CueError("classical anatomy: the two lungs barely overlap in height; cannot place the heart.")
    gaps = np.full(h, np.nan)
    medial = np.zeros((h, 2), dtype=int)
    for r in range(top, bottom + 1):
        rc, lc = np.flatnonzero(right[r]), np.flatnonzero(left[r])
        medial[r] = (rc[-1] if len(rc) else medial[r - 1, 0]), (lc[0] if len(lc) else medial[r - 1, 1])
        if len(rc) and len(lc):
            gaps[r] = lc[0] - rc[-1]
    upper = np.arange(top, top + max(3, (common - top) // 3))
    base_gap = np.nanmedian(gaps[upper])
    first = int(top + start_fraction * (common - top))
    rows = np.arange(first, common + 1)
    wide = rows[gaps[rows] > 1.3 * base_gap]
    start = int(wide[0]) if len(wide) else first
    heart = np.zeros((h, w), dtype=bool)
    for r in range(start, bottom + 1):
        heart[r, medial[r, 0] + 1 : medial[r, 1]] = True
    if heart.sum() < 0.005 * h * w:
        raise CueError("classical anatomy: no room for the heart between the lungs.")
    return morphology.convex_hull_image(heart) & ~right & ~left


@register_backend("anatomy", "classical")
class ClassicalAnatomy(AnatomyBackend):
    """Lungs, heart, lung and the eight zones from intensity and morphology (no weights; see module doc).

    Args:
        work_size: long side, in pixels, of the working copy (results are scaled back).
    """

    labels = (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, "lung", vocab.HEART, *vocab.LUNG_ZONES[vocab.RIGHT_LUNG], *vocab.LUNG_ZONES[vocab.LEFT_LUNG])

    def __init__(self, work_size: int = 256):
        if work_size < 64:
            raise ValueError(f"work_size must be at least 64 pixels, got {work_size}.")
        self.work_size = int(work_size)

    def small_masks(self, image: Any) -> tuple[dict[str, np.ndarray], float]:
        """The masks on the working grid and the scale used (for callers that stay small)."""
        array = to_numpy_image(image)
        small, scale = shrink(array, self.work_size)
        right, left, mid = segment_lungs(normalise(small))
        area = right.size
        for name, lung in ((vocab.RIGHT_LUNG, right), (vocab.LEFT_LUNG, left)):
            if not 0.02 * area <= lung.sum() <= 0.35 * area:
                raise CueError(f"classical anatomy: {name} covers {lung.sum() / area:.1%} of the image (expected 2-35 %).")
        heart = segment_heart(right, left, mid)
        cx_r, cx_l = np.argwhere(right)[:, 1].mean(), np.argwhere(left)[:, 1].mean()
        cx_h = np.argwhere(heart)[:, 1].mean() if heart.any() else np.nan
        if not cx_r < cx_h < cx_l:
            raise CueError("classical anatomy: the heart does not lie between the lungs.")
        masks = {vocab.RIGHT_LUNG: right, vocab.LEFT_LUNG: left, "lung": right | left, vocab.HEART: heart}
        masks.update(lung_zones(right, vocab.RIGHT_LUNG))
        masks.update(lung_zones(left, vocab.LEFT_LUNG))
        return masks, scale

    def __call__(self, image: Any) -> dict[str, np.ndarray]:
        shape = to_numpy_image(image).shape
        masks, _ = self.small_masks(image)
        full = {name: grow(masks[name], shape) for name in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART)}
        full["lung"] = full[vocab.RIGHT_LUNG] | full[vocab.LEFT_LUNG]
        # Zones are cut at full size so that they partition the lungs exactly.
        for side in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG):
            full.update(lung_zones(full[side], side))
        return finish_masks(full)
