"""Finding record: validation against the vocabulary, JSON round trip, JSON schemas."""

import json

import pytest

from monai_ils.report import Finding, FindingValidationError, StructuredReport, finding_json_schema, llm_output_json_schema
from monai_ils.report.rules import RuleBasedStructurer

jsonschema = pytest.importorskip("jsonschema")
Draft7Validator = jsonschema.Draft7Validator


def test_valid_finding_round_trip():
    f = Finding("opacities", 2, "positive", "tentative", ["bibasilar"], ["lung"], ["right lung base", "left lung base"],
                "opacity", "atelectasis", None)
    assert f.predicted_sentence_index == 2  # defaults to the finding's sentence
    again = Finding.from_dict(json.loads(json.dumps(f.to_dict())))
    assert again == f


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lesion_type": "pneumothorax"}, "unknown lesion_type 'pneumothorax'"),
        ({"presence": "maybe"}, "unknown presence 'maybe'"),
        ({"certainty": "sure"}, "unknown certainty 'sure'"),
        ({"locations": ["left elbow"]}, "unknown location 'left elbow'"),
        ({"sentence_index": 0}, "sentence_index 0 is out of range"),
        ({"entity": ""}, "entity must be a non-empty string"),
        ({"location_categories": []}, "location_categories has 0 entries for 1 location_terms"),
    ],
)
def test_invalid_fields_are_named(changes, message):
    data = {"entity": "opacity", "sentence_index": 1, "location_terms": ["left"], "location_categories": ["lung"]}
    data.update(changes)
    with pytest.raises(FindingValidationError, match=message.replace("(", r"\(")):
        Finding.from_dict(data, where="findings[3]")


def test_sentence_range_checked_against_report():
    with pytest.raises(FindingValidationError, match=r"findings\[0\]: sentence_index 4 is out of range \(1..3\)"):
        Finding("opacity", 4).validate(num_sentences=3, where="findings[0]")


def test_unknown_field_rejected():
    with pytest.raises(FindingValidationError, match=r"unknown field\(s\) \['colour'\]"):
        Finding.from_dict({"entity": "opacity", "sentence_index": 1, "colour": "red"})


def test_records_follow_the_json_schema():
    report = RuleBasedStructurer()("Bibasilar opacities, likely atelectasis. No pneumothorax. Stable cardiomegaly.")
    validator = Draft7Validator(finding_json_schema())
    for f in report.findings:
        validator.validate(f.to_dict())
    assert StructuredReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    Draft7Validator.check_schema(finding_json_schema())
    Draft7Validator.check_schema(llm_output_json_schema())
    with pytest.raises(Exception):
        validator.validate({**report.findings[0].to_dict(), "lesion_type": "nodule"})
