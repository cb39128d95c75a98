"""Render and parse the instruction and answer texts of Table 2.

Generation renders them, training builds conversations from them, and evaluation parses model
answers back into (question type, outcome, variables) so that text accuracy can require the
template and every variable to match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from monai_ils.vocab import ANSWER_TEMPLATES, INSTRUCTION_LOCATIONS, INSTRUCTION_TEMPLATES, join_locations

_LOCATION_BY_PHRASE = {phrase: label for label, phrase in INSTRUCTION_LOCATIONS.items()}


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", template)
    pattern = "".join(f"(?P<{p[1:-1]}>.+?)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(rf"^\s*{pattern}\s*$", re.IGNORECASE)


# Lesion inference is tried first: its instruction also matches the basic pattern.
_INSTRUCTION_ORDER = ("lesion_inference", "basic", "global")
_INSTRUCTION_PATTERNS = {name: _template_regex(INSTRUCTION_TEMPLATES[name]) for name in _INSTRUCTION_ORDER}
_ANSWER_PATTERNS = {key: _template_regex(template) for key, template in ANSWER_TEMPLATES.items()}


@dataclass(frozen=True)
class ParsedText:
    """A text matched to one template: its question type, outcome and variables.

    outcome is "positive" or "negative" (for lesion-inference positives, "definitive" or "tentative"),
    and None for instructions. Locations are returned as anatomical labels.
    """

    question_type: str
    outcome: str | None
    variables: dict = field(default_factory=dict)


def split_locations(phrase: str) -> list[str]:
    """'right lung base and left lung base' -> ['right lung base', 'left lung base'] (anatomical labels).

    Phrases outside Table 8 are kept verbatim (lower-cased) so that a comparison fails instead of crashing.
    """
    items = re.split(r",\s*|\s+and\s+", phrase.strip().lower())
    return [_LOCATION_BY_PHRASE.get(item, item) for item in items if item]


def _variables(match: re.Match) -> dict:
    variables = {k: v.strip().lower() for k, v in match.groupdict().items()}
    if "location" in variables:
        variables["location"] = split_locations(variables["location"])
    return variables


def parse_instruction(text: str) -> ParsedText | None:
    """Match an instruction to its Table 2 template; None when it matches none."""
    for name in _INSTRUCTION_ORDER:
        match = _INSTRUCTION_PATTERNS[name].match(text)
        if match:
            return ParsedText(name, None, _variables(match))
    return None


def parse_answer(text: str) -> ParsedText | None:
    """Match an answer to its Table 2 template; None when it matches none.

    A bare "[SEG]" is the positive basic answer; all answers start with one [SEG] token.
    """
    for (question_type, outcome), pattern in _ANSWER_PATTERNS.items():
        match = pattern.match(text)
        if match:
            return ParsedText(question_type, outcome, _variables(match))
    return None


def render_instruction(question_type: str, target: str | None = None, locations=()) -> str:
    """The instruction of Table 2 for a question type, target lesion and anatomical locations."""
    if question_type not in INSTRUCTION_TEMPLATES:
        raise ValueError(f"Unknown question type {question_type!r}; expected one of {list(INSTRUCTION_TEMPLATES)}.")
    variables = {"target": target}
    if "{location}" in INSTRUCTION_TEMPLATES[question_type]:
        variables["location"] = join_locations(list(locations))
    return INSTRUCTION_TEMPLATES[question_type].format(**variables)


def render_answer(question_type: str, outcome: str, target: str | None = None, locations=(), lesion: str | None = None) -> str:
    """The answer of Table 2; ``outcome`` is positive/negative, or definitive/tentative for lesion-inference positives."""
    key = (question_type, outcome)
    if key not in ANSWER_TEMPLATES:
        raise ValueError(f"No answer template for question type {question_type!r} with outcome {outcome!r}.")
    template = ANSWER_TEMPLATES[key]
    variables = {"target": target, "lesion": lesion}
    if "{location}" in template:
        variables["location"] = join_locations(list(locations))
    return template.format(**variables)
