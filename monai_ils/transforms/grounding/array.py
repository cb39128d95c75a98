"""Array transforms that ground a reported lesion in the image (paper Sec. 3.1, Algorithm 1, Appendix A.4-A.6).

Images and masks are [1, H, W] (or [H, W]) numpy arrays or torch tensors; a MetaTensor input gives a
MetaTensor output with the same metadata. Thresholds default to Table 7 (`monai_ils.vocab`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from monai.transforms import Transform
from monai.utils import TransformBackends

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

    backend = [TransformBackends.NUMPY]

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

    backend = [TransformBackends.NUMPY]

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
    """The connected components (8-connected) of A that intersect the kept boxes (Algorithm 1, line 9).

    Whole components are kept, not their part inside the box: the box only selects the island.

    Args:
        per_box: True (default, Algorithm 1): one channel per kept box, channel j holding the components
            of A that intersect box j, shape [N, H, W] for N kept boxes ([0, H, W] when none is kept); a
            component that touches two boxes is in both channels. `RefineLesionMask` then refines each
            channel with its own statistics and takes the union (lines 10-12). False: the union of those
            components, shaped like ``anomaly`` ([H, W] or [1, H, W]); refining it pools every box's
            components into one mean intensity, which is not what the paper does.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, per_box: bool = True):
        self.per_box = bool(per_box)

    def __call__(self, anomaly, boxes):
        a_mask = U.as_mask(anomaly, "anomaly")
        boxes, _ = U.as_boxes(boxes, "kept_boxes")
        bounds = U.box_pixel_bounds(boxes, a_mask.shape)
        groups = np.zeros((len(bounds), *a_mask.shape), dtype=bool)
        if len(bounds) and a_mask.any():
            count, labels = U.label_components(a_mask)
            index = np.flatnonzero(a_mask)  # anomaly maps are sparse: look labels up only where A is set
            pixel_labels = labels.ravel()[index]
            for j, (r0, c0, r1, c1) in enumerate(bounds):
                keep = np.zeros(count, dtype=bool)
                keep[labels[r0:r1, c0:c1]] = True
                keep[0] = False
                groups[j].ravel()[index[keep[pixel_labels]]] = True
        if self.per_box:
            return U.like(groups, anomaly)
        return U.like(groups.any(axis=0) if len(groups) else np.zeros_like(a_mask), anomaly)


class RefineLesionMask(Transform):
    """Refine the components selected for each kept box and take the union (Algorithm 1 lines 10-12, Appendix A.5).

    ``mask`` is a stack [N, H, W] of component groups, one per kept box (`IntersectingComponents` with
    ``per_box=True``), or a single mask [H, W] / [1, H, W] refined as one group. Each non-empty group is
    refined on its own, with its own statistics:

    1. noise removal: erosion then dilation with radius ``noise_radius``;
    2. components smaller than ``min_component_size`` pixels are dropped;
    3. expansion: up to ``expand_iterations`` times, neighbouring pixels (inside ``region`` when given,
       e.g. the lungs) join when their intensity is within ``intensity_tolerance`` × I_max of *this group's*
       mean intensity, so a faint lesion next to a dense one grows into its own faint surroundings;
    4. effusion at a lung base, for each lung of ``base_lungs`` (a mapping lung name -> lung mask for every
       group, or a sequence of such mappings, one per group): when the refined group reaches that lung's base
       zone (``base_zones[lung name]``), the lower portion of the lung is added: the lung's pixels from
       row max(the group's top row in that lung, the base zone's top row) down to the lung's lowest row
       (the costophrenic angle). The base zone bounds the fill, so a tall effusion box does not pull in the
       mid or upper lung; the lung mask (HybridGNet in the paper) gives its shape.

    The result is the union of the refined groups, shaped [H, W] for an [H, W] input and [1, H, W] otherwise
    (an [N, H, W] stack is reduced to its union); a MetaTensor input gives a MetaTensor with its metadata.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, noise_radius: int = 2, min_component_size: int = 16, expand_iterations: int = 8,
                 intensity_tolerance: float = 0.03, max_intensity: float | None = None):
        if expand_iterations < 0 or min_component_size < 0 or noise_radius < 0:
            raise ValueError("RefineLesionMask: noise_radius, min_component_size and expand_iterations must be >= 0.")
        self.noise_radius = int(noise_radius)
        self.min_component_size = int(min_component_size)
        self.expand_iterations = int(expand_iterations)
        self.intensity_tolerance = float(intensity_tolerance)
        self.max_intensity = max_intensity

    def __call__(self, mask, img=None, region=None, base_lungs: Mapping | Sequence[Mapping] | None = None,
                 max_intensity: float | None = None, base_zones: Mapping | None = None):
        groups = U.as_mask_stack(mask, "mask")  # only read: the caller's array is never written
        shape = groups.shape[1:]
        allowed = None if region is None else U.as_mask(region, "region", shape)
        per_group = _base_lungs_per_group(base_lungs, len(groups), shape)
        zones = _base_zones(base_zones, per_group, shape)
        image = tolerance = None
        if img is not None and self.expand_iterations and groups.any():
            image = U.as_image(img, "image")
            if image.shape != shape:
                raise GroundingInputError(f"image: shape {image.shape} does not match the mask shape {shape}.")
            i_max = max_intensity or self.max_intensity or _meta(img, "max_intensity")
            if not i_max:
                raise GroundingInputError("image: I_max unknown; set max_intensity or load the image with LoadCXR.")
            tolerance = self.intensity_tolerance * float(i_max)
        out = np.zeros(shape, dtype=bool)
        for group, lungs in zip(groups, per_group):
            box = U.bbox_of(group)
            if box is None:  # Algorithm 1 line 10: an empty C adds nothing
                continue
            window, crop = self._refine(group, box, image, allowed, tolerance)
            if not lungs:
                out[window] |= crop
                continue
            refined = np.zeros(shape, dtype=bool)
            refined[window] = crop
            for name, lung in lungs.items():
                refined |= _fill_to_lung_base(refined, lung, zones[name])
            out |= refined
        return U.like(out, mask)

    def _refine(self, group: np.ndarray, box, image, allowed, tolerance):
        """Steps 1-3 on one group, inside its bounding box grown by the expansion's reach: (window, refined crop)."""
        r0, c0, r1, c1 = box
        n = self.expand_iterations if image is not None else 0
        window = slice(max(r0 - n, 0), r1 + n), slice(max(c0 - n, 0), c1 + n)
        # the opening only looks at the group's own pixels and the background around them, so working in the
        # window (group pixels never touch its edge unless the image ends there) gives the full-image result
        crop = U.remove_noise(np.ascontiguousarray(group[window]), self.noise_radius)
        if self.min_component_size > 1 and crop.any():
            count, labels = U.label_components(crop)
            keep = U.component_sizes(labels, count) >= self.min_component_size
            keep[0] = False
            crop = keep[labels]
        if n and crop.any():
            pixels = image[window]
            similar = np.abs(pixels - float(pixels[crop].mean())) <= tolerance
            if allowed is not None:
                similar &= allowed[window]
            for _ in range(n):
                grown = (U.dilate(crop) & similar) | crop
                if np.array_equal(grown, crop):
                    break
                crop = grown
        return window, crop


