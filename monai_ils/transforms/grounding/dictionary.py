"""Dictionary forms of the grounding transforms, for `monai.transforms.Compose` pipelines.

Default keys come from `GroundingKeys`. A per-study lesion type is read from ``lesion_key`` when the
dictionary has it, so one pipeline can be reused for every (study, lesion type).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

from monai_ils import vocab
from monai_ils.transforms.grounding.array import (
    AnomalyMap,
    CardiothoracicRatio,
    FilterLesionBoxes,
    IntersectingComponents,
    RefineLesionMask,
    VerifyLocations,
)
from monai_ils.transforms.keys import GroundingKeys as K
from monai_ils.transforms.utils import GroundingInputError


def _get(data: Mapping, key: Hashable, owner: MapTransform):
    if key not in data:
        raise KeyError(f"{type(owner).__name__}: missing key {key!r} in the data dictionary (have {sorted(map(str, data))}).")
    return data[key]


class _GroundingMapTransform(MapTransform):
    def __init__(self, keys: KeysCollection, lesion_type: str, lesion_key: str | None, allow_missing_keys: bool):
        super().__init__(keys, allow_missing_keys)
        self.lesion_type = vocab.check_lesion_type(lesion_type)
        self.lesion_key = lesion_key

    def _lesion(self, data: Mapping) -> str:
        return vocab.check_lesion_type(data.get(self.lesion_key) or self.lesion_type) if self.lesion_key else self.lesion_type


class AnomalyMapd(_GroundingMapTransform):
    """Dictionary form of `AnomalyMap`: writes A to ``output_keys`` (and x_ano to ``score_keys``)."""

    def __init__(self, keys: KeysCollection = K.IMAGE, counterfactual_keys: KeysCollection = K.COUNTERFACTUAL,
                 output_keys: KeysCollection = K.ANOMALY, score_keys: KeysCollection | None = None,
                 lesion_type: str = "opacity", lesion_key: str | None = K.LESION_TYPE, thresholds=None,
                 max_intensity: float | None = None, noise_radius: int = 1, allow_missing_keys: bool = False):
        super().__init__(keys, lesion_type, lesion_key, allow_missing_keys)
        self.counterfactual_keys = ensure_tuple_rep(counterfactual_keys, len(self.keys))
        self.output_keys = ensure_tuple_rep(output_keys, len(self.keys))
        self.score_keys = None if score_keys is None else ensure_tuple_rep(score_keys, len(self.keys))
        self.op = AnomalyMap(lesion_type, thresholds, max_intensity, noise_radius, return_score=score_keys is not None)

    def __call__(self, data):
        d = dict(data)
        lesion = self._lesion(d)
        for i, (key, cf_key, out_key) in enumerate(self.key_iterator(d, self.counterfactual_keys, self.output_keys)):
            result = self.op(d[key], _get(d, cf_key, self), lesion_type=lesion)
            if self.score_keys is None:
                d[out_key] = result
            else:
                d[out_key], d[self.score_keys[i]] = result
        return d


class FilterLesionBoxesd(_GroundingMapTransform):
    """Dictionary form of `FilterLesionBoxes` (``keys``: the candidate boxes)."""

    def __init__(self, keys: KeysCollection = K.BOXES, scores_key: str = K.BOX_SCORES, anomaly_key: str = K.ANOMALY,
                 anatomy_key: str = K.ANATOMY, reported_key: str = K.REPORTED_LOCATIONS,
                 kept_boxes_key: str = K.KEPT_BOXES, kept_scores_key: str = K.KEPT_BOX_SCORES,
                 locations_key: str = K.KEPT_BOX_LOCATIONS, conditions_key: str | None = K.BOX_CONDITIONS,
                 lesion_type: str = "opacity", lesion_key: str | None = K.LESION_TYPE, thresholds=None,
                 allow_missing_keys: bool = False):
        super().__init__(keys, lesion_type, lesion_key, allow_missing_keys)
        self.scores_key, self.anomaly_key, self.anatomy_key, self.reported_key = scores_key, anomaly_key, anatomy_key, reported_key
        self.kept_boxes_key, self.kept_scores_key = kept_boxes_key, kept_scores_key
        self.locations_key, self.conditions_key = locations_key, conditions_key
        self.op = FilterLesionBoxes(lesion_type, thresholds)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            result = self.op(
                d[key], _get(d, self.scores_key, self), _get(d, self.anomaly_key, self), _get(d, self.anatomy_key, self),
                _get(d, self.reported_key, self), lesion_type=self._lesion(d),
            )
            d[self.kept_boxes_key], d[self.kept_scores_key] = result.boxes, result.scores
            d[self.locations_key] = result.locations
            if self.conditions_key:
                d[self.conditions_key] = result.conditions
        return d


class IntersectingComponentsd(MapTransform):
    """Dictionary form of `IntersectingComponents` (``keys``: the anomaly map)."""

    def __init__(self, keys: KeysCollection = K.ANOMALY, boxes_key: str = K.KEPT_BOXES,
                 output_key: str = K.COMPONENTS, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.boxes_key, self.output_key = boxes_key, output_key
        self.op = IntersectingComponents()

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.op(d[key], _get(d, self.boxes_key, self))
        return d


class RefineLesionMaskd(_GroundingMapTransform):
    """Dictionary form of `RefineLesionMask` (``keys``: the selected components).

    The expansion stays inside the union of ``region_labels`` from the anatomy dict; for effusion, each
    lung whose base is among the kept boxes' locations gets its lower part filled to the costophrenic angle.
    """

    def __init__(self, keys: KeysCollection = K.COMPONENTS, image_key: str | None = K.IMAGE,
                 anatomy_key: str = K.ANATOMY, box_locations_key: str = K.KEPT_BOX_LOCATIONS,
                 output_key: str = K.LESION_MASK, region_labels: Sequence[str] = (vocab.RIGHT_LUNG, vocab.LEFT_LUNG),
                 lesion_type: str = "opacity", lesion_key: str | None = K.LESION_TYPE, noise_radius: int = 2,
                 min_component_size: int = 16, expand_iterations: int = 8, intensity_tolerance: float = 0.03,
                 max_intensity: float | None = None, allow_missing_keys: bool = False):
        super().__init__(keys, lesion_type, lesion_key, allow_missing_keys)
        self.image_key, self.anatomy_key, self.box_locations_key = image_key, anatomy_key, box_locations_key
        self.output_key, self.region_labels = output_key, tuple(region_labels)
        self.op = RefineLesionMask(noise_radius, min_component_size, expand_iterations, intensity_tolerance, max_intensity)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            anatomy = _get(d, self.anatomy_key, self)
            region = None
            if self.region_labels:
                missing = [label for label in self.region_labels if label not in anatomy]
                if missing:
                    raise GroundingInputError(f"{self.anatomy_key}: no mask for region label(s) {missing}.")
                region = np.logical_or.reduce([_as_bool(anatomy[label]) for label in self.region_labels])
            base_lungs = {}
            if self._lesion(d) == "effusion":
                located = {label for labels in d.get(self.box_locations_key, []) for label in labels}
                for base, lung in zip(vocab.LUNG_BASES, (vocab.RIGHT_LUNG, vocab.LEFT_LUNG)):
                    if base in located:
                        base_lungs[lung] = _get(anatomy, lung, self)
            image = _get(d, self.image_key, self) if self.image_key else None
            d[self.output_key] = self.op(d[key], image, region, base_lungs)
        return d


def _as_bool(mask):
    from monai.utils import convert_to_numpy

    return convert_to_numpy(mask).astype(bool)


class VerifyLocationsd(MapTransform):
    """Dictionary form of `VerifyLocations` (``keys``: the final lesion mask)."""

    def __init__(self, keys: KeysCollection = K.LESION_MASK, anatomy_key: str = K.ANATOMY,
                 reported_key: str = K.REPORTED_LOCATIONS, box_locations_key: str = K.KEPT_BOX_LOCATIONS,
                 all_reported_key: str = K.ALL_REPORTED_LOCATIONS, grounded_key: str = K.GROUNDED_LOCATIONS,
                 empty_key: str = K.EMPTY_LOCATIONS, candidates: Sequence[str] = tuple(vocab.INSTRUCTION_LOCATIONS),
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.anatomy_key, self.reported_key, self.box_locations_key = anatomy_key, reported_key, box_locations_key
        self.all_reported_key, self.grounded_key, self.empty_key = all_reported_key, grounded_key, empty_key
        self.op = VerifyLocations(candidates)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            result = self.op(
                d[key], _get(d, self.anatomy_key, self), _get(d, self.reported_key, self),
                d.get(self.box_locations_key, []), d.get(self.all_reported_key),
            )
            d[self.grounded_key], d[self.empty_key] = result.grounded, result.empty
        return d


class CardiothoracicRatiod(MapTransform):
    """Dictionary form of `CardiothoracicRatio` (``keys``: the anatomy dict)."""

    def __init__(self, keys: KeysCollection = K.ANATOMY, output_key: str = K.CTR, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.op = CardiothoracicRatio()

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            anatomy = d[key]
            d[self.output_key] = self.op(*(_get(anatomy, label, self) for label in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART)))
        return d
