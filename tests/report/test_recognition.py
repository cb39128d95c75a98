"""A report from which nothing was recognised gives no negatives (issue 15 item 1): it is skipped with the reason,
in the report API, in dataset generation and (tests/label) in the label app; a normal English report keeps them."""

import pytest

from monai_ils.data.mimic_cxr import StudyRecord
from monai_ils.data.sample import sample_cxr_path
from monai_ils.report import structure_report, structure_reports
from monai_ils.report.recognition import states_normal

FRENCH = "CONCLUSION: Opacité du lobe inférieur droit évoquant une pneumonie. Épanchement pleural gauche. Cardiomégalie."
CHINESE = "FINDINGS: 右下肺野片状阴影，考虑肺炎。左侧胸腔积液。心影增大。"
NORMAL = "FINDINGS: The lungs are clear. Heart size is normal. No acute cardiopulmonary process."


@pytest.mark.parametrize("text", [FRENCH, CHINESE, "FINDINGS: Comparison is made with the prior study of ___."])
def test_report_with_nothing_recognised_is_skipped_with_the_reason(text):
    report = structure_report(text)
    assert report.skipped and report.findings == []
    assert "nothing recognised" in report.skipped_reason and "no negative can be claimed" in report.skipped_reason
    assert structure_reports([text])[0].skipped_reason == report.skipped_reason


@pytest.mark.parametrize("sentence", ["The lungs are clear.", "Lungs are otherwise clear.", "No acute cardiopulmonary process.",
                                      "Heart size is normal.", "Normal heart size.", "Normal chest radiograph.",
                                      "The cardiomediastinal silhouette is within normal limits.", "No acute abnormality."])
def test_normal_english_statements_are_recognised(sentence):
    assert states_normal([sentence])
    report = structure_report(f"FINDINGS: {sentence}")
    assert not report.skipped and report.findings == []


def test_negated_findings_alone_are_recognised():
    report = structure_report("IMPRESSION: No pleural effusion or pneumothorax.")
    assert not report.skipped and {f.presence for f in report.findings} == {"negative"}


@pytest.fixture(scope="module")
def pipeline():
    from monai_ils.generation.pipeline import GroundingPipeline, default_study_transforms

    return GroundingPipeline(study_transforms=default_study_transforms(max_size=256), keep_image=False)


def _record(text):
    return StudyRecord(key="s1", image_path=str(sample_cxr_path()), report_text=text, view_position="PA")


def test_generation_skips_a_foreign_report_instead_of_claiming_negatives(pipeline):
    from monai_ils.generation.results import SkipStudy

    with pytest.raises(SkipStudy, match="report: nothing recognised in the report section"):
        pipeline(_record(FRENCH))


def test_generation_still_makes_negatives_from_a_normal_english_report(pipeline):
    from monai_ils.generation.pairs import PairGenerator

    grounding = pipeline(_record(NORMAL))
    pairs = PairGenerator()(grounding)
    negatives = [s for s in pairs.samples if not s.positive]
    assert negatives and not [s for s in pairs.samples if s.positive]
    assert all(s.answer.startswith("[SEG] There is no") for s in negatives)
