"""Language of real radiology reports (issue 16): each pattern in several phrasings, with the cases it must not
change. Sentences are our own. Each case lists the expected (lesion type, presence, certainty[, predicted]) of the
lesion findings; other findings are ignored unless the test says so."""

import pytest

from monai_ils.report import RuleBasedStructurer, structure_report
from monai_ils.report.sections import select_section, split_sentences


@pytest.fixture(scope="module")
def rules():
    return RuleBasedStructurer()


def _lesions(rules, text, with_predicted=False):
    out = []
    for f in rules(text).findings:
        if f.lesion_type is None:
            continue
        key = (f.lesion_type, f.presence, f.certainty)
        out.append(key + (f.predicted_lesion_type,) if with_predicted else key)
    return sorted(out)


POS, NEG = "positive", "negative"
DEF, TENT = "definitive", "tentative"


@pytest.mark.parametrize("text, expected", [
    ("Borderline heart size.", [("cardiomegaly", POS, TENT)]),
    ("The heart is borderline in size, unchanged.", [("cardiomegaly", POS, TENT)]),
    ("Heart size remains borderline.", [("cardiomegaly", POS, TENT)]),
    ("The heart is slightly large.", [("cardiomegaly", POS, DEF)]),
    ("The heart is mildly large for the patient's habitus.", [("cardiomegaly", POS, DEF)]),
    ("Heart size mildly enlarged, as before.", [("cardiomegaly", POS, DEF)]),
    ("The heart size is at the upper limits of normal or mildly enlarged.", [("cardiomegaly", POS, TENT)]),
    ("Mild heart enlargement is stable.", [("cardiomegaly", POS, DEF)]),
    ("There has been an increase in heart size since the prior film.", [("cardiomegaly", POS, DEF)]),
    # the other way
    ("The heart is not large.", [("cardiomegaly", NEG, DEF)]),
    ("Heart size is normal.", []),
    ("Large lung volumes.", []),
    ("The heart size is at the upper limits of normal.", []),
])
def test_cardiomegaly_wording(rules, text, expected):
    assert _lesions(rules, text) == expected


def test_enlarged_cardiomediastinal_silhouette_stays_apart(rules):
    (f,) = rules("Enlarged cardiomediastinal silhouette.").findings
    assert (f.entity, f.lesion_type) == ("enlarged cardiomediastinal silhouette", None)


@pytest.mark.parametrize("text, expected", [
    ("Rounded densities over both breasts.", []),
    ("Bilateral nipple shadows project over the lower lungs.", []),
    ("A small density at the left base is a nipple piercing.", []),
    ("Opacity projecting over the left breast.", []),
    ("A retrocardiac density represents a small hiatal hernia.", []),
    ("Retrocardiac density, likely a hiatal hernia.", []),
    ("Retrocardiac density. This is a hiatal hernia.", []),
    ("Tiny densities in the right upper lobe are calcified granulomas.", []),
    ("The right basilar opacity is likely artifact.", []),
    ("Linear density at the left apex is artifactual.", []),
    # a real opacity is kept, also next to a non-lesion
    ("Retrocardiac opacity with a small hiatal hernia.", [("opacity", POS, DEF)]),
    ("Left base opacity. Nipple shadows project over both lungs.", [("opacity", POS, DEF)]),
])
def test_density_that_is_not_a_lung_lesion(rules, text, expected):
    assert _lesions(rules, text) == expected


def test_non_lesion_density_leaves_other_findings(rules):
    entities = [f.entity for f in rules("A retrocardiac density represents a small hiatal hernia.").findings]
    assert entities == ["hiatal hernia"]
    assert rules("A coronary stent and nipple piercings are seen.").findings == []


