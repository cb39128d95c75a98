"""Report structuring: raw radiology report -> section -> findings with mapped locations (paper Sec. 3.1, A.1-A.2).

Main entry point::

    from monai_ils.report import structure_report
    report = structure_report(raw_text)          # StructuredReport
    report.section_name, report.findings          # "findings", [Finding(...), ...]

See docs/report.md.
"""

from monai_ils.report.api import build_structurer, default_structurer, structure_report, structure_reports
from monai_ils.report.finding import Finding, FindingValidationError, StructuredReport, finding_json_schema, llm_output_json_schema
from monai_ils.report.locations import LocationMapper, LocationTerm, find_location_terms, labels_for_terms, parse_location_term
from monai_ils.report.rules import RuleBasedStructurer
from monai_ils.report.sections import parse_sections, select_section, split_sentences

__all__ = [
    "structure_report",
    "structure_reports",
    "build_structurer",
    "default_structurer",
    "Finding",
    "FindingValidationError",
    "StructuredReport",
    "finding_json_schema",
    "llm_output_json_schema",
    "LocationMapper",
    "LocationTerm",
    "find_location_terms",
    "labels_for_terms",
    "parse_location_term",
    "RuleBasedStructurer",
    "parse_sections",
    "select_section",
    "split_sentences",
]
