"""StructureReport / StructureReportd in a Compose chain."""

import pytest
from monai.transforms import Compose

from monai_ils.report.transforms import StructureReport, StructureReportd


def test_array_and_dictionary_forms():
    text = " FINDINGS: Right lower lobe opacity. No left pleural effusion. Small left apical pneumothorax.\n"
    report = StructureReport()(text)
    assert report.section_name == "findings" and len(report.findings) == 3
    out = Compose([StructureReportd(keys="report")])({"report": text, "image": "x.dcm"})
    assert out["image"] == "x.dcm" and out["report_structured"].to_dict() == report.to_dict()
    # positive findings only: the negated effusion does not make the bases "reported"
    assert out["all_reported_locations"] == ["left apical zone lung", "lung lower lobe right"]


def test_missing_and_bad_keys():
    assert StructureReportd(keys="report", allow_missing_keys=True)({"image": 1}) == {"image": 1, "all_reported_locations": []}
    with pytest.raises(KeyError):
        StructureReportd(keys="report")({"image": 1})
    with pytest.raises(TypeError, match="the report must be a string, got NoneType"):
        StructureReportd(keys="report")({"report": None})