@pytest.mark.parametrize("text, expected", [
    ("Calcified granulomas and hilar calcifications, sequela of old granulomatous infection.", []),
    ("Scattered calcified nodules reflect prior histoplasmosis.", []),
    ("On the previous CT the right middle lobe was consolidated.", []),
    ("Atelectasis seen on old CT scans of the chest.", []),
    ("The lingular opacity noted on the prior CT is again seen.", []),
    # current disease next to history, and a negated historical finding
    ("Sequela of old granulomatous infection. New right lower lobe pneumonia.", [("pneumonia", POS, DEF)]),
    ("The pneumonia seen on CT last week is not seen on this radiograph.", [("pneumonia", NEG, DEF)]),
    ("Compared to prior, the left effusion has increased.", [("effusion", POS, DEF)]),
])
def test_old_or_historical_disease(rules, text, expected):
    assert _lesions(rules, text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Evaluation for pleural fluid is limited by positioning.", []),
    ("Assessment of the left base for effusion is limited.", []),
    ("Correlate for symptoms of infection.", []),
    ("Clinical signs of pneumonia should be correlated.", []),
    ("The right lower opacity is an artifact from the gown.", []),
    # a limited exam can still state a finding after the clause
    ("Evaluation of the bases is limited, with a possible small left effusion.", [("effusion", POS, TENT)]),
])
def test_not_a_finding(rules, text, expected):
    assert _lesions(rules, text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Lungs are expanded and clear airspace disease.", [("opacity", NEG, DEF)]),
    ("The lungs are well expanded and clear consolidation.", [("consolidation", NEG, DEF)]),
    ("No other infiltrates or masses.", [("opacity", NEG, DEF)]),
    ("Left lower lobe atelectasis; no other consolidation.", [("atelectasis", POS, DEF), ("consolidation", NEG, DEF)]),
    ("The pneumonia seen on CT of the chest last month is not seen.", [("pneumonia", NEG, DEF)]),
    ("The right pleural effusion described on the outside study is not visualized.", [("effusion", NEG, DEF)]),
    ("No cardiomegaly with bilateral small pleural effusions.", [("cardiomegaly", NEG, DEF), ("effusion", POS, DEF)]),
    ("No edema with a new left pleural effusion.", [("edema", NEG, DEF), ("effusion", POS, DEF)]),
    ("No pleural effusion. small right apical pneumothorax.", [("effusion", NEG, DEF)]),
    ("Without significant interval change of left basilar atelectasis.", [("atelectasis", POS, DEF)]),
    ("Right base consolidation without interval change.", [("consolidation", POS, DEF)]),
    # what must stay as it was
    ("The lungs are clear.", []),
    ("Lungs are clear, with a small left effusion.", [("effusion", POS, DEF)]),
    ("No pleural effusion or pneumothorax.", [("effusion", NEG, DEF)]),
    ("No consolidation, effusion or edema.", [("consolidation", NEG, DEF), ("edema", NEG, DEF), ("effusion", NEG, DEF)]),
])
def test_negation_scope(rules, text, expected):
    assert _lesions(rules, text) == expected


def test_lower_case_sentence_after_a_negated_one(rules):
    findings = rules("No pleural effusion. small right apical pneumothorax.").findings
    assert [(f.entity, f.presence, f.sentence_index) for f in findings] == [
        ("pleural effusion", NEG, 1), ("pneumothorax", POS, 2)]
    assert split_sentences("Paged at 3 p.m. on ___. small effusion.") == ["Paged at 3 p.m. on ___.", "small effusion."]


