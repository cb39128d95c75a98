"""Score a structurer against a user's own labelled reports: ``python -m monai_ils.report evaluate``.

Gold file (JSONL, one report a line; see docs/report.md)::

    {"id": "r1", "report": "<raw report text>",
     "labels": {"effusion": {"presence": "positive", "certainty": "tentative", "locations": ["left lung base"]},
                "pneumonia": {"presence": "negative"}}}

``labels`` holds the lesion types the report mentions (the seven of ``vocab.LESION_TYPES``); a type not
listed is "not mentioned". ``certainty`` (default "definitive") and ``locations`` (anatomical labels;
omitted = not labelled, so not scored) are read for positive labels only.

Per lesion type a structurer's findings are reduced to one label: the type is positive when any positive
finding names it, as its lesion type or as the type it is said to reflect ("opacity, likely atelectasis"
labels opacity and atelectasis), definitive when any of those is definitive, located at the union of their
labels; negative when it is only mentioned negatively.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_ils.vocab import ANATOMY_LABELS, CERTAINTY_VALUES, LESION_TYPES, PRESENCE_VALUES

__all__ = ["GoldReport", "LesionLabel", "load_gold", "labels_from_findings", "evaluate", "format_table", "EvaluationResult"]

_SIDES = ("right", "left")


@dataclass(frozen=True)
class LesionLabel:
    presence: str
    certainty: str = "definitive"
    locations: frozenset[str] | None = None  # None: not labelled


@dataclass
class GoldReport:
    id: str
    report: str
    labels: dict[str, LesionLabel]


def _label(value: Any, where: str) -> LesionLabel:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object with 'presence', got {type(value).__name__}")
    unknown = sorted(set(value) - {"presence", "certainty", "locations"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected presence, certainty, locations")
    presence = value.get("presence")
    if presence not in PRESENCE_VALUES:
        raise ValueError(f"{where}.presence: {presence!r} is not one of {list(PRESENCE_VALUES)}")
    certainty = value.get("certainty", "definitive")
    if certainty not in CERTAINTY_VALUES:
        raise ValueError(f"{where}.certainty: {certainty!r} is not one of {list(CERTAINTY_VALUES)}")
    locations = value.get("locations")
    if locations is not None:
        if not isinstance(locations, list) or any(loc not in ANATOMY_LABELS for loc in locations):
            bad = [loc for loc in locations if loc not in ANATOMY_LABELS] if isinstance(locations, list) else locations
            raise ValueError(f"{where}.locations: {bad!r} not anatomical label(s); expected a list of {list(ANATOMY_LABELS)}")
        locations = frozenset(locations)
    return LesionLabel(presence, certainty, locations)


def load_gold(path: str | Path) -> list[GoldReport]:
    """Read and check a gold JSONL; a bad line raises ValueError naming the file, line and field."""
    path = Path(path)
    out, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: invalid JSON ({err.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("report"), str) or not isinstance(row.get("labels"), dict):
                raise ValueError(f"{where}: each line needs a string 'report' and an object 'labels'")
            rid = str(row.get("id", f"line{n}"))
            if rid in seen:
                raise ValueError(f"{where}: duplicate id {rid!r}")
            seen.add(rid)
            labels = {}
            for lesion, value in row["labels"].items():
                if lesion not in LESION_TYPES:
                    raise ValueError(f"{where}: unknown lesion type {lesion!r}; expected one of {list(LESION_TYPES)}")
                labels[lesion] = _label(value, f"{where}: labels.{lesion}")
            out.append(GoldReport(rid, row["report"], labels))
    if not out:
        raise ValueError(f"{path.name}: no labelled reports")
    return out


def labels_from_findings(findings: Iterable[Any]) -> dict[str, LesionLabel]:
    """Reduce findings to one label per lesion type (see the module docstring)."""
    positive: dict[str, list[Any]] = {}
    negative: set[str] = set()
    for f in findings:
        for lesion in {f.lesion_type, f.predicted_lesion_type} - {None}:
            if f.is_positive:
                positive.setdefault(lesion, []).append(f)
            else:
                negative.add(lesion)
    out = {lesion: LesionLabel("negative") for lesion in negative}
    for lesion, found in positive.items():
        certainty = "definitive" if any(f.certainty == "definitive" for f in found) else "tentative"
        out[lesion] = LesionLabel("positive", certainty, frozenset(loc for f in found for loc in f.locations))
    return out


def _sides(locations: frozenset[str]) -> frozenset[str]:
    return frozenset(side for loc in locations for side in _SIDES if loc.startswith(side) or loc.endswith(side))


@dataclass
class _Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    certainty_ok: int = 0
    side_ok: int = 0
    zone_ok: int = 0
    located: int = 0

    def add(self, other: _Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def row(self, name: str) -> dict[str, Any]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else None
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else None
        f1 = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
        ratio = lambda a, b: a / b if b else None  # noqa: E731
        return {"lesion": name, "gold_positive": self.tp + self.fn, "predicted_positive": self.tp + self.fp,
                "precision": p, "recall": r, "f1": f1, "certainty_accuracy": ratio(self.certainty_ok, self.tp),
                "certainty_n": self.tp, "side_agreement": ratio(self.side_ok, self.located),
                "zone_agreement": ratio(self.zone_ok, self.located), "location_n": self.located}


@dataclass
class EvaluationResult:
    rows: list[dict[str, Any]]
    reports: int
    failed: list[str] = field(default_factory=list)  # ids whose structuring raised (scored as no findings)
    fell_back: int = 0


def evaluate(gold: list[GoldReport], structure: Callable[[list[str]], list[Any]]) -> EvaluationResult:
    """Score ``structure(report_texts) -> [StructuredReport | Exception]`` on ``gold``.

    Presence: precision/recall/F1 of "positive" per lesion type. Certainty: accuracy over the true
    positives. Locations: over true positives whose gold has locations, the share with the same sides
    (right/left) and the same anatomical labels.
    """
    results = structure([g.report for g in gold])
    counts = {lesion: _Counts() for lesion in LESION_TYPES}
    failed, fell_back = [], 0
    for g, result in zip(gold, results):
        if isinstance(result, BaseException):
            failed.append(g.id)
            predicted = {}
        else:
            predicted = labels_from_findings(result.findings)
            fell_back += bool(getattr(result, "fallback_reason", None))
        for lesion in LESION_TYPES:
            gl, pl = g.labels.get(lesion), predicted.get(lesion)
            gold_pos, pred_pos = gl is not None and gl.presence == "positive", pl is not None and pl.presence == "positive"
            c = counts[lesion]
            if gold_pos and pred_pos:
                c.tp += 1
                c.certainty_ok += gl.certainty == pl.certainty
                if gl.locations is not None:
                    c.located += 1
                    c.side_ok += _sides(gl.locations) == _sides(pl.locations)
                    c.zone_ok += gl.locations == pl.locations
            elif gold_pos:
                c.fn += 1
            elif pred_pos:
                c.fp += 1
    total = _Counts()
    rows = []
    for lesion in LESION_TYPES:
        total.add(counts[lesion])
        rows.append(counts[lesion].row(lesion))
    rows.append(total.row("all (micro)"))
    return EvaluationResult(rows, len(gold), failed, fell_back)


_COLUMNS = ("lesion", "gold_positive", "predicted_positive", "precision", "recall", "f1", "certainty_accuracy",
            "certainty_n", "side_agreement", "zone_agreement", "location_n")


def format_table(result: EvaluationResult, fmt: str = "markdown") -> str:
    """The per-lesion table as Markdown (empty cells: nothing to score) or CSV (empty fields)."""
    def cell(value):
        return "" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(_COLUMNS)
        for row in result.rows:
            writer.writerow([cell(row[c]) for c in _COLUMNS])
        return buf.getvalue()
    if fmt != "markdown":
        raise ValueError(f"format_table: fmt must be 'markdown' or 'csv', got {fmt!r}")
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "|".join("---" for _ in _COLUMNS) + "|"]
    lines += ["| " + " | ".join(cell(row[c]) or "–" for c in _COLUMNS) + " |" for row in result.rows]
    return "\n".join(lines) + "\n"
