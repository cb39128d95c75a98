"""Per-sample scores -> the paper's result tables (Tables 4-6 and 13), as CSV and Markdown.

- ``segmentation_by_lesion``: gIoU, cIoU, N-Acc per lesion type and in total (Tables 4 and 5).
- ``segmentation_by_question_type``: the same per question type (basic, global, lesion inference).
- ``text_by_outcome``: text accuracy per question type for positives, negatives and all (Table 6).
- ``text_by_lesion``: text accuracy per lesion type and question type (Table 13).

Values are percentages with one decimal; a cell over no samples is "-".
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monai_ils.data.ils_format import ILSSample
from monai_ils.data.templates import parse_answer
from monai_ils.evaluation.metrics import MaskStats, segmentation_scores
from monai_ils.vocab import LESION_TYPES, QUESTION_TYPES

QUESTION_LABELS = {"basic": "Basic", "global": "Global", "lesion_inference": "Lesion Inf."}


@dataclass
class SampleScore:
    """What one evaluated sample contributes to the tables."""

    id: str
    lesion: str
    question_type: str
    positive: bool
    stats: MaskStats
    text_correct: bool | None = None
    extra: dict = field(default_factory=dict)

    @property
    def iou(self) -> float:
        return self.stats.iou()


def lesion_type_of(sample: ILSSample) -> str:
    """The lesion a sample is counted under (the paper's Table 9-11 and 13 convention).

    Lesion-inference positives ask about an "opacity" but count under the lesion the answer names
    (pneumonia, atelectasis, edema); everything else counts under its target.
    """
    if sample.question_type == "lesion_inference" and sample.positive:
        lesion = sample.lesion
        if not lesion:
            parsed = parse_answer(sample.answer)
            lesion = parsed.variables.get("lesion") if parsed else None
        if lesion and lesion.lower() in LESION_TYPES:
            return lesion.lower()
    return (sample.target or "unknown").lower()


@dataclass
class Table:
    """A titled table: first column ``row_label``, then ``columns``; values are fractions, NaN or counts."""

    name: str
    title: str
    row_label: str
    columns: list[str]
    rows: list[tuple[str, list]]

    def formatted(self) -> list[list[str]]:
        return [[label, *(_fmt(v) for v in values)] for label, values in self.rows]

    def to_markdown(self) -> str:
        header = [self.row_label, *self.columns]
        lines = [f"### {self.title}", "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(self.columns)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.formatted()]
        return "\n".join(lines) + "\n"

    def write_csv(self, path) -> Path:
        path = Path(path)
        with path.open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow([self.row_label, *self.columns])
            writer.writerows(self.formatted())
        return path


def _fmt(value) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100.0 * float(value):.1f}"


def _ordered(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def _seg_row(scores: Sequence[SampleScore], empty_threshold: int) -> list:
    pos = [s.stats for s in scores if s.positive]
    neg = [s.stats for s in scores if not s.positive]
    r = segmentation_scores(pos, neg, empty_threshold)
    return [r["giou"], r["ciou"], r["nacc"], r["n_positive"], r["n_negative"]]


def segmentation_table(scores: Sequence[SampleScore], by: str, empty_threshold: int = 0) -> Table:
    """gIoU / cIoU / N-Acc per ``by`` ("lesion" or "question_type") with a Total row."""
    if by == "lesion":
        keys, label, title = _ordered([s.lesion for s in scores], LESION_TYPES), "Lesion", "Segmentation (%) per lesion type"
    elif by == "question_type":
        keys, label, title = _ordered([s.question_type for s in scores], QUESTION_TYPES), "Question type", "Segmentation (%) per question type"
    else:
        raise ValueError(f"segmentation_table: by must be 'lesion' or 'question_type', got {by!r}.")
    rows = []
    for key in keys:
        chosen = [s for s in scores if getattr(s, by) == key]
        name = QUESTION_LABELS.get(key, key) if by == "question_type" else key.capitalize()
        rows.append((name, _seg_row(chosen, empty_threshold)))
    rows.append(("Total", _seg_row(scores, empty_threshold)))
    return Table(f"segmentation_by_{by}", title, label, ["gIoU", "cIoU", "N-Acc.", "# pos", "# neg"], rows)


def _accuracy(scores: Sequence[SampleScore]) -> float:
    values = [s.text_correct for s in scores if s.text_correct is not None]
    return float(np.mean(values)) if values else math.nan


def _text_row(scores: Sequence[SampleScore]) -> list:
    return [_accuracy(scores)] + [_accuracy([s for s in scores if s.question_type == q]) for q in QUESTION_TYPES]


def text_by_outcome_table(scores: Sequence[SampleScore]) -> Table:
    """Table 6: rows Positive / Negative / Total, columns Overall and each question type."""
    rows = [
        ("Positive", _text_row([s for s in scores if s.positive])),
        ("Negative", _text_row([s for s in scores if not s.positive])),
        ("Total", _text_row(scores)),
    ]
    return Table("text_by_outcome", "Text accuracy (%) per question type", "Type", ["Overall", *(QUESTION_LABELS[q] for q in QUESTION_TYPES)], rows)


def text_by_lesion_table(scores: Sequence[SampleScore]) -> Table:
    """Table 13: rows lesion types and Total, columns Overall and each question type."""
    rows = [(lesion.capitalize(), _text_row([s for s in scores if s.lesion == lesion])) for lesion in _ordered([s.lesion for s in scores], LESION_TYPES)]
    rows.append(("Total", _text_row(scores)))
    return Table("text_by_lesion", "Text accuracy (%) per lesion and question type", "Lesion", ["Overall", *(QUESTION_LABELS[q] for q in QUESTION_TYPES)], rows)


def build_tables(scores: Sequence[SampleScore], empty_threshold: int = 0, protocol: str | None = None) -> list[Table]:
    """Every table that the scores support (text tables only when answers were generated);
    ``protocol`` ("teacher-forced", "end-to-end") is named in every title."""
    tables = [segmentation_table(scores, "lesion", empty_threshold), segmentation_table(scores, "question_type", empty_threshold)]
    if any(s.text_correct is not None for s in scores):
        tables += [text_by_outcome_table(scores), text_by_lesion_table(scores)]
    if protocol:
        for table in tables:
            table.title = f"{table.title}, {protocol} protocol"
    return tables


def write_tables(tables: Sequence[Table], output_dir, markdown_name: str = "results.md") -> Path:
    """One CSV per table and one Markdown file with all of them; returns the Markdown path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for table in tables:
        table.write_csv(output_dir / f"{table.name}.csv")
    path = output_dir / markdown_name
    path.write_text("\n".join(t.to_markdown() for t in tables))
    return path
