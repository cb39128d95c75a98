"""Rule-based structurer: behaviour on targeted sentences, and the corpus F1 gate (printed per field)."""

from pathlib import Path

import pytest

from monai_ils.report import RuleBasedStructurer, structure_report
from monai_ils.report.scoring import format_scores, load_corpus, score

CORPUS = Path(__file__).with_name("corpus.jsonl")
HELDOUT = Path(__file__).with_name("heldout.jsonl")  # written after the rules; see docs/report.md for its first score


@pytest.fixture(scope="module")
def structurer():
    return RuleBasedStructurer()


def _one(structurer, text):
    findings = structurer(text).findings
    assert len(findings) == 1, findings
    return findings[0]


def test_paper_example(structurer):
    report = structurer("Heart size is normal. The lower lung opacity is pneumonia.")
    (f,) = report.findings
    assert (f.entity, f.sentence_index, f.presence, f.certainty) == ("opacity", 2, "positive", "definitive")
    assert f.locations == ["right lung base", "left lung base"] and f.location_terms == ["lower lung"]
    assert (f.predicted_lesion_type, f.predicted_sentence_index) == ("pneumonia", 2)
    assert f.target_lesion_type == "pneumonia"


@pytest.mark.parametrize(
    "text, presence, certainty",
    [
        ("No change in the small right pleural effusion.", "positive", "definitive"),
        ("Stable small right pleural effusion.", "positive", "definitive"),
        ("The right pleural effusion has resolved.", "negative", "definitive"),
        ("Resolved right pleural effusion.", "negative", "definitive"),
        ("Findings may represent a small right pleural effusion.", "positive", "tentative"),
        ("A small right effusion cannot be excluded.", "positive", "tentative"),
        ("Likely small right pleural effusion.", "positive", "tentative"),
        ("Findings suggest a small right pleural effusion.", "positive", "tentative"),
        ("Blunting concerning for a right pleural effusion.", "positive", "tentative"),
        ("No definite right pleural effusion.", "negative", "tentative"),
        ("No right pleural effusion.", "negative", "definitive"),
    ],
)
def test_presence_and_certainty_rules(structurer, text, presence, certainty):
    effusion = [f for f in structurer(text).findings if f.lesion_type == "effusion"]
    assert len(effusion) == 1
    assert (effusion[0].presence, effusion[0].certainty) == (presence, certainty)


def test_predicted_type_in_next_sentence(structurer):
    f = _one(structurer, "Right lower lobe opacity. This may represent pneumonia.")
    assert (f.sentence_index, f.predicted_lesion_type, f.predicted_sentence_index, f.certainty) == (1, "pneumonia", 2, "tentative")


def test_devices_are_never_findings(structurer):
    text = ("Endotracheal tube tip 4 cm above the carina. Right internal jugular line ends in the SVC. "
            "Left chest tube and pacemaker leads are unchanged. Sternotomy wires.")
    assert structurer(text).findings == []
    f = _one(structurer, "Right chest tube in place without pneumothorax.")
    assert (f.entity, f.presence, f.locations) == ("pneumothorax", "negative", [])


def test_several_findings_in_one_sentence(structurer):
    findings = structurer("Cardiomegaly with pulmonary edema, bilateral pleural effusions and bibasilar atelectasis.").findings
    assert [(f.lesion_type, f.presence) for f in findings] == [
        ("cardiomegaly", "positive"), ("edema", "positive"), ("effusion", "positive"), ("atelectasis", "positive")]
    assert findings[0].locations == ["heart"] and findings[1].locations == ["right lung", "left lung"]
    assert findings[3].locations == ["right lung base", "left lung base"]


def test_other_findings_kept_with_locations(structurer):
    f = _one(structurer, "Small left apical pneumothorax.")
    assert (f.lesion_type, f.entity, f.locations) == (None, "pneumothorax", ["left apical zone lung"])
    report = structurer("Small left apical pneumothorax. Right lower lobe opacity.")
    assert report.positive_locations() == {"left apical zone lung", "lung lower lobe right"}


def test_negation_scope_ends_at_conjunction(structurer):
    findings = structurer("No pneumothorax and a left basilar opacity likely atelectasis.").findings
    assert [(f.entity, f.presence) for f in findings] == [("pneumothorax", "negative"), ("opacity", "positive")]


def test_structure_report_from_raw_text():
    report = structure_report(" FINDINGS: Bibasilar atelectasis.\n\n IMPRESSION: Cardiomegaly.\n")
    assert report.section_name == "findings" and report.structurer == "rules"
    assert [f.lesion_type for f in report.findings] == ["atelectasis"]
    skipped = structure_report(" EXAMINATION: CHEST\n")
    assert skipped.skipped and skipped.findings == [] and "no findings" in skipped.skipped_reason


def test_deterministic(structurer):
    text = "Bibasilar opacities, likely atelectasis. Possible small left effusion. No pneumothorax."
    assert structurer(text).to_dict() == RuleBasedStructurer()(text).to_dict()


