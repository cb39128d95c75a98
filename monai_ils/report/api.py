"""The entry point of report structuring for the rest of the pipeline: ``structure_report(text)``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from monai_ils.report.finding import StructuredReport
from monai_ils.report.recognition import unrecognised_reason
from monai_ils.report.sections import select_section

__all__ = ["structure_report", "structure_reports", "default_structurer", "build_structurer"]

_DEFAULT = None


def default_structurer():
    """The shared rule-based structurer (built once: the spaCy/ConText pipeline takes ~0.1 s to build)."""
    global _DEFAULT
    if _DEFAULT is None:
        from monai_ils.report.rules import RuleBasedStructurer

        _DEFAULT = RuleBasedStructurer()
    return _DEFAULT


def _skipped(reason: str) -> StructuredReport:
    return StructuredReport(section_name=None, section_text="", sentences=[], findings=[], skipped_reason=reason)


def _checked(report: StructuredReport) -> StructuredReport:
    """Skip a report from which nothing was recognised: its silence is no evidence for negatives."""
    if report.skipped_reason is None:
        report.skipped_reason = unrecognised_reason(report.findings, report.sentences)
    return report


def structure_report(report_text: str, structurer=None, sections: str = "fallback") -> StructuredReport:
    """Raw report -> ``StructuredReport`` (section chosen by the Appendix A.1 fallback, then findings).

    ``structurer`` is any object with ``structure(section_text, section_name)`` (``RuleBasedStructurer``,
    ``LLMStructurer``); default: the rule-based one. A report without a usable section comes back with
    ``skipped_reason`` set and no findings; so does one in which nothing was recognised (no finding, no normal
    statement such as "the lungs are clear"), e.g. a report in another language. ``sections="findings+impression"``
    structures both sections together when a report has both (``sections.select_section``).
    """
    name, text, reason = select_section(report_text, sections)
    if reason is not None:
        return _skipped(reason)
    return _checked((structurer or default_structurer()).structure(text, name))


def structure_reports(report_texts: Iterable[str], structurer=None, sections: str = "fallback") -> list[StructuredReport]:
    """Many reports at once; an LLM structurer receives them as one batch (``structure_many``)."""
    structurer = structurer or default_structurer()
    selected = [select_section(t, sections) for t in report_texts]
    out: list[StructuredReport | None] = [None if reason is None else _skipped(reason) for _, _, reason in selected]
    todo = [i for i, (_, _, reason) in enumerate(selected) if reason is None]
    if hasattr(structurer, "structure_many"):
        done = structurer.structure_many([(selected[i][1], selected[i][0]) for i in todo])
    else:
        done = [structurer.structure(selected[i][1], selected[i][0]) for i in todo]
    for i, report in zip(todo, done):
        out[i] = _checked(report)
    return out  # type: ignore[return-value]


def build_structurer(backend: str = "rules", **options: Any):
    """Build a structurer by name, for configs and the command line.

    backend: "rules"; "precomputed" (options: path, fallback: a findings JSONL written earlier); "http" (options: base_url, model, api_key, timeout, max_retries, concurrency,
    schema_mode, max_tokens); "transformers" (model_path, device, dtype, max_new_tokens, batch_size);
    "vllm" (model_path, ...). LLM structurers take ``batch_size`` and ``map_locations_with_llm``.
    """
    if backend == "precomputed":
        from monai_ils.report.precomputed import PrecomputedStructurer

        return PrecomputedStructurer(**options)
    if backend == "rules":
        if options:
            raise ValueError(f"build_structurer: the rules backend takes no options, got {sorted(options)}")
        return default_structurer()
    from monai_ils.report.llm import HTTPChatBackend, LLMStructurer, TransformersChatBackend, VLLMChatBackend

    map_locations = options.pop("map_locations_with_llm", False)
    batch_size = options.pop("structurer_batch_size", 16)
    if backend == "http":
        chat = HTTPChatBackend(**options)
    elif backend == "transformers":
        chat = TransformersChatBackend(**options)
    elif backend == "vllm":
        chat = VLLMChatBackend(**options)
    else:
        raise ValueError(f"build_structurer: unknown backend {backend!r}; expected 'rules', 'http', 'transformers' or 'vllm'")
    return LLMStructurer(chat, fallback=default_structurer(), location_backend=chat if map_locations else None, batch_size=batch_size)
