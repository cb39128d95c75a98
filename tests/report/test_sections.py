"""Section selection (Appendix A.1 fallback) and sentence splitting on MIMIC-style raw reports."""

import pytest

from monai_ils.report.sections import normalize_text, parse_sections, select_section, split_sentences

MIMIC_STYLE = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)
 
 INDICATION:  ___ year old woman with cough  // ?pna
 
 COMPARISON:  ______
 
 FINDINGS: 
 
 PA and lateral views of the chest provided.  There is no focal consolidation,
 effusion, or pneumothorax.  Mild cardiomegaly is
 unchanged.
 
 IMPRESSION: 
 
 No acute intrathoracic process.
"""


def test_findings_preferred_and_wrapped_lines_joined():
    name, text, reason = select_section(MIMIC_STYLE)
    assert (name, reason) == ("findings", None)
    assert text == ("PA and lateral views of the chest provided. There is no focal consolidation, effusion, or pneumothorax. "
                    "Mild cardiomegaly is unchanged.")


def test_impression_when_findings_missing():
    report = MIMIC_STYLE.replace(" FINDINGS: \n \n PA and lateral views of the chest provided.", " TECHNIQUE: PA and lateral.")
    assert select_section(report)[:2] == ("impression", "No acute intrathoracic process.")


def test_empty_findings_header_falls_back_to_impression():
    report = " FINDINGS:\n \n IMPRESSION: Stable cardiomegaly.\n"
    assert select_section(report)[:2] == ("impression", "Stable cardiomegaly.")


def test_header_case_and_spacing_variants():
    assert select_section("Findings :  Small left effusion.\nimpression: x")[:2] == ("findings", "Small left effusion.")
    assert select_section("  IMPRESSIONS:\n 1. Cardiomegaly.")[:2] == ("impression", "1. Cardiomegaly.")
    assert select_section("CONCLUSION: Right lower lobe pneumonia.")[0] == "impression"


def test_last_paragraph_when_both_missing():
    report = " EXAMINATION: CHEST\n INDICATION: cough\n \n Lungs are clear.\n No effusion.\n"
    assert select_section(report) == ("last_paragraph", "Lungs are clear. No effusion.", None)
    assert select_section("Bibasilar atelectasis. Cardiomegaly.")[:2] == ("last_paragraph", "Bibasilar atelectasis. Cardiomegaly.")


def test_skipped_with_reason_when_no_section():
    name, text, reason = select_section(" EXAMINATION: CHEST\n COMPARISON: ___\n")
    assert name is None and text == "" and reason == "no findings, impression or last paragraph section"
    assert select_section("   ")[2] == "empty report"


def test_addendum_is_kept_apart():
    report = " FINAL ADDENDUM\n ADDENDUM: New right effusion was discussed with Dr. ___.\n\n FINAL REPORT\n IMPRESSION: Stable cardiomegaly.\n"
    sections = parse_sections(report)
    assert [s.name for s in sections.sections] == ["addendum", "addendum", "preamble", "impression"]
    assert select_section(report)[:2] == ("impression", "Stable cardiomegaly.")


def test_lowercase_label_lines_are_not_headers():
    # only known headers match in lower case; "Heart: normal" stays text
    sections = parse_sections(" Heart: normal\n FINDINGS: x\n")
    assert [s.name for s in sections.sections] == ["preamble", "findings"]


def test_deidentification_blanks_normalised():
    assert normalize_text("Compared to ____ on _____,  stable.") == "Compared to ___ on ___, stable."


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Heart size is normal. No effusion.", ["Heart size is normal.", "No effusion."]),
        ("1. Cardiomegaly. 2. Bibasilar atelectasis.", ["Cardiomegaly.", "Bibasilar atelectasis."]),
        ("Dr. ___ was paged at 3:45 p.m. on ___. No change.", ["Dr. ___ was paged at 3:45 p.m. on ___.", "No change."]),
        ("Effusion measures 2.5 cm. Stable.", ["Effusion measures 2.5 cm.", "Stable."]),
        ("Atelectasis vs. pneumonia. Resolved.", ["Atelectasis vs. pneumonia.", "Resolved."]),
        ("", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_parse_sections_rejects_non_string():
    with pytest.raises(TypeError, match="report must be a string"):
        parse_sections(None)
