"""MONAI transforms around ``structure_report``, so structuring joins a Compose chain of the generation pipeline."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from monai_ils.report.api import default_structurer, structure_report
from monai_ils.report.finding import StructuredReport

__all__ = ["StructureReport", "StructureReportd"]


class StructureReport(Transform):
    """Raw report text -> ``StructuredReport`` (section chosen by the Appendix A.1 fallback).

    Args:
        structurer: ``RuleBasedStructurer`` (default) or ``LLMStructurer``; anything with
            ``structure(section_text, section_name)``.
    """

    def __init__(self, structurer=None):
        self.structurer = structurer

    def __call__(self, report: str) -> StructuredReport:
        if not isinstance(report, str):
            raise TypeError(f"StructureReport: the report must be a string, got {type(report).__name__}")
        return structure_report(report, self.structurer or default_structurer())


class StructureReportd(MapTransform):
    """Dictionary form: reads the report text at ``keys`` and writes, per key,
    ``{key}_structured`` (the ``StructuredReport``) and, once, ``all_reported_locations`` (the union of
    the anatomical labels of every positive finding, which the empty-location step excludes).

    Args:
        keys: keys holding raw report text (usually ``"report"``).
        structurer: see ``StructureReport``.
        locations_key: where to write the union of reported locations (None: do not write it).
        allow_missing_keys: skip absent keys instead of raising.
    """

    def __init__(self, keys: KeysCollection = "report", structurer=None, locations_key: str | None = "all_reported_locations",
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.structure = StructureReport(structurer)
        self.locations_key = locations_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        locations: set[str] = set()
        for key in self.key_iterator(d):
            report = self.structure(d[key])
            d[f"{key}_structured"] = report
            locations |= report.positive_locations()
        if self.locations_key is not None:
            d[self.locations_key] = sorted(locations)
        return d
