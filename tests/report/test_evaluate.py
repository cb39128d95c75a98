"""``python -m monai_ils.report evaluate``: gold format checks, hand-computed scores, the shipped example."""

import csv
import io
import json
from pathlib import Path

import pytest

from monai_ils.report.cli import main
from monai_ils.report.evaluate import load_gold

EXAMPLE = Path(__file__).resolve().parents[2] / "monai_ils" / "report" / "gold_example.jsonl"


def _write(tmp_path, rows):
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _csv(capsys):
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    return {r["lesion"]: r for r in rows}


def test_scores_by_hand(tmp_path, capsys):
    gold = _write(tmp_path, [
        # rules: effusion positive definitive at the left base -> TP, certainty ok, side ok, zone ok
        {"id": "a", "report": "Small left pleural effusion.",
         "labels": {"effusion": {"presence": "positive", "locations": ["left lung base"]}}},
        # gold says tentative and right-sided: TP, certainty wrong, side wrong
        {"id": "b", "report": "Small left pleural effusion.",
         "labels": {"effusion": {"presence": "positive", "certainty": "tentative", "locations": ["right lung base"]}}},
        # gold positive, rules negative -> FN; the cardiomegaly the rules find is a FP
        {"id": "c", "report": "No pleural effusion. Mild cardiomegaly.", "labels": {"effusion": {"presence": "positive"}}},
    ])
    assert main(["evaluate", str(gold), "--format", "csv"]) == 0
    table = _csv(capsys)
    eff = table["effusion"]
    assert (eff["gold_positive"], eff["predicted_positive"]) == ("3", "2")
    assert (eff["precision"], eff["recall"], eff["f1"]) == ("1.000", "0.667", "0.800")
    assert (eff["certainty_accuracy"], eff["certainty_n"]) == ("0.500", "2")
    assert (eff["side_agreement"], eff["zone_agreement"], eff["location_n"]) == ("0.500", "0.500", "2")
    cm = table["cardiomegaly"]
    assert (cm["gold_positive"], cm["predicted_positive"], cm["precision"], cm["recall"]) == ("0", "1", "0.000", "")
    assert table["all (micro)"]["precision"] == "0.667"  # 2 TP of 3 predicted
    assert table["edema"]["f1"] == ""  # nothing to score


def test_markdown_table_to_file(tmp_path, capsys):
    out = tmp_path / "scores.md"
    assert main(["evaluate", str(EXAMPLE), "--output", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("| lesion | gold_positive |") and len(lines) == 2 + 8
    err = capsys.readouterr().err
    assert "scored 12 reports with the rules structurer" in err
    assert "effusion" not in err  # the summary names no report content


@pytest.mark.parametrize("row, message", [
    ({"id": "x", "report": "r", "labels": {"nodule": {"presence": "positive"}}}, "gold.jsonl:1: unknown lesion type 'nodule'"),
    ({"id": "x", "report": "r", "labels": {"edema": {"presence": "yes"}}}, r"labels.edema.presence: 'yes' is not one of"),
    ({"id": "x", "report": "r", "labels": {"edema": {"presence": "positive", "locations": ["lower lung"]}}},
     r"labels.edema.locations: \['lower lung'\] not anatomical label"),
    ({"id": "x", "text": "r", "labels": {}}, "needs a string 'report' and an object 'labels'"),
])
def test_bad_gold_is_named(tmp_path, row, message):
    with pytest.raises(ValueError, match=message):
        load_gold(_write(tmp_path, [row]))


def test_bad_gold_on_the_command_line_exits_with_the_reason(tmp_path):
    gold = _write(tmp_path, [{"id": "x", "report": "r", "labels": {}}, {"id": "x", "report": "r", "labels": {}}])
    with pytest.raises(SystemExit, match="evaluate: gold.jsonl:2: duplicate id 'x'"):
        main(["evaluate", str(gold)])


def test_example_file_is_valid_and_covers_every_lesion_type():
    gold = load_gold(EXAMPLE)
    assert len(gold) == 12
    assert {lesion for g in gold for lesion, label in g.labels.items() if label.presence == "positive"} == {
        "cardiomegaly", "pneumonia", "atelectasis", "opacity", "consolidation", "edema", "effusion"}
