"""Pick the one section of a raw MIMIC-CXR report that the pipeline structures (paper Appendix A.1).

The findings section is used; if it is missing, the impression; if both are missing, the last
paragraph of the report. A study with none of the three is skipped with a reason. Raw reports
come with headers in varied case and spacing (``FINDINGS:``, ``Impression :``, ``FINAL REPORT``),
``___`` de-identification blanks, hard-wrapped lines and addenda; addenda are kept apart so that
a late note never leaks into the findings or the impression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Section", "ReportSections", "parse_sections", "select_section", "normalize_text", "split_sentences", "SECTION_MODES"]

SECTION_ALIASES: dict[str, str] = {
    "findings": "findings",
    "finding": "findings",
    "findings and impression": "findings",
    "findings/impression": "findings",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "opinion": "impression",
    "addendum": "addendum",
    "final addendum": "addendum",
    "examination": "examination",
    "exam": "examination",
    "indication": "indication",
    "indications": "indication",
    "history": "history",
    "clinical history": "history",
    "clinical information": "history",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "technique": "technique",
    "comparison": "comparison",
    "comparisons": "comparison",
    "wet read": "wet_read",
    "pfi": "wet_read",
    "notification": "notification",
    "recommendation": "recommendation",
    "recommendations": "recommendation",
    "final report": "preamble",
}
"""Header (lower case, single spaces) -> normalised section name."""

_KNOWN_HEADER = "|".join(sorted((re.escape(k).replace(r"\ ", r"\s+") for k in SECTION_ALIASES), key=len, reverse=True))
# A header starts a line. Known names match in any case; other ALL-CAPS words followed by ':' are
# treated as unknown sections so their text never joins the findings.
_HEADER_RE = re.compile(
    rf"^[ \t]*(?:(?P<known>(?i:{_KNOWN_HEADER}))[ \t]*(?::|$)|(?P<caps>[A-Z][A-Z /()&,-]{{1,38}}[A-Z)])[ \t]*:)",
    re.MULTILINE,
)
_BANNER_RE = re.compile(r"^[ \t]*(final\s+report|final\s+addendum|addendum)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_BLANKS_RE = re.compile(r"_{2,}|\bX{2,}\b")  # MIMIC writes ___, other corpora runs of X


def _header_alternatives(case) -> str:
    """Known headers in one case, for finding a header inside a line ("... INDICATION: cough FINDINGS: ...").

    OHIF's text field turns newlines into spaces; only upper- or title-case headers followed by a colon are
    split off there, so that prose ("no findings: ...") stays whole.
    """
    names = sorted({case(k) for k in SECTION_ALIASES}, key=len, reverse=True)
    return "|".join(re.escape(n).replace(r"\ ", r"[ \t]+") for n in names)


_INLINE_HEADER_RE = re.compile(rf"(?<=\S)[ \t]+(?=(?:{_header_alternatives(str.upper)}|{_header_alternatives(str.title)})[ \t]*:)")
_PARAGRAPH_RE = re.compile(r"\n[ \t]*\n")


@dataclass
class Section:
    name: str
    header: str
    text: str
    start: int


@dataclass
class ReportSections:
    """Every section found in a report, in order; ``preamble`` holds text before the first header."""

    sections: list[Section] = field(default_factory=list)
    has_headers: bool = False

    def first(self, name: str) -> Section | None:
        """First section of that name with non-empty text (MIMIC sometimes repeats an empty header)."""
        for section in self.sections:
            if section.name == name and normalize_text(section.text):
                return section
        return None

    def last_paragraph(self) -> str | None:
        """Final paragraph of the report body (addenda excluded), or None when there is none."""
        body = [s for s in self.sections if s.name != "addendum" and s.text.strip()]
        if not body:
            return None
        last = body[-1]
        paragraphs = [p for p in _PARAGRAPH_RE.split(last.text) if p.strip()]
        if not paragraphs:
            return None
        if self.has_headers and last.name != "preamble" and len(paragraphs) < 2:
            # the only paragraph belongs to its header (e.g. "COMPARISON: ___"): not a free paragraph
            return None
        return paragraphs[-1]


def normalize_text(text: str) -> str:
    """Join wrapped lines, collapse spaces and unify de-identification blanks to ``___``."""
    text = _BLANKS_RE.sub("___", text or "")
    return " ".join(text.split())


def parse_sections(report: str) -> ReportSections:
    """Split a raw report into named sections (see ``SECTION_ALIASES``)."""
    if not isinstance(report, str):
        raise TypeError(f"parse_sections: report must be a string, got {type(report).__name__}")
    text = _INLINE_HEADER_RE.sub("\n", report.replace("\r\n", "\n").replace("\r", "\n"))
    marks: list[tuple[int, int, str, str]] = []  # (start, end_of_header, name, header)
    for m in _HEADER_RE.finditer(text):
        header = m.group("known") or m.group("caps")
        key = " ".join(header.lower().split())
        marks.append((m.start(), m.end(), SECTION_ALIASES.get(key, key.replace(" ", "_")), header.strip()))
    for m in _BANNER_RE.finditer(text):
        if not any(s <= m.start() < e for s, e, _, _ in marks):
            key = " ".join(m.group(1).lower().split())
            marks.append((m.start(), m.end(), SECTION_ALIASES[key], m.group(1)))
    marks.sort()
    out = ReportSections(has_headers=bool(marks))
    pre_end = marks[0][0] if marks else len(text)
    if text[:pre_end].strip():
        out.sections.append(Section("preamble", "", text[:pre_end], 0))
    for i, (start, end, name, header) in enumerate(marks):
        stop = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        out.sections.append(Section(name, header, text[end:stop].strip("\n"), start))
    return out


SECTION_MODES = ("fallback", "findings+impression")


def select_section(report: str, mode: str = "fallback") -> tuple[str | None, str, str | None]:
    """Apply the Appendix A.1 fallback: findings, else impression, else last paragraph.

    ``mode="findings+impression"`` structures both sections together when the report has both (section name
    "findings+impression"; the impression often states what the findings only describe), else falls back
    as above. Returns ``(section_name, section_text, skipped_reason)``; ``section_name`` is None and the
    reason says what was missing when the study must be skipped.
    """
    if mode not in SECTION_MODES:
        raise ValueError(f"select_section: mode must be one of {SECTION_MODES}, got {mode!r}")
    if not isinstance(report, str) or not report.strip():
        return None, "", "empty report"
    sections = parse_sections(report)
    if mode == "findings+impression":
        findings, impression = sections.first("findings"), sections.first("impression")
        if findings is not None and impression is not None:
            return mode, normalize_text(findings.text + "\n" + impression.text), None
    for name in ("findings", "impression"):
        section = sections.first(name)
        if section is not None:
            return name, normalize_text(section.text), None
    paragraph = sections.last_paragraph()
    if paragraph is not None and normalize_text(paragraph):
        return "last_paragraph", normalize_text(paragraph), None
    return None, "", "no findings, impression or last paragraph section"


# --------------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------------
_ABBREVIATIONS = ("dr", "e.g", "i.e", "vs", "approx", "mr", "mrs", "ms", "fig", "cf")
_TIME_ABBREVIATIONS = ("a.m", "p.m")  # "paged at 3 p.m. on ___": no new sentence before a lower-case word
_LIST_MARK_RE = re.compile(r"(?:(?<=^)|(?<=[\s.:;]))\(?\d{1,2}[.)]\s+(?=[A-Za-z_])")
# a sentence may start lower case ("No effusion. small right pneumothorax."): abbreviations are kept whole below
_BOUNDARY_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Za-z0-9_])")


def split_sentences(text: str) -> list[str]:
    """Split a normalised section into sentences; list numbering ("1.", "2)") starts a new sentence."""
    text = normalize_text(text)
    if not text:
        return []
    text = _LIST_MARK_RE.sub("\n", text)
    sentences: list[str] = []
    for chunk in text.split("\n"):
        buffer = ""
        pieces = _BOUNDARY_RE.split(chunk)
        for k, piece in enumerate(pieces):
            buffer = f"{buffer} {piece}" if buffer else piece
            last_word = buffer.rstrip(".!?").rsplit(" ", 1)[-1].lower()
            if buffer.endswith(".") and k + 1 < len(pieces) and (
                    last_word in _ABBREVIATIONS or (last_word in _TIME_ABBREVIATIONS and pieces[k + 1][:1].islower())):
                continue
            if buffer.strip():
                sentences.append(buffer.strip())
            buffer = ""
        if buffer.strip():
            sentences.append(buffer.strip())
    return [s for s in sentences if any(c.isalnum() for c in s)]