def _base_lungs_per_group(base_lungs, groups: int, shape) -> list[dict[str, np.ndarray]]:
    """``base_lungs`` as one {lung name: bool mask} per group (a single mapping applies to every group)."""
    if base_lungs is None:
        return [{} for _ in range(groups)]
    if isinstance(base_lungs, Mapping):
        lungs = {name: U.as_mask(lung, f"base_lungs[{name!r}]", shape) for name, lung in base_lungs.items()}
        return [lungs for _ in range(groups)]
    per_group = list(base_lungs)
    if len(per_group) != groups:
        raise GroundingInputError(f"base_lungs: {len(per_group)} mappings for {groups} mask groups; give one per group or one mapping.")
    return [{name: U.as_mask(lung, f"base_lungs[{j}][{name!r}]", shape) for name, lung in (item or {}).items()}
            for j, item in enumerate(per_group)]


def _base_zones(base_zones, per_group, shape) -> dict[str, np.ndarray]:
    names = list(dict.fromkeys(name for lungs in per_group for name in lungs))
    missing = [name for name in names if name not in (base_zones or {})]
    if missing:
        raise GroundingInputError(f"base_zones: no base-zone mask for base lung(s) {missing}; the effusion fill is bounded by it.")
    zones = {name: U.as_mask(base_zones[name], f"base_zones[{name!r}]", shape) for name in names}
    for name, zone in zones.items():
        if not zone.any():
            raise GroundingInputError(f"base_zones[{name!r}]: mask is empty.")
    return zones


def _fill_to_lung_base(lesion: np.ndarray, lung: np.ndarray, zone: np.ndarray) -> np.ndarray:
    """The lower portion of ``lung`` under ``lesion``: rows from max(lesion top in the lung, base-zone top) down.

    Nothing when the lesion does not reach the lung's base zone."""
    inside = lesion & lung
    if not (inside & zone).any():
        return np.zeros_like(lesion)
    top = max(U.mask_bbox(inside)[0], U.mask_bbox(zone)[0])
    fill = lung.copy()
    fill[:top] = False
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

    backend = [TransformBackends.NUMPY]

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

    backend = [TransformBackends.NUMPY]

    def __call__(self, right_lung, left_lung, heart) -> float:
        right = U.as_mask(right_lung, "right lung", allow_empty=False)
        left = U.as_mask(left_lung, "left lung", right.shape, allow_empty=False)
        heart_mask = U.as_mask(heart, "heart", right.shape, allow_empty=False)
        _, c0, _, c1 = U.mask_bbox(right | left)
        _, h0, _, h1 = U.mask_bbox(heart_mask)
        return (h1 - h0) / (c1 - c0)
