"""LLM report structurer: schema-constrained answer, validated against the vocabulary, one retry, then rules.

``LLMStructurer(backend)`` asks the backend for the findings of each section (``prompts``), parses the
answer, validates every field (lesion types, presence, certainty, sentence indices, location terms)
and maps locations with ``locations.LocationMapper``. An invalid answer is sent back once with the
reason; a second invalid answer (or a backend error) gives the rule-based result, with
``StructuredReport.fallback_reason`` saying why.
"""

from __future__ import annotations

import json
import re
from typing import Any

from monai_ils.report.finding import Finding, FindingValidationError, StructuredReport, llm_output_json_schema
from monai_ils.report.llm.backends import ChatBackend, ChatResult
from monai_ils.report.llm.prompts import (
    category_messages,
    category_schema,
    lung_label_messages,
    lung_label_schema,
    retry_message,
    structuring_messages,
)
from monai_ils.report.locations import LocationMapper, LocationTerm, dedupe_labels, parse_location_terms
from monai_ils.report.rules import RuleBasedStructurer
from monai_ils.report.sections import split_sentences
from monai_ils.vocab import LOCATION_CATEGORIES, LUNG_LABELS

__all__ = ["LLMStructurer", "LLMLocationMapper", "parse_llm_answer", "InvalidLLMAnswer"]

_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.IGNORECASE)
_LLM_FIELDS = ("entity", "sentence_index", "presence", "certainty", "location_terms", "lesion_type",
               "predicted_lesion_type", "predicted_sentence_index")


class InvalidLLMAnswer(ValueError):
    """The model's answer cannot be used; the message is the recorded reason."""


def _load_json(text: str | None) -> Any:
    if text is None or not text.strip():
        raise InvalidLLMAnswer("empty answer")
    body = _FENCE_RE.sub("", text.strip())
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        start, end = body.find("{"), body.rfind("}")
        if start >= 0 and end > start:
            try:
                return json.loads(body[start:end + 1])
            except json.JSONDecodeError:
                pass
    preview = " ".join(text.split())[:80]
    raise InvalidLLMAnswer(f"answer is not valid JSON: {preview!r}")


def parse_llm_answer(text: str | None, sentences: list[str], mapper: LocationMapper, strict_locations: bool = True) -> list[Finding]:
    """Parse and validate one answer into Findings; raise InvalidLLMAnswer naming the first problem."""
    data = _load_json(text)
    if isinstance(data, dict):
        if "findings" not in data:
            raise InvalidLLMAnswer(f"answer has no 'findings' key (keys: {sorted(data)[:5]})")
        items = data["findings"]
    else:
        items = data
    if items is None:
        items = []
    if not isinstance(items, list):
        raise InvalidLLMAnswer(f"'findings' must be a list, got {type(items).__name__}")
    section = " ".join(sentences).lower()
    findings = []
    for i, item in enumerate(items):
        where = f"findings[{i}]"
        if not isinstance(item, dict):
            raise InvalidLLMAnswer(f"{where} must be an object, got {type(item).__name__}")
        unknown = sorted(set(item) - set(_LLM_FIELDS))
        if unknown:
            raise InvalidLLMAnswer(f"{where} has unknown field(s) {unknown}")
        missing = [k for k in ("entity", "sentence_index", "presence", "certainty") if k not in item]
        if missing:
            raise InvalidLLMAnswer(f"{where} is missing {missing}")
        terms = item.get("location_terms") or []
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise InvalidLLMAnswer(f"{where}.location_terms must be a list of strings, got {terms!r}")
        for term in terms:
            if " ".join(term.lower().split()) not in section:
                raise InvalidLLMAnswer(f"{where}: location term {term!r} does not occur in the report")
            if strict_locations and mapper.llm is None and parse_location_terms(term) is None:
                raise InvalidLLMAnswer(f"{where}: unknown location term {term!r} (not in the location table)")
        try:
            fields = {k: v for k, v in item.items() if k != "location_terms"}
            finding = Finding.from_dict(fields, where=where).validate(num_sentences=len(sentences), where=where)
            categories, labels = mapper.map_terms(terms, finding.entity, finding.lesion_type)
        except (FindingValidationError, ValueError) as err:
            raise InvalidLLMAnswer(str(err)) from None
        finding.location_terms = [" ".join(t.lower().split()) for t in terms]
        finding.location_categories = categories
        finding.locations = labels
        findings.append(finding.validate(num_sentences=len(sentences), where=where))
    return findings


