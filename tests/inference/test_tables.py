"""The paper-shaped tables built from hand-made per-sample scores, written and read back."""

import csv

from monai_ils.data.ils_format import ILSSample
from monai_ils.evaluation.metrics import MaskStats
from monai_ils.evaluation.tables import SampleScore, build_tables, lesion_type_of, write_tables


def _score(i, lesion, qtype, positive, inter, union, pred_area, text):
    return SampleScore(str(i), lesion, qtype, positive, MaskStats(inter, union, pred_area, union - pred_area + inter if positive else 0), text)


SCORES = [
    _score(0, "edema", "basic", True, 1, 2, 1, True),  # IoU 0.5
    _score(1, "edema", "global", True, 3, 4, 3, False),  # IoU 0.75
    _score(2, "edema", "basic", False, 0, 0, 0, True),  # empty: correct
    _score(3, "pneumonia", "lesion_inference", True, 0, 5, 0, True),  # IoU 0
    _score(4, "opacity", "lesion_inference", False, 0, 3, 3, False),  # not empty: wrong
]


def test_tables_hand_computed(tmp_path):
    tables = {t.name: t for t in build_tables(SCORES)}
    by_lesion = dict(tables["segmentation_by_lesion"].rows)
    assert list(by_lesion) == ["Pneumonia", "Opacity", "Edema", "Total"]  # paper order, only lesions present
    assert by_lesion["Edema"][:3] == [0.625, 4 / 6, 1.0]
    assert by_lesion["Total"][:5] == [(0.5 + 0.75 + 0.0) / 3, 4 / 11, 0.5, 3, 2]
    by_q = dict(tables["segmentation_by_question_type"].rows)
    assert by_q["Lesion Inf."][:3] == [0.0, 0.0, 0.0]
    outcome = dict(tables["text_by_outcome"].rows)
    assert outcome["Positive"] == [2 / 3, 1.0, 0.0, 1.0]
    assert outcome["Negative"][0] == 0.5 and outcome["Negative"][2] != outcome["Negative"][2]  # no global negatives: NaN
    by_lesion_text = dict(tables["text_by_lesion"].rows)
    assert by_lesion_text["Total"][0] == 3 / 5

    md = write_tables(list(tables.values()), tmp_path)
    text = md.read_text()
    assert "| Edema | 62.5 | 66.7 | 100.0 | 2 | 1 |" in text
    with open(tmp_path / "text_by_outcome.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Type", "Overall", "Basic", "Global", "Lesion Inf."]
    assert rows[2] == ["Negative", "50.0", "100.0", "-", "0.0"]


def test_segmentation_only_has_no_text_tables():
    scores = [SampleScore(s.id, s.lesion, s.question_type, s.positive, s.stats, None) for s in SCORES]
    assert [t.name for t in build_tables(scores)] == ["segmentation_by_lesion", "segmentation_by_question_type"]


def test_lesion_type_of_lesion_inference_positive_uses_the_named_lesion():
    common = dict(split="test", study_key="s", image_path="x.png", instruction="Segment the opacity in the left lung and predict its type.")
    pos = ILSSample(**common, answer="[SEG] It possibly reflects atelectasis.", target="opacity", positive=True, question_type="lesion_inference")
    neg = ILSSample(**common, answer="[SEG] There is no opacity in the left lung.", target="opacity", positive=False, question_type="lesion_inference")
    assert lesion_type_of(pos) == "atelectasis"
    assert lesion_type_of(neg) == "opacity"
