"""Dictionary forms of the grounding transforms, for `monai.transforms.Compose` pipelines.

Default keys come from `GroundingKeys`. A per-study lesion type is read from ``lesion_key`` when the
dictionary has it, so one pipeline can be reused for every (study, lesion type).

As in MONAI, each transform handles every key of ``keys`` on its own: each ``*_key`` argument takes one
name (shared by all keys) or one name per key, and the outputs of several keys must be named apart
(one output key per input key), so that no key's result overwrites another's. ``allow_missing_keys``
skips a missing key of ``keys``; a missing companion key (the image, the anatomy ...) is a KeyError naming it.
Every class has MONAI's ``D`` and ``Dict`` aliases (``AnomalyMapD = AnomalyMapDict = AnomalyMapd``).
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

__all__ = [
    "AnomalyMapd", "AnomalyMapD", "AnomalyMapDict",
    "FilterLesionBoxesd", "FilterLesionBoxesD", "FilterLesionBoxesDict",
    "IntersectingComponentsd", "IntersectingComponentsD", "IntersectingComponentsDict",
    "RefineLesionMaskd", "RefineLesionMaskD", "RefineLesionMaskDict",
    "VerifyLocationsd", "VerifyLocationsD", "VerifyLocationsDict",
    "CardiothoracicRatiod", "CardiothoracicRatioD", "CardiothoracicRatioDict",
]


def _get(data: Mapping, key: Hashable, owner: MapTransform):
    if key not in data:
        raise KeyError(f"{type(owner).__name__}: missing key {key!r} in the data dictionary (have {sorted(map(str, data))}).")
    return data[key]


class _PerKeyMixin:
    """Companion key names resolved to one per key of ``self.keys``."""

    keys: tuple

    def _per_key(self, name: str, value, output: bool = False) -> tuple:
        try:
            names = ensure_tuple_rep(value, len(self.keys))
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: {name} needs one name or one per key of {self.keys}, got {value!r}.") from err
        if output and len(self.keys) > 1 and None not in names and len(set(names)) < len(names):
            raise ValueError(
                f"{type(self).__name__}: {name}={value!r} would write the result of every key of {self.keys} to the same place; "
                f"give one {name} per key."
            )
        return names


class _GroundingMapTransform(_PerKeyMixin, MapTransform):
    def __init__(self, keys: KeysCollection, lesion_type: str, lesion_key: str | None, allow_missing_keys: bool):
        super().__init__(keys, allow_missing_keys)
        self.lesion_type = vocab.check_lesion_type(lesion_type)
        self.lesion_key = lesion_key

    def _lesion(self, data: Mapping) -> str:
        return vocab.check_lesion_type(data.get(self.lesion_key) or self.lesion_type) if self.lesion_key else self.lesion_type


class AnomalyMapd(_GroundingMapTransform):
    """Dictionary form of `AnomalyMap`: for each image key, writes A to its ``output_keys`` entry
    (and x_ano to ``score_keys``), from the counterfactual under its ``counterfactual_keys`` entry."""

    backend = AnomalyMap.backend

    def __init__(self, keys: KeysCollection = K.IMAGE, counterfactual_keys: KeysCollection = K.COUNTERFACTUAL,
                 output_keys: KeysCollection = K.ANOMALY, score_keys: KeysCollection | None = None,
                 lesion_type: str = "opacity", lesion_key: str | None = K.LESION_TYPE, thresholds=None,
                 max_intensity: float | None = None, noise_radius: int = 1, allow_missing_keys: bool = False):
        super().__init__(keys, lesion_type, lesion_key, allow_missing_keys)
        self.counterfactual_keys = self._per_key("counterfactual_keys", counterfactual_keys)
        self.output_keys = self._per_key("output_keys", output_keys, output=True)
        self.score_keys = None if score_keys is None else self._per_key("score_keys", score_keys, output=True)
        self.op = AnomalyMap(lesion_type, thresholds, max_intensity, noise_radius, return_score=score_keys is not None)

    def __call__(self, data):
        d = dict(data)
        lesion = self._lesion(d)
        score_keys = self.score_keys or (None,) * len(self.keys)
        for key, cf_key, out_key, score_key in self.key_iterator(d, self.counterfactual_keys, self.output_keys, score_keys):
            result = self.op(d[key], _get(d, cf_key, self), lesion_type=lesion)
            if score_key is None:
                d[out_key] = result
            else:
                d[out_key], d[score_key] = result
        return d


class FilterLesionBoxesd(_GroundingMapTransform):
    """Dictionary form of `FilterLesionBoxes` (``keys``: the candidate boxes; each box set is filtered on its own)."""

    backend = FilterLesionBoxes.backend

    def __init__(self, keys: KeysCollection = K.BOXES, scores_key: KeysCollection = K.BOX_SCORES,
                 anomaly_key: KeysCollection = K.ANOMALY, anatomy_key: str = K.ANATOMY, reported_key: str = K.REPORTED_LOCATIONS,
                 kept_boxes_key: KeysCollection = K.KEPT_BOXES, kept_scores_key: KeysCollection = K.KEPT_BOX_SCORES,
                 locations_key: KeysCollection = K.KEPT_BOX_LOCATIONS, conditions_key: KeysCollection | None = K.BOX_CONDITIONS,
                 lesion_type: str = "opacity", lesion_key: str | None = K.LESION_TYPE, thresholds=None,
                 allow_missing_keys: bool = False):
        super().__init__(keys, lesion_type, lesion_key, allow_missing_keys)
        self.scores_key = self._per_key("scores_key", scores_key)
        self.anomaly_key = self._per_key("anomaly_key", anomaly_key)
        self.anatomy_key, self.reported_key = anatomy_key, reported_key
        self.kept_boxes_key = self._per_key("kept_boxes_key", kept_boxes_key, output=True)
        self.kept_scores_key = self._per_key("kept_scores_key", kept_scores_key, output=True)
        self.locations_key = self._per_key("locations_key", locations_key, output=True)
        self.conditions_key = self._per_key("conditions_key", conditions_key, output=True)
        self.op = FilterLesionBoxes(lesion_type, thresholds)

    def __call__(self, data):
        d = dict(data)
        for key, scores, anomaly, kept, kept_scores, locations, conditions in self.key_iterator(
            d, self.scores_key, self.anomaly_key, self.kept_boxes_key, self.kept_scores_key, self.locations_key, self.conditions_key
        ):
            result = self.op(
                d[key], _get(d, scores, self), _get(d, anomaly, self), _get(d, self.anatomy_key, self),
                _get(d, self.reported_key, self), lesion_type=self._lesion(d),
            )
            d[kept], d[kept_scores], d[locations] = result.boxes, result.scores, result.locations
            if conditions:
                d[conditions] = result.conditions
        return d


class IntersectingComponentsd(_PerKeyMixin, MapTransform):
    """Dictionary form of `IntersectingComponents` (``keys``: the anomaly map).

    With ``per_box=True`` (default, Algorithm 1) ``output_key`` holds one channel per kept box, [N, H, W],
    which `RefineLesionMaskd` refines box by box.
    """

    backend = IntersectingComponents.backend

    def __init__(self, keys: KeysCollection = K.ANOMALY, boxes_key: KeysCollection = K.KEPT_BOXES,
                 output_key: KeysCollection = K.COMPONENTS, allow_missing_keys: bool = False, per_box: bool = True):
        super().__init__(keys, allow_missing_keys)
        self.boxes_key = self._per_key("boxes_key", boxes_key)
        self.output_key = self._per_key("output_key", output_key, output=True)
        self.op = IntersectingComponents(per_box)

    def __call__(self, data):
        d = dict(data)
        for key, boxes, out in self.key_iterator(d, self.boxes_key, self.output_key):
            d[out] = self.op(d[key], _get(d, boxes, self))
        return d


class RefineLesionMaskd(_GroundingMapTransform):
    """Dictionary form of `RefineLesionMask` (``keys``: the selected components, one channel per kept box).

    The expansion stays inside the union of ``region_labels`` from the anatomy dict. For effusion, a kept box
    whose locations (``box_locations_key``, one list per box) include a lung base ("right lung base",
    "left lung base") gets the lower portion of that lung added to its refined components: the lung's rows
    from the lesion's top (but not above the base zone) down to the costophrenic angle. With a single channel
    (the pooled ``per_box=False`` components) the locations of all kept boxes apply to it.
    """

    backend = RefineLesionMask.backend

    def __init__(self, keys: KeysCollection = K.COMPONENTS, image_key: KeysCollection | None = K.IMAGE,
                 anatomy_key: str = K.ANATOMY, box_locations_key: KeysCollection = K.KEPT_BOX_LOCATIONS,
                 output_key: KeysCollection = K.LESION_MASK, region_labels: Sequence[str] = (vocab.RIGHT_LUNG, vocab.LEFT_LUNG),
                 lesion_type: str = "opacity", lesion_key: str | None = K.LESION_TYPE, noise_radius: int = 2,
                 min_component_size: int = 16, expand_iterations: int = 8, intensity_tolerance: float = 0.03,
                 max_intensity: float | None = None, allow_missing_keys: bool = False):
        super().__init__(keys, lesion_type, lesion_key, allow_missing_keys)
        self.image_key = self._per_key("image_key", image_key)
        self.box_locations_key = self._per_key("box_locations_key", box_locations_key)
        self.output_key = self._per_key("output_key", output_key, output=True)
        self.anatomy_key, self.region_labels = anatomy_key, tuple(region_labels)
        self.op = RefineLesionMask(noise_radius, min_component_size, expand_iterations, intensity_tolerance, max_intensity)

    def __call__(self, data):
        d = dict(data)
        for key, image_key, locations_key, out in self.key_iterator(d, self.image_key, self.box_locations_key, self.output_key):
            anatomy = _get(d, self.anatomy_key, self)
            region = None
            if self.region_labels:
                missing = [label for label in self.region_labels if label not in anatomy]
                if missing:
                    raise GroundingInputError(f"{self.anatomy_key}: no mask for region label(s) {missing}.")
                region = np.logical_or.reduce([_as_bool(anatomy[label]) for label in self.region_labels])
            base_lungs = base_zones = None
            if self._lesion(d) == "effusion":
                base_lungs, base_zones = self._base_lungs(d[key], d.get(locations_key, []), anatomy, key, locations_key)
            image = _get(d, image_key, self) if image_key else None
            d[out] = self.op(d[key], image, region, base_lungs, base_zones=base_zones)
        return d

    def _base_lungs(self, components, box_locations, anatomy, key, locations_key):
        """Per group (kept box): {lung: lung mask} for the lung bases that box is located at; the base zones."""
        box_locations = [list(labels) for labels in box_locations]
        shape = tuple(getattr(components, "shape", np.shape(components)))
        groups = shape[0] if len(shape) == 3 else 1
        if len(box_locations) == groups:
            per_group = box_locations
        elif groups == 1:
            per_group = [[label for labels in box_locations for label in labels]]
        else:
            raise GroundingInputError(
                f"{key}: {groups} component groups but {len(box_locations)} kept-box location lists in {locations_key!r}; "
                "they must come from the same kept boxes."
            )
        zones = {}
        out = []
        for located in per_group:
            lungs = {}
            for base, lung in zip(vocab.LUNG_BASES, (vocab.RIGHT_LUNG, vocab.LEFT_LUNG)):
                if base in located:
                    lungs[lung] = _get(anatomy, lung, self)
                    zones[lung] = _get(anatomy, base, self)
            out.append(lungs)
        return out, zones


def _as_bool(mask):
    from monai.utils import convert_to_numpy

    array = convert_to_numpy(mask).astype(bool)
    return array[0] if array.ndim == 3 and array.shape[0] == 1 else array


class VerifyLocationsd(_PerKeyMixin, MapTransform):
    """Dictionary form of `VerifyLocations` (``keys``: the final lesion mask)."""

    backend = VerifyLocations.backend

    def __init__(self, keys: KeysCollection = K.LESION_MASK, anatomy_key: str = K.ANATOMY,
                 reported_key: KeysCollection = K.REPORTED_LOCATIONS, box_locations_key: KeysCollection = K.KEPT_BOX_LOCATIONS,
                 all_reported_key: str = K.ALL_REPORTED_LOCATIONS, grounded_key: KeysCollection = K.GROUNDED_LOCATIONS,
                 empty_key: KeysCollection = K.EMPTY_LOCATIONS, candidates: Sequence[str] = tuple(vocab.INSTRUCTION_LOCATIONS),
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.anatomy_key, self.all_reported_key = anatomy_key, all_reported_key
        self.reported_key = self._per_key("reported_key", reported_key)
        self.box_locations_key = self._per_key("box_locations_key", box_locations_key)
        self.grounded_key = self._per_key("grounded_key", grounded_key, output=True)
        self.empty_key = self._per_key("empty_key", empty_key, output=True)
        self.op = VerifyLocations(candidates)

    def __call__(self, data):
        d = dict(data)
        for key, reported, box_locations, grounded, empty in self.key_iterator(
            d, self.reported_key, self.box_locations_key, self.grounded_key, self.empty_key
        ):
            result = self.op(
                d[key], _get(d, self.anatomy_key, self), _get(d, reported, self),
                d.get(box_locations, []), d.get(self.all_reported_key),
            )
            d[grounded], d[empty] = result.grounded, result.empty
        return d


class CardiothoracicRatiod(_PerKeyMixin, MapTransform):
    """Dictionary form of `CardiothoracicRatio` (``keys``: the anatomy dict)."""

    backend = CardiothoracicRatio.backend

    def __init__(self, keys: KeysCollection = K.ANATOMY, output_key: KeysCollection = K.CTR, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.output_key = self._per_key("output_key", output_key, output=True)
        self.op = CardiothoracicRatio()

    def __call__(self, data):
        d = dict(data)
        for key, out in self.key_iterator(d, self.output_key):
            anatomy = d[key]
            d[out] = self.op(*(_get(anatomy, label, self) for label in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART)))
        return d


AnomalyMapD = AnomalyMapDict = AnomalyMapd
FilterLesionBoxesD = FilterLesionBoxesDict = FilterLesionBoxesd
IntersectingComponentsD = IntersectingComponentsDict = IntersectingComponentsd
RefineLesionMaskD = RefineLesionMaskDict = RefineLesionMaskd
VerifyLocationsD = VerifyLocationsDict = VerifyLocationsd
CardiothoracicRatioD = CardiothoracicRatioDict = CardiothoracicRatiod