@pytest.mark.parametrize("text, expected", [
    ("Differential diagnosis includes pneumonia.", [("pneumonia", POS, TENT, None)]),
    ("Differential considerations include atelectasis and aspiration.", [("atelectasis", POS, TENT, None), ("pneumonia", POS, TENT, None)]),
    ("Pneumonia is in the differential.", [("pneumonia", POS, TENT, None)]),
    ("Left basilar atelectasis or scarring.", [("atelectasis", POS, TENT, None)]),
    ("Correlate clinically for pneumonia.", [("pneumonia", POS, TENT, None)]),
    ("In the appropriate clinical setting, these opacities would be compatible with pneumonia.",
     [("opacity", POS, TENT, "pneumonia")]),
    ("Right lower lobe opacity, favoring atelectasis.", [("opacity", POS, TENT, "atelectasis")]),
    ("The left basilar opacity is favored as atelectasis.", [("opacity", POS, TENT, "atelectasis")]),
    ("Pneumonia is difficult to completely exclude.", [("pneumonia", POS, TENT, None)]),
    ("It is difficult to completely exclude a small effusion.", [("effusion", POS, TENT, None)]),
    ("Early pneumonia would be a consideration.", [("pneumonia", POS, TENT, None)]),
    ("Question small left effusion.", [("effusion", POS, TENT, None)]),
    ("Findings raise suspicion for right lower lobe pneumonia.", [("pneumonia", POS, TENT, None)]),
    ("Patchy opacity may indicate pneumonia.", [("opacity", POS, TENT, "pneumonia")]),
    ("The opacity may also be atelectasis.", [("opacity", POS, TENT, "atelectasis")]),
    ("Bibasilar opacities may be secondary to crowding, infiltrates or pulmonary edema.",
     [("edema", POS, TENT, None), ("opacity", POS, DEF, None), ("opacity", POS, TENT, None)]),
    ("Bibasilar hazy opacities. This may be secondary to edema.", [("opacity", POS, TENT, "edema")]),
    # not hedges
    ("Developing consolidation in the right upper lobe.", [("consolidation", POS, DEF, None)]),
    ("Right lower lobe consolidation consistent with pneumonia.", [("consolidation", POS, DEF, "pneumonia")]),
    ("No atelectasis or effusion.", [("atelectasis", NEG, DEF, None), ("effusion", NEG, DEF, None)]),
])
def test_certainty(rules, text, expected):
    assert _lesions(rules, text, with_predicted=True) == expected


@pytest.mark.parametrize("text, expected", [
    ("The left lower lobe is totally opaque.", [("opacity", ["lung lower lobe left"])]),
    ("Density ___ representing atelectasis in the right base.", [("opacity", ["right lung base"])]),
    ("Right basilar density XXXX representing atelectasis.", [("opacity", ["right lung base"])]),
])
def test_lexicon_and_placeholders(rules, text, expected):
    assert [(f.lesion_type, f.locations) for f in rules(text).findings] == expected


def test_placeholder_keeps_the_predicted_type(rules):
    for text in ("Density ___ representing atelectasis.", "Density XXXX representing atelectasis."):
        (f,) = rules(text).findings
        assert (f.lesion_type, f.predicted_lesion_type) == ("opacity", "atelectasis")


ONE_LINE = ("EXAMINATION: Chest PA and lateral. INDICATION: Cough. COMPARISON: None. FINDINGS: Mild cardiomegaly. "
            "No effusion. IMPRESSION: Right lower lobe pneumonia.")


def test_inline_headers_split_into_sections():
    assert select_section(ONE_LINE) == ("findings", "Mild cardiomegaly. No effusion.", None)
    assert select_section(ONE_LINE.replace("FINDINGS:", "Findings:").replace("IMPRESSION:", "Impression:"))[1] == \
        "Mild cardiomegaly. No effusion."
    # a word inside prose is no header
    assert select_section("FINDINGS: No findings: normal study.")[1] == "No findings: normal study."


def test_findings_and_impression_together(rules):
    assert select_section(ONE_LINE, mode="findings+impression") == (
        "findings+impression", "Mild cardiomegaly. No effusion. Right lower lobe pneumonia.", None)
    assert select_section("IMPRESSION: Pneumonia.", mode="findings+impression")[0] == "impression"  # falls back
    report = structure_report(ONE_LINE, rules, sections="findings+impression")
    assert [f.lesion_type for f in report.findings] == ["cardiomegaly", "effusion", "pneumonia"]
    assert [f.lesion_type for f in structure_report(ONE_LINE, rules).findings] == ["cardiomegaly", "effusion"]
    with pytest.raises(ValueError, match="mode must be one of"):
        select_section(ONE_LINE, mode="all")