def test_corpus_f1(structurer, capsys):
    items = load_corpus(CORPUS)
    assert len(items) >= 80
    tags = {t for item in items for t in item["tags"]}
    assert {"negation", "hedge", "bilateral", "basilar", "retrocardiac", "lobar", "stable", "resolved", "predicted",
            "device", "multi"} <= tags
    scores, errors = score(items, lambda text: structurer(text).findings)
    with capsys.disabled():
        print(f"\nrule-based structurer on {len(items)} corpus snippets:\n{format_scores(scores)}")
        for e in errors:
            print("  miss:", e)
    assert scores["certainty"]["f1"] >= 0.9  # (lesion type, presence, certainty)
    assert scores["lesion_type"]["f1"] >= 0.9 and scores["presence"]["f1"] >= 0.9


def test_second_corpus_f1(structurer, capsys):
    items = load_corpus(HELDOUT)
    scores, errors = score(items, lambda text: structurer(text).findings)
    with capsys.disabled():
        print(f"\nrule-based structurer on {len(items)} snippets of the second corpus:\n{format_scores(scores)}")
        for e in errors:
            print("  miss:", e)
    assert scores["certainty"]["f1"] >= 0.9


@pytest.mark.parametrize(
    "text",
    [
        "Left lower lobe opacity is again seen, slightly improved from prior, which may represent resolving pneumonia.",
        "Right lower lobe opacity, not significantly changed, likely pneumonia.",
    ],
)
def test_prediction_after_a_description(structurer, text):
    f = _one(structurer, text)
    assert (f.lesion_type, f.predicted_lesion_type, f.certainty) == ("opacity", "pneumonia", "tentative")


def test_backward_hedge_stops_at_a_comma(structurer):
    findings = structurer("Moderate right pleural effusion with overlying atelectasis, underlying consolidation not excluded.").findings
    assert [(f.lesion_type, f.certainty) for f in findings] == [
        ("effusion", "definitive"), ("atelectasis", "definitive"), ("consolidation", "tentative")]


@pytest.mark.parametrize(
    "text",
    [
        "Right lower lobe opacity, without effusion, likely pneumonia.",
        "Right lower lobe opacity, with no pleural effusion, concerning for pneumonia.",
    ],
)
def test_negated_aside_neither_negates_nor_hides_the_prediction(structurer, text):
    findings = structurer(text).findings
    assert [(f.lesion_type, f.presence, f.certainty, f.predicted_lesion_type) for f in findings] == [
        ("opacity", "positive", "tentative", "pneumonia"), ("effusion", "negative", "definitive", None)]


def test_comma_hedge_ends_a_negation(structurer):
    findings = structurer("No pneumothorax, possibly small left effusion.").findings
    assert [(f.entity, f.presence, f.certainty) for f in findings] == [
        ("pneumothorax", "negative", "definitive"), ("effusion", "positive", "tentative")]


@pytest.mark.parametrize("text", ["No focal consolidation concerning for pneumonia.", "No pleural effusion, pneumothorax, or focal consolidation."])
def test_negation_without_a_comma_hedge_still_spans_the_list(structurer, text):
    assert {f.presence for f in structurer(text).findings} == {"negative"}


def test_slash_pair_shares_location(structurer):
    findings = structurer("Left lower lobe collapse/consolidation.").findings
    assert [(f.lesion_type, f.locations) for f in findings] == [
        ("atelectasis", ["lung lower lobe left"]), ("consolidation", ["lung lower lobe left"])]


def _structure_in_this_process(structurer, text):
    return [(f.lesion_type, f.presence, f.certainty, f.locations) for f in structurer(text).findings]


def test_structurer_works_after_pickling_into_a_fresh_process(structurer):
    """Generation workers receive the structurer pickled; spaCy's extensions must exist in the new process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    text = "Left basilar opacity, likely atelectasis. No pleural effusion."
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        remote = pool.submit(_structure_in_this_process, structurer, text).result(timeout=120)
    assert remote == _structure_in_this_process(structurer, text)
    assert remote[0][:3] == ("opacity", "positive", "tentative")


@pytest.mark.parametrize(
    "text",
    [
        "No interval increase in the size of the right pleural effusion.",
        "No significant increase in left lower lobe atelectasis.",
        "No further increase in the right basilar opacity.",
    ],
)
def test_no_increase_in_a_finding_means_it_persists(structurer, text):
    """A comparison with a prior study: the finding is still there (not a negative)."""
    f = _one(structurer, text)
    assert (f.presence, f.certainty) == ("positive", "definitive")


@pytest.mark.parametrize("text", ["No increase in heart size.", "No interval increase in heart size."])
def test_no_increase_in_heart_size_claims_nothing(structurer, text):
    """Unchanged heart size may be normal or enlarged: neither a cardiomegaly positive nor a negative."""
    assert structurer(text).findings == []


def test_increase_in_heart_size_is_still_cardiomegaly(structurer):
    f = _one(structurer, "Interval increase in heart size.")
    assert (f.lesion_type, f.presence) == ("cardiomegaly", "positive")
