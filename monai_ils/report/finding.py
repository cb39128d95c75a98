"""The structured form of a report: one ``Finding`` per mentioned disease/finding, in a ``StructuredReport``.

A finding is the paper's six-element tuple (entity, sentence index, presence, certainty, location,
predicted lesion type) plus what later steps need to trust it: the raw location terms, their step-1
categories and the anatomical labels they map to, and the sentence index of the predicted type.
Sentence indices are 1-based, as in the paper ("the second sentence" -> 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monai_ils.vocab import (
    ANATOMY_LABELS,
    CERTAINTY_VALUES,
    LESION_TYPES,
    LOCATION_CATEGORIES,
    PRESENCE_VALUES,
)

__all__ = ["Finding", "StructuredReport", "FindingValidationError", "finding_json_schema", "llm_output_json_schema"]


class FindingValidationError(ValueError):
    """A finding (from JSON or an LLM) breaks the vocabulary; the message names the field and value."""


def _check_enum(name: str, value: Any, allowed: tuple[str, ...], where: str, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise FindingValidationError(f"{where}: unknown {name} {value!r}; expected one of {list(allowed)}" + (" or null" if nullable else ""))
    return value.strip().lower()


def _check_index(name: str, value: Any, where: str, num_sentences: int | None, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            raise FindingValidationError(f"{where}: {name} must be a 1-based integer, got {value!r}")
    if value < 1 or (num_sentences is not None and value > num_sentences):
        limit = f"1..{num_sentences}" if num_sentences is not None else ">= 1"
        raise FindingValidationError(f"{where}: {name} {value} is out of range ({limit})")
    return value


def _check_str_list(name: str, value: Any, where: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise FindingValidationError(f"{where}: {name} must be a list of strings, got {value!r}")
    out = [v.strip() for v in value if v.strip()]
    if allowed is not None:
        out = [_check_enum(name[:-1] if name.endswith("s") else name, v, allowed, where) for v in out]
    return out


@dataclass
class Finding:
    """One disease/finding mentioned in a report section.

    entity: the finding as written, free of location words ("pleural effusion", "opacities").
    sentence_index: 1-based index of the sentence that states it.
    presence: "positive" or "negative" (absent or resolved).
    certainty: "definitive" or "tentative" (hedged, e.g. "may represent", "cannot be excluded").
    location_terms: raw location phrases from the report ("right lower lobe", "bibasilar").
    location_categories: step-1 category of each term (``vocab.LOCATION_CATEGORIES``), aligned with the terms.
    locations: anatomical labels (``vocab.LUNG_LABELS``, plus "heart" for cardiac findings); the
        reported location used by grounding and by the empty-location computation.
    lesion_type: one of ``vocab.LESION_TYPES`` or None for other findings (pneumothorax, nodule, ...).
    predicted_lesion_type: the lesion a non-specific finding (opacity, consolidation) is said to
        reflect ("opacity ... likely atelectasis" -> "atelectasis"), else None.
    predicted_sentence_index: sentence that states the predicted type (may follow the finding's one).
    """

    entity: str
    sentence_index: int
    presence: str = "positive"
    certainty: str = "definitive"
    location_terms: list[str] = field(default_factory=list)
    location_categories: list[str | None] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    lesion_type: str | None = None
    predicted_lesion_type: str | None = None
    predicted_sentence_index: int | None = None

    def __post_init__(self):
        self.validate()

    @property
    def is_positive(self) -> bool:
        return self.presence == "positive"

    @property
    def target_lesion_type(self) -> str | None:
        """The lesion the dataset should name: the predicted type when there is one, else the lesion type."""
        return self.predicted_lesion_type or self.lesion_type

    def validate(self, num_sentences: int | None = None, where: str = "Finding") -> Finding:
        """Check every field against the vocabulary; raise FindingValidationError naming the bad one."""
        if not isinstance(self.entity, str) or not self.entity.strip():
            raise FindingValidationError(f"{where}: entity must be a non-empty string, got {self.entity!r}")
        self.sentence_index = _check_index("sentence_index", self.sentence_index, where, num_sentences)
        self.presence = _check_enum("presence", self.presence, PRESENCE_VALUES, where)
        self.certainty = _check_enum("certainty", self.certainty, CERTAINTY_VALUES, where)
        self.lesion_type = _check_enum("lesion_type", self.lesion_type, LESION_TYPES, where, nullable=True)
        self.predicted_lesion_type = _check_enum(
            "predicted_lesion_type", self.predicted_lesion_type, LESION_TYPES, where, nullable=True
        )
        self.predicted_sentence_index = _check_index(
            "predicted_sentence_index", self.predicted_sentence_index, where, num_sentences, nullable=True
        )
        if self.predicted_lesion_type is not None and self.predicted_sentence_index is None:
            self.predicted_sentence_index = self.sentence_index
        if self.predicted_lesion_type is None:
            self.predicted_sentence_index = None
        self.location_terms = _check_str_list("location_terms", self.location_terms, where)
        cats = list(self.location_categories or [])
        if len(cats) != len(self.location_terms):
            raise FindingValidationError(
                f"{where}: location_categories has {len(cats)} entries for {len(self.location_terms)} location_terms"
            )
        self.location_categories = [_check_enum("location category", c, LOCATION_CATEGORIES, where, nullable=True) for c in cats]
        self.locations = _check_str_list("locations", self.locations, where, ANATOMY_LABELS)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "Finding") -> Finding:
        if not isinstance(data, Mapping):
            raise FindingValidationError(f"{where}: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise FindingValidationError(f"{where}: unknown field(s) {unknown}; expected {sorted(names)}")
        if "entity" not in data or "sentence_index" not in data:
            raise FindingValidationError(f"{where}: 'entity' and 'sentence_index' are required")
        try:
            return cls(**dict(data))
        except FindingValidationError as err:
            raise FindingValidationError(str(err).replace("Finding:", f"{where}:", 1)) from None


@dataclass
class StructuredReport:
    """The result of structuring one report.

    section_name: "findings", "impression" or "last_paragraph" (Appendix A.1 fallback), or None when
        the study is skipped.
    section_text: the chosen section, whitespace-normalised.
    sentences: the section split into sentences; ``Finding.sentence_index`` counts from 1 into it.
    findings: every disease/finding mentioned (the seven lesion types and the others).
    skipped_reason: why no section could be used (the study is then excluded), else None.
    structurer: "rules" or "llm" (the one whose findings these are).
    fallback_reason: why the LLM answer was rejected and the rule-based result used, else None.
    """

    section_name: str | None
    section_text: str
    sentences: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped_reason: str | None = None
    structurer: str = "rules"
    fallback_reason: str | None = None

    @property
    def skipped(self) -> bool:
        return self.skipped_reason is not None

    def positive_locations(self) -> set[str]:
        """Union of the reported locations of every positive finding (seven lesion types or not).

        The empty-location computation (Appendix A.6) must exclude these regions for every lesion.
        """
        return {loc for f in self.findings if f.is_positive for loc in f.locations}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["findings"] = [f.to_dict() for f in self.findings]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StructuredReport:
        data = dict(data)
        data["findings"] = [Finding.from_dict(f, where=f"findings[{i}]") for i, f in enumerate(data.get("findings") or [])]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def finding_json_schema() -> dict[str, Any]:
    """JSON schema of a full ``Finding`` record (as written to findings JSONL)."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Finding",
        "type": "object",
        "additionalProperties": False,
        "required": ["entity", "sentence_index", "presence", "certainty", "location_terms", "location_categories",
                     "locations", "lesion_type", "predicted_lesion_type", "predicted_sentence_index"],
        "properties": {
            "entity": {"type": "string", "minLength": 1},
            "sentence_index": {"type": "integer", "minimum": 1},
            "presence": {"type": "string", "enum": list(PRESENCE_VALUES)},
            "certainty": {"type": "string", "enum": list(CERTAINTY_VALUES)},
            "location_terms": {"type": "array", "items": {"type": "string"}},
            "location_categories": {"type": "array", "items": {"enum": [*LOCATION_CATEGORIES, None]}},
            "locations": {"type": "array", "items": {"type": "string", "enum": list(ANATOMY_LABELS)}},
            "lesion_type": {"enum": [*LESION_TYPES, None]},
            "predicted_lesion_type": {"enum": [*LESION_TYPES, None]},
            "predicted_sentence_index": {"type": ["integer", "null"], "minimum": 1},
        },
    }


def llm_output_json_schema() -> dict[str, Any]:
    """The schema the LLM structurer constrains its answer to: the tuple fields the model decides.

    Location mapping (categories, anatomical labels) is done afterwards by ``locations.LocationMapper``,
    so the model only copies the location phrases.
    """
    nullable_lesion = {"anyOf": [{"type": "string", "enum": list(LESION_TYPES)}, {"type": "null"}]}
    return {
        "title": "StructuredFindings",
        "type": "object",
        "additionalProperties": False,
        "required": ["findings"],
        "properties": {
            "findings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["entity", "sentence_index", "presence", "certainty", "location_terms",
                                 "lesion_type", "predicted_lesion_type", "predicted_sentence_index"],
                    "properties": {
                        "entity": {"type": "string"},
                        "sentence_index": {"type": "integer", "minimum": 1},
                        "presence": {"type": "string", "enum": list(PRESENCE_VALUES)},
                        "certainty": {"type": "string", "enum": list(CERTAINTY_VALUES)},
                        "location_terms": {"type": "array", "items": {"type": "string"}},
                        "lesion_type": nullable_lesion,
                        "predicted_lesion_type": nullable_lesion,
                        "predicted_sentence_index": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
                    },
                },
            }
        },
    }
