"""Small dictionary transforms of the per-study chain that the cue and grounding transforms do not cover.

They sit between the cue transforms of ``monai_ils.cues.transforms`` in ``study_transforms`` of
``bundles/ils_generation/configs/generation.json`` (see :func:`monai_ils.generation.pipeline.default_study_transforms`):

* :class:`WorkingResized`: the working copy the cues run on (MONAI ``Resized``, longest side ``max_size``,
  area), applied only to an image larger than that, the full-size image kept under ``original_key``;
* :class:`BinaryAnatomyd`: every anatomy mask as a bool ``[1, H, W]`` array, checked once;
* :class:`LobesFromZonesd`: lobe masks approximated from lung zones for a backend that has none;
* :class:`MergeAnatomyd`: one anatomy dict from several sources (the paper's HybridGNet lungs and heart
  with CXAS zones and lobes);
* :class:`StudyCardiothoracicRatiod`: the study's CTR (``CardiothoracicRatiod``), None where it cannot be measured.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Resized
from monai.utils import TransformBackends, convert_to_numpy

from monai_ils import vocab
from monai_ils.transforms.grounding import CardiothoracicRatiod
from monai_ils.transforms.keys import GroundingKeys as K
from monai_ils.transforms.utils import GroundingInputError

ORIGINAL_IMAGE_KEY = "original_image"
"""Where :class:`WorkingResized` keeps the full-size image (what masks are resized back to, and overlays draw on)."""

LOBE_ZONE_APPROXIMATION: Mapping[str, tuple[str, ...]] = {
    "lung upper lobe right": ("right apical zone lung", "right upper zone lung"),
    "lung middle lobe right": ("right mid zone lung",),
    "lung lower lobe right": ("right lung base",),
    "lung upper lobe left": ("left apical zone lung", "left upper zone lung", "left mid zone lung"),
    "lung lower lobe left": ("left lung base",),
}
"""Frontal projection of each lobe by lung zones, used only when the anatomy backend has no lobe masks
(the classical one): the upper lobes project over the apical and upper zones (the left one, with the
lingula, over the mid zone too), the right middle lobe over the mid zone and the lower lobes over the bases."""


def _bool_mask(mask: Any) -> np.ndarray:
    array = convert_to_numpy(mask)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] != 1:
        raise GroundingInputError(f"anatomy mask: expected [1, H, W] or [H, W], got shape {array.shape}.")
    return array > 0


class WorkingResized(Resized):
    """MONAI ``Resized`` to a longest side of ``max_size`` (``size_mode="longest"``), only for images larger than that.

    A smaller image is left as it is (never upsampled); ``max_size=None`` disables the step. The image as loaded
    is kept, not copied, under ``original_key`` (None: not kept) so masks grounded on the working copy can be
    brought back to the image's own size.
    """

    backend = Resized.backend

    def __init__(self, keys: KeysCollection = K.IMAGE, max_size: int | None = 1024, mode: str = "area",
                 original_key: str | None = ORIGINAL_IMAGE_KEY, allow_missing_keys: bool = False, **resize_kwargs: Any):
        self.max_size = None if max_size is None else int(max_size)
        if self.max_size is not None and self.max_size < 1:
            raise ValueError(f"WorkingResized: max_size must be a positive number of pixels or None, got {max_size!r}.")
        super().__init__(keys, spatial_size=self.max_size or 1, size_mode="longest", mode=mode,
                         allow_missing_keys=allow_missing_keys, **resize_kwargs)
        self.original_key = original_key
        if original_key is not None and len(self.keys) != 1:
            raise ValueError(f"WorkingResized keeps one original image under {original_key!r}; got keys {self.keys}.")

    def __call__(self, data: Mapping[Hashable, Any], lazy: bool | None = None) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.original_key is not None:
                d[self.original_key] = d[key]
            if self.max_size is not None and max(d[key].shape[-2:]) > self.max_size:
                d[key] = super().__call__({key: d[key]}, lazy=lazy)[key]
        return d


class BinaryAnatomyd(MapTransform):
    """Each anatomy dict under ``keys``: every mask as bool ``[1, H, W]`` (foreground > 0), checked once for the chain."""

    backend = [TransformBackends.NUMPY]

    def __init__(self, keys: KeysCollection = K.ANATOMY, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = {label: _bool_mask(mask) for label, mask in d[key].items()}
        return d


class LobesFromZonesd(MapTransform):
    """Each anatomy dict under ``keys`` gains every lobe of ``approximation`` it lacks and whose zones it has,
    as the union of those zones (``LOBE_ZONE_APPROXIMATION``; a backend's own lobe masks are kept)."""

    backend = [TransformBackends.NUMPY]

    def __init__(self, keys: KeysCollection = K.ANATOMY, approximation: Mapping[str, Sequence[str]] | None = None,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        table = LOBE_ZONE_APPROXIMATION if approximation is None else approximation
        self.approximation = {vocab.check_anatomy_label(lobe): tuple(vocab.check_anatomy_label(z) for z in zones) for lobe, zones in table.items()}

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            anatomy = dict(d[key])
            for lobe, zones in self.approximation.items():
                if lobe not in anatomy and zones and all(z in anatomy for z in zones):
                    anatomy[lobe] = np.logical_or.reduce([_bool_mask(anatomy[z]) for z in zones])
            d[key] = anatomy
        return d


class MergeAnatomyd(MapTransform):
    """One anatomy dict under ``output_key`` from the dicts under ``keys``: each label from the first of them that
    has it (so list the source that should win first), optionally only ``labels_from[key]`` of a given key."""

    backend = [TransformBackends.NUMPY]

    def __init__(self, keys: KeysCollection, output_key: str = K.ANATOMY, labels_from: Mapping[str, Sequence[str]] | None = None,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.labels_from = {str(k): tuple(vocab.check_anatomy_label(label) for label in v) for k, v in dict(labels_from or {}).items()}
        unknown = set(self.labels_from) - {str(k) for k in self.keys}
        if unknown:
            raise ValueError(f"MergeAnatomyd: labels_from names {sorted(unknown)}, which are not among keys {self.keys}.")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        merged: dict[str, Any] = {}
        for key in self.key_iterator(d):
            wanted = self.labels_from.get(str(key))
            for label, mask in d[key].items():
                if label not in merged and (wanted is None or label in wanted):
                    merged[label] = mask
        d[self.output_key] = merged
        return d


class StudyCardiothoracicRatiod(CardiothoracicRatiod):
    """``CardiothoracicRatiod`` (the one CTR computation, Appendix D.3) writing None where the ratio cannot be
    measured (a lung or the heart missing or empty), since an unmeasurable CTR only means "no cardiomegaly negative"."""

    backend = [TransformBackends.NUMPY]

    def __init__(self, keys: KeysCollection = K.ANATOMY, output_key: str = K.CTR, allow_missing_keys: bool = False):
        super().__init__(keys, output_key=output_key, allow_missing_keys=allow_missing_keys)
        self.ctr_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        try:
            d = super().__call__(data)
        except (KeyError, GroundingInputError, ZeroDivisionError):
            return {**data, self.ctr_key: None}
        if d.get(self.ctr_key) is not None:
            d[self.ctr_key] = float(d[self.ctr_key])
        return d
