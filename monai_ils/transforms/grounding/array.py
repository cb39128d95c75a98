"""Array transforms that ground a reported lesion in the image (paper Sec. 3.1, Algorithm 1, Appendix A.4-A.6).

Images and masks are [1, H, W] (or [H, W]) numpy arrays or torch tensors; a MetaTensor input gives a
MetaTensor output with the same metadata. Thresholds default to Table 7 (`monai_ils.vocab`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from monai.transforms import Transform

from monai_ils import vocab
from monai_ils.transforms import utils as U
from monai_ils.transforms.utils import GroundingInputError


class AnomalyMap(Transform):
    """x_ano = clip((x - x̂) / I_max, 0, 1) and the anomaly map A = x_ano >= τ_ano (Eq. 1).

    Args:
        lesion_type: picks τ_ano from the threshold table (edema uses a lower one).
        thresholds: a `vocab.ThresholdTable`, `vocab.GroundingThresholds` or mapping; default Table 7.
        max_intensity: I_max, the largest possible intensity (255 for 8-bit). Default: the image's
            ``max_intensity`` metadata set by `LoadCXR` (2**BitsStored - 1 for DICOM).
        noise_radius: erosion-then-dilation radius in pixels applied to A before the box filter
            (Appendix A.5); 0 disables it.
        return_score: also return x_ano.
    """

    def __init__(self, lesion_type: str = "opacity", thresholds=None, max_intensity: float | None = None,
                 noise_radius: int = 1, return_score: bool = False):
        self.lesion_type = vocab.check_lesion_type(lesion_type)
        self.thresholds = thresholds
        self.max_intensity = max_intensity
        self.noise_radius = int(noise_radius)
        self.return_score = return_score

    def __call__(self, img, counterfactual, lesion_type: str | None = None, max_intensity: float | None = None):
        image = U.as_image(img, "image")
        healthy = U.as_image(counterfactual, "counterfactual")
        if healthy.shape != image.shape:
            raise GroundingInputError(f"counterfactual: shape {healthy.shape} does not match the image shape {image.shape}.")
        i_max = max_intensity or self.max_intensity or _meta(img, "max_intensity")
        if not i_max or float(i_max) <= 0:
            raise GroundingInputError("image: I_max unknown; set max_intensity or load the image with LoadCXR.")
        tau = vocab.thresholds_for(vocab.check_lesion_type(lesion_type or self.lesion_type), self.thresholds).ano
        score = np.clip((image - healthy) / float(i_max), 0.0, 1.0)
        anomaly = U.remove_noise(score >= tau, self.noise_radius)
        if self.return_score:
            return U.like(anomaly, img), U.like(score.astype(np.float32), img)
        return U.like(anomaly, img)


def _meta(img, name):
    meta = getattr(img, "meta", None)
    return None if meta is None else meta.get(name)


@dataclass
class BoxFilterResult:
    """Outcome of Algorithm 1's box filter.

    ``conditions`` is bool [N, 4] (c1..c4 for every input box) and ``keep`` their conjunction;
    ``locations`` lists, for each kept box, the reported anatomical labels it intersects.
    """

    keep: np.ndarray
    conditions: np.ndarray
    anatomy_iou: np.ndarray
    signal_ratio: np.ndarray
    lung_iou: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    locations: list[list[str]] = field(default_factory=list)


class FilterLesionBoxes(Transform):
    """Keep the detector boxes that satisfy all four conditions of Algorithm 1.

    c1: IoU(B, ∪ reported anatomy masks) >= τ_anatomy; c2: confidence >= τ_conf;
    c3: |B ∩ A| / |B| >= τ_signal; c4: IoU(B, L_r) >= τ_size or IoU(B, L_l) >= τ_size.
    Reported locations whose masks are all empty give IoU 0 with every box: no box is kept and the finding
    stays ungrounded (the study goes on). A box with a NaN or infinite coordinate is a GroundingInputError.
    Every count comes from a summed-area table, so the cost per box does not grow with the image.
    """

    def __init__(self, lesion_type: str = "opacity", thresholds=None):
        self.lesion_type = vocab.check_lesion_type(lesion_type)
        self.thresholds = thresholds

    def __call__(self, boxes, scores, anomaly, anatomy: Mapping, reported_locations: Sequence[str],
                 lesion_type: str | None = None) -> BoxFilterResult:
        t = vocab.thresholds_for(vocab.check_lesion_type(lesion_type or self.lesion_type), self.thresholds)
        a_mask = U.as_mask(anomaly, "anomaly")
        shape = a_mask.shape
        boxes, scores = U.as_boxes(boxes, "boxes", scores, "box_scores")
        reported = [vocab.check_anatomy_label(label) for label in reported_locations]
        if not reported:
            raise GroundingInputError("reported_locations: empty; a finding without a mapped location cannot be grounded.")
        reported_masks = U.masks_from_mapping(anatomy, reported, shape, "anatomy")
        lungs = U.masks_from_mapping(anatomy, [vocab.RIGHT_LUNG, vocab.LEFT_LUNG], shape, "anatomy")
        for label, mask in lungs.items():
            if not mask.any():
                raise GroundingInputError(f"anatomy[{label!r}]: mask is empty.")
        union = np.logical_or.reduce(list(reported_masks.values()))  # all empty: IoU 0, no box kept (Algorithm 1)

        bounds = U.box_pixel_bounds(boxes, shape)
        area = U.box_areas(bounds)
        anatomy_iou = _iou(U.box_sums(U.integral_image(union), bounds), area, U.count(union))
        signal = U.safe_ratio(U.box_sums(U.integral_image(a_mask), bounds), area)
        lung_iou = np.maximum(*(_iou(U.box_sums(U.integral_image(m), bounds), area, U.count(m)) for m in lungs.values()))
        conditions = np.stack(
            [anatomy_iou >= t.anatomy, scores >= t.conf, (signal >= t.signal) & (area > 0), lung_iou >= t.size], axis=1
        )
        keep = conditions.all(axis=1)
        locations = [
            [label for label, mask in reported_masks.items() if mask[r0:r1, c0:c1].any()]
            for r0, c0, r1, c1 in bounds[keep]
        ]
        return BoxFilterResult(keep, conditions, anatomy_iou, signal, lung_iou, boxes[keep], scores[keep], locations)


def _iou(intersection: np.ndarray, box_area: np.ndarray, mask_area: int) -> np.ndarray:
    return U.safe_ratio(intersection, box_area + mask_area - intersection)


class IntersectingComponents(Transform):
    """The connected components (8-connected) of A that intersect at least one kept box.

    Whole components are kept, not their part inside the box: the box only selects the island.
    """

    def __call__(self, anomaly, boxes):
        a_mask = U.as_mask(anomaly, "anomaly")
        boxes, _ = U.as_boxes(boxes, "kept_boxes")
        out = np.zeros_like(a_mask)
        if len(boxes) and a_mask.any():
            count, labels = U.label_components(a_mask)
            keep = np.zeros(count, dtype=bool)
            for r0, c0, r1, c1 in U.box_pixel_bounds(boxes, a_mask.shape):
                keep[labels[r0:r1, c0:c1]] = True
            keep[0] = False
            out = U.keep_labels(a_mask, labels, keep)
        return U.like(out, anomaly)


class RefineLesionMask(Transform):
    """Post-process a grounded mask (Appendix A.5).

    1. noise removal: erosion then dilation with radius ``noise_radius``;
    2. components smaller than ``min_component_size`` pixels are dropped;
    3. expansion: up to ``expand_iterations`` times, neighbouring pixels (inside ``region`` when given,
       e.g. the lungs) join when their intensity is within ``intensity_tolerance`` × I_max of the
       mask's mean intensity;
    4. effusion at a lung base: the part of that lung from the effusion's top row down to the lung's
       lowest row (the costophrenic angle) is added, for each lung passed in ``base_lungs``.
    """

    def __init__(self, noise_radius: int = 2, min_component_size: int = 16, expand_iterations: int = 8,
                 intensity_tolerance: float = 0.03, max_intensity: float | None = None):
        if expand_iterations < 0 or min_component_size < 0 or noise_radius < 0:
            raise ValueError("RefineLesionMask: noise_radius, min_component_size and expand_iterations must be >= 0.")
        self.noise_radius = int(noise_radius)
        self.min_component_size = int(min_component_size)
        self.expand_iterations = int(expand_iterations)
        self.intensity_tolerance = float(intensity_tolerance)
        self.max_intensity = max_intensity

    def __call__(self, mask, img=None, region=None, base_lungs: Mapping | None = None, max_intensity: float | None = None):
        lesion = U.as_mask(mask, "mask").copy()  # never write into the caller's array
        lesion = U.remove_noise(lesion, self.noise_radius)
        box = U.mask_bbox(lesion)
        if self.min_component_size > 1 and box is not None:
            window = slice(box[0], box[2]), slice(box[1], box[3])
            count, labels = U.label_components(np.ascontiguousarray(lesion[window]))
            keep = U.component_sizes(labels, count) >= self.min_component_size
            keep[0] = False
            lesion = lesion.copy()
            lesion[window] = keep[labels]
        allowed = None if region is None else U.as_mask(region, "region", lesion.shape)
        if img is not None and self.expand_iterations and lesion.any():
            image = U.as_image(img, "image")
            i_max = max_intensity or self.max_intensity or _meta(img, "max_intensity")
            if not i_max:
                raise GroundingInputError("image: I_max unknown; set max_intensity or load the image with LoadCXR.")
            lesion = self._expand(lesion, image, allowed, self.intensity_tolerance * float(i_max))
        for name, lung in (base_lungs or {}).items():
            lesion |= _fill_to_lung_base(lesion, U.as_mask(lung, f"base_lungs[{name!r}]", lesion.shape))
        return U.like(lesion, mask)

    def _expand(self, lesion, image, allowed, tolerance):
        """Grow by one pixel per iteration into similar pixels; work in the lesion's box plus the reach."""
        r0, c0, r1, c1 = U.mask_bbox(lesion)
        n = self.expand_iterations
        window = slice(max(r0 - n, 0), r1 + n), slice(max(c0 - n, 0), c1 + n)
        crop, pixels = lesion[window], image[window]
        similar = np.abs(pixels - float(pixels[crop].mean())) <= tolerance
        if allowed is not None:
            similar &= allowed[window]
        for _ in range(n):
            grown = (U.dilate(crop) & similar) | crop
            if np.array_equal(grown, crop):
                break
            crop = grown
        out = lesion.copy()
        out[window] = crop
        return out


