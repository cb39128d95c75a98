"""Score a structurer against sentences with expected findings (per-field precision/recall/F1).

Findings are compared as multisets of keys per snippet, so the score does not depend on output order.
Fields (each adds to the key of the one before, except the last two):
  lesion_type                      -> which of the seven lesion types are mentioned
  presence                         -> (lesion type, presence)
  certainty                        -> (lesion type, presence, certainty): the gate of the issue (>= 0.9)
  predicted                        -> (lesion type, predicted lesion type)
  locations                        -> (lesion type, mapped anatomical labels)
  other_findings                   -> (presence) of findings outside the seven types
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["load_corpus", "finding_keys", "score", "format_scores", "FIELDS"]

FIELDS = ("lesion_type", "presence", "certainty", "predicted", "locations", "other_findings")


def load_corpus(path: str | Path) -> list[dict[str, Any]]:
    """Read a corpus JSONL: one ``{"id", "text", "expected": [finding dicts], "tags"}`` per line."""
    items = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: invalid JSON ({err})") from None
            if "text" not in item or "expected" not in item:
                raise ValueError(f"{path}:{n}: each line needs 'text' and 'expected'")
            items.append(item)
    return items


def _get(f: Any, name: str):
    return f.get(name) if isinstance(f, Mapping) else getattr(f, name)


def finding_keys(findings: Iterable[Any], field: str) -> Counter:
    keys: Counter = Counter()
    for f in findings:
        lesion = _get(f, "lesion_type")
        if field == "other_findings":
            if lesion is None:
                keys[(_get(f, "presence"), _get(f, "certainty"))] += 1
            continue
        if lesion is None:
            continue
        if field == "lesion_type":
            keys[(lesion,)] += 1
        elif field == "presence":
            keys[(lesion, _get(f, "presence"))] += 1
        elif field == "certainty":
            keys[(lesion, _get(f, "presence"), _get(f, "certainty"))] += 1
        elif field == "predicted":
            keys[(lesion, _get(f, "predicted_lesion_type"))] += 1
        elif field == "locations":
            keys[(lesion, tuple(sorted(_get(f, "locations") or ())))] += 1
        else:
            raise ValueError(f"unknown field {field!r}; expected one of {FIELDS}")
    return keys


def score(items: list[Mapping[str, Any]], predict: Callable[[str], list[Any]]) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """Per-field scores of ``predict(text) -> findings`` over ``items``, and the snippets it got wrong."""
    totals = {f: Counter() for f in FIELDS}
    errors = []
    for item in items:
        predicted = predict(item["text"])
        wrong = False
        for field in FIELDS:
            exp, got = finding_keys(item["expected"], field), finding_keys(predicted, field)
            tp = sum((exp & got).values())
            totals[field].update(tp=tp, fp=sum(got.values()) - tp, fn=sum(exp.values()) - tp)
            if field == "certainty" and exp != got:
                wrong = True
        if wrong:
            errors.append({"id": item.get("id"), "text": item["text"], "expected": sorted(finding_keys(item["expected"], "certainty")),
                           "got": sorted(finding_keys(predicted, "certainty"))})
    scores = {}
    for field, c in totals.items():
        p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
        r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
        scores[field] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": c["tp"] + c["fn"]}
    return scores, errors


def format_scores(scores: Mapping[str, Mapping[str, float]]) -> str:
    lines = [f"{'field':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for field, s in scores.items():
        lines.append(f"{field:<16}{s['precision']:>10.3f}{s['recall']:>10.3f}{s['f1']:>10.3f}{int(s['support']):>9d}")
    return "\n".join(lines)
