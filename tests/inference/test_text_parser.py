"""Every Table 2 template, rendered and parsed back, and the answer comparison used for text accuracy."""

import pytest

from monai_ils.data.templates import parse_answer, parse_instruction, render_answer, render_instruction
from monai_ils.evaluation.metrics import answers_match
from monai_ils.vocab import ANSWER_TEMPLATES, INSTRUCTION_TEMPLATES

ONE = ["left lung"]
MANY = ["right apical zone lung", "right mid zone lung", "left lung base"]


@pytest.mark.parametrize("locations", [ONE, MANY])
@pytest.mark.parametrize("question_type", list(INSTRUCTION_TEMPLATES))
def test_every_instruction_template_round_trips(question_type, locations):
    target = "opacity" if question_type == "lesion_inference" else "consolidation"
    text = render_instruction(question_type, target, locations)
    parsed = parse_instruction(text)
    assert parsed.question_type == question_type
    if "{location}" in INSTRUCTION_TEMPLATES[question_type]:
        assert parsed.variables["location"] == locations
    if "{target}" in INSTRUCTION_TEMPLATES[question_type]:
        assert parsed.variables["target"] == target


def test_multi_location_phrase_is_written_like_the_paper():
    text = render_instruction("basic", "edema", MANY)
    assert text == "Segment the edema in the right apical zone, right mid zone lung and left lung base."


@pytest.mark.parametrize("locations", [ONE, MANY])
@pytest.mark.parametrize("key", list(ANSWER_TEMPLATES))
def test_every_answer_template_round_trips_and_matches_itself(key, locations):
    question_type, outcome = key
    text = render_answer(question_type, outcome, target="atelectasis", locations=locations, lesion="pneumonia")
    parsed = parse_answer(text)
    assert parsed is not None
    template = ANSWER_TEMPLATES[key]
    if "{location}" in template:
        assert parsed.variables["location"] == locations
    if "{lesion}" in template:
        assert parsed.variables["lesion"] == "pneumonia" and parsed.outcome == outcome
    assert answers_match(text, text)
    assert answers_match("  " + text.upper().replace(" ", "  "), text)  # case and spacing do not matter


@pytest.mark.parametrize(
    "predicted, reference, expected",
    [
        ("[SEG] There is no edema in the left lung.", "[SEG] There is no edema in the right lung.", False),  # location
        ("[SEG] There is no edema in the left lung.", "[SEG] There is no effusion in the left lung.", False),  # target
        ("[SEG] It is located in the left lung and right lung.", "[SEG] It is located in the right lung and left lung.", True),
        ("[SEG] It is located in the right lung.", "[SEG] It is located in the right lung and left lung.", False),  # missing location
        ("[SEG] It possibly reflects edema.", "[SEG] It is highly suggestive of edema.", False),  # certainty is the template
        ("[SEG] It is highly suggestive of atelectasis.", "[SEG] It is highly suggestive of edema.", False),  # lesion
        ("[SEG] There is no pneumonia.", "[SEG]", False),  # negative answer to a positive
        ("[SEG]", "[SEG] There is no pneumonia in the left lung.", False),
        ("[SEG] the pneumonia is somewhere", "[SEG]", False),  # no template
        (None, "[SEG]", False),  # segmentation-only prediction has no text
        ("Free text answer.", "free  text answer.", True),  # reference outside the templates: plain comparison
    ],
)
def test_answers_match(predicted, reference, expected):
    assert answers_match(predicted, reference) is expected