def _fill_to_lung_base(lesion: np.ndarray, lung: np.ndarray) -> np.ndarray:
    inside = lesion & lung
    box = U.mask_bbox(inside)
    if box is None:
        return np.zeros_like(lesion)
    fill = lung.copy()
    fill[: box[0]] = False
    return fill


@dataclass
class LocationVerification:
    """Reported, grounded and empty locations of one finding (Sec. 3.1, Appendix A.6)."""

    reported: list[str]
    grounded: list[str]
    ungrounded: list[str]
    empty: list[str]


class VerifyLocations(Transform):
    """Decide which reported locations a lesion mask grounds, and which lung regions are empty.

    grounded: reported labels that a kept box intersects and the final lesion mask overlaps.
    empty: candidate lung regions (default: the Table 8 locations) with no overlap at all with the
    anatomy of any location reported anywhere in the report (all findings, not only the seven lesions).
    A candidate whose own mask is empty (the anatomy backend did not find it) is never an empty location:
    a negative is only claimed for a region that exists in the image.
    """

    def __init__(self, candidates: Sequence[str] = tuple(vocab.INSTRUCTION_LOCATIONS)):
        self.candidates = [vocab.check_anatomy_label(c) for c in candidates]

    def __call__(self, lesion_mask, anatomy: Mapping, reported_locations: Sequence[str],
                 box_locations: Sequence[Sequence[str]] = (), all_reported_locations: Sequence[str] | None = None):
        lesion = U.as_mask(lesion_mask, "lesion_mask")
        reported = list(dict.fromkeys(vocab.check_anatomy_label(x) for x in reported_locations))
        all_reported = list(dict.fromkeys(
            vocab.check_anatomy_label(x) for x in (reported if all_reported_locations is None else all_reported_locations)
        ))
        masks = U.masks_from_mapping(anatomy, list(dict.fromkeys([*reported, *all_reported, *self.candidates])), lesion.shape, "anatomy")
        boxed = {label for labels in box_locations for label in labels}
        grounded = [label for label in reported if label in boxed and (masks[label] & lesion).any()]
        occupied = np.logical_or.reduce([masks[label] for label in all_reported]) if all_reported else np.zeros_like(lesion)
        empty = [c for c in self.candidates if masks[c].any() and not (masks[c] & occupied).any()]
        return LocationVerification(reported, grounded, [x for x in reported if x not in grounded], empty)


class CardiothoracicRatio(Transform):
    """Heart width over thoracic width (outer extent of both lungs), from binary masks (Appendix D.3)."""

    def __call__(self, right_lung, left_lung, heart) -> float:
        right = U.as_mask(right_lung, "right lung", allow_empty=False)
        left = U.as_mask(left_lung, "left lung", right.shape, allow_empty=False)
        heart_mask = U.as_mask(heart, "heart", right.shape, allow_empty=False)
        _, c0, _, c1 = U.mask_bbox(right | left)
        _, h0, _, h1 = U.mask_bbox(heart_mask)
        return (h1 - h0) / (c1 - c0)