class LLMLocationMapper:
    """Two LLM prompts for location terms the rule table does not know (paper Fig. 10).

    Step 1 asks for the category; for "lung" and "pleura" step 2 asks for lung labels. Answers are
    validated against the vocabulary (ValueError naming the bad value) and cached per (term, entity).
    """

    def __init__(self, backend: ChatBackend):
        self.backend = backend
        self._cache: dict[tuple[str, str], LocationTerm | None] = {}

    def _ask(self, messages, schema, key: str) -> Any:
        result = self.backend.complete([messages], schema)[0]
        if not result.ok:
            raise ValueError(f"location mapping failed: {result.error}")
        data = _load_json(result.text)
        if not isinstance(data, dict) or key not in data:
            raise ValueError(f"location mapping answer has no {key!r}: {result.text[:80]!r}")
        return data[key]

    def __call__(self, term: str, entity: str) -> LocationTerm | None:
        key = (term.lower().strip(), entity.lower().strip())
        if key in self._cache:
            return self._cache[key]
        category = self._ask(category_messages(term, entity), category_schema(), "category")
        if category is not None and (not isinstance(category, str) or category.lower() not in LOCATION_CATEGORIES):
            raise ValueError(f"location term {term!r}: unknown category {category!r} from the LLM")
        result = None
        if category is not None:
            category = category.lower()
            labels: tuple[str, ...] = ()
            if category in ("lung", "pleura"):
                raw = self._ask(lung_label_messages(term, entity), lung_label_schema(), "labels")
                if not isinstance(raw, list) or any(not isinstance(x, str) or x.lower() not in LUNG_LABELS for x in raw):
                    raise ValueError(f"location term {term!r}: unknown lung label(s) in {raw!r} from the LLM")
                labels = tuple(dedupe_labels([x.lower() for x in raw]))
            result = LocationTerm(" ".join(term.lower().split()), "llm", category, labels=labels)
        self._cache[key] = result
        return result


class LLMStructurer:
    """Structure report sections with an LLM backend; the rule-based structurer is the fallback.

    backend: a ``ChatBackend`` (HTTP, transformers or vLLM). fallback: the structurer used after two
    invalid answers (default ``RuleBasedStructurer()``). location_backend: if given, terms the rule
    table does not know are mapped by ``LLMLocationMapper`` on it; otherwise such a term makes the
    answer invalid. max_retries: re-asks after an invalid answer (the paper's pipeline: one).
    """

    name = "llm"

    def __init__(self, backend: ChatBackend, fallback: RuleBasedStructurer | None = None,
                 location_backend: ChatBackend | None = None, max_retries: int = 1, batch_size: int = 16):
        self.backend = backend
        self.fallback = fallback if fallback is not None else RuleBasedStructurer()
        self.location_llm = LLMLocationMapper(location_backend) if location_backend is not None else None
        self.max_retries = int(max_retries)
        self.batch_size = max(1, int(batch_size))
        self.schema = llm_output_json_schema()

    def __call__(self, section_text: str, section_name: str | None = None) -> StructuredReport:
        return self.structure(section_text, section_name)

    def structure(self, section_text: str, section_name: str | None = None) -> StructuredReport:
        return self.structure_many([(section_text, section_name)])[0]

    def _try_parse(self, result: ChatResult, sentences: list[str]) -> tuple[list[Finding] | None, str | None]:
        if not result.ok:
            return None, f"backend error: {result.error}"
        try:
            return parse_llm_answer(result.text, sentences, LocationMapper(llm=self.location_llm)), None
        except InvalidLLMAnswer as err:
            return None, str(err)

    def structure_many(self, sections: list[tuple[str, str | None]]) -> list[StructuredReport]:
        """Structure several sections, sending them to the backend in batches of ``batch_size``."""
        out: list[StructuredReport] = []
        for i in range(0, len(sections), self.batch_size):
            out.extend(self._structure_batch(sections[i:i + self.batch_size]))
        return out

    def _structure_batch(self, sections: list[tuple[str, str | None]]) -> list[StructuredReport]:
        sentences = [split_sentences(text) for text, _ in sections]
        conversations = [structuring_messages(s) for s in sentences]
        answers: list[list[Finding] | None] = [None] * len(sections)
        reasons: list[list[str]] = [[] for _ in sections]
        pending = [i for i, s in enumerate(sentences) if s]
        for i, s in enumerate(sentences):
            if not s:
                answers[i] = []
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            results = self.backend.complete([conversations[i] for i in pending], self.schema)
            still = []
            for i, result in zip(pending, results):
                findings, reason = self._try_parse(result, sentences[i])
                if findings is not None:
                    answers[i] = findings
                    continue
                reasons[i].append(reason)
                still.append(i)
                if result.ok:  # show the model its answer and what was wrong with it
                    conversations[i] = [*conversations[i], {"role": "assistant", "content": result.text}, retry_message(reason)]
            pending = still
        reports = []
        for i, (text, name) in enumerate(sections):
            if answers[i] is not None:
                reports.append(StructuredReport(name, " ".join(sentences[i]), sentences[i], answers[i], structurer=self.name))
                continue
            report = self.fallback.structure(text, name)
            report.fallback_reason = "LLM answer rejected " + "; then ".join(
                f"(attempt {k + 1}) {r}" for k, r in enumerate(reasons[i])) + "; used the rule-based result"
            reports.append(report)
        return reports
