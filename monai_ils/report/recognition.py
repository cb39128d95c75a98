"""Was anything in a report understood? Negatives are claims, so they are only made from text that supports them.

A report from which the structurer read no finding (positive, negated or uncertain) and no normal statement
("the lungs are clear", "no acute cardiopulmonary process", "heart size is normal") gives no evidence for
any negative pair: it is most likely in another language or another style, and structuring it would turn
silence into "There is no pneumonia." :func:`unrecognised_reason` names that case so the study is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["NORMAL_STATEMENT_PATTERNS", "states_normal", "unrecognised_reason"]

_ORGAN = r"(?:lungs?|lung\s+fields?|lung\s+volumes|chest|heart(?:\s+size)?|cardiac\s+(?:size|silhouette)|" \
         r"cardiomediastinal(?:\s+(?:silhouette|contours?))?|mediastin(?:um|al\s+(?:silhouette|contours?))|" \
         r"hil(?:a|ar\s+contours?)|pleural\s+spaces?|costophrenic\s+angles?)"
_VERB = r"(?:is|are|appears?|remains?|looks?|seems?)?\s*(?:otherwise\s+)?"
_NORMAL = r"(?:clear|normal(?:\s+in\s+size)?|unremarkable|stable|within\s+normal\s+limits|well[-\s]expanded|grossly\s+normal)"

NORMAL_STATEMENT_PATTERNS: tuple[str, ...] = (
    rf"\b{_ORGAN}\s+{_VERB}{_NORMAL}\b",  # "the lungs are clear", "heart size is normal"
    rf"\b(?:clear|normal|unremarkable)\s+{_ORGAN}\b",  # "clear lungs", "normal heart size"
    r"\bno\s+(?:evidence\s+of\s+)?(?:acute|active|significant)\s+(?:cardio)?(?:pulmonary|thoracic|intrathoracic|cardiopulmonary|chest)?"
    r"\s*(?:process|abnormality|abnormalities|disease|findings?|change)\b",  # "no acute cardiopulmonary process"
    r"\b(?:normal|unremarkable|negative)\s+(?:chest\s+)?(?:radiograph|x-?ray|study|examination|exam)\b",
    r"\bno\s+(?:acute\s+)?(?:focal\s+)?(?:abnormality|abnormalities)\b",
)
_NORMAL_RE = re.compile("|".join(f"(?:{p})" for p in NORMAL_STATEMENT_PATTERNS), re.IGNORECASE)


def states_normal(sentences: Iterable[str]) -> bool:
    """True when one of ``sentences`` states a normal finding in English."""
    return any(_NORMAL_RE.search(s) for s in sentences)


def unrecognised_reason(findings: list, sentences: list[str]) -> str | None:
    """Why a structured section supports no pair at all (no finding and no normal statement), else None."""
    if findings or states_normal(sentences):
        return None
    return (f"nothing recognised in the report section ({len(sentences)} sentence(s)): no finding and no normal "
            "statement, so no negative can be claimed (not an English radiology report?)")
