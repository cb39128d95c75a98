"""Scores of instruction-guided lesion segmentation: gIoU, cIoU, N-Acc and text accuracy.

Definitions (paper Sec. 6.1, Table 6):

- gIoU: mean of the per-sample IoU over positive samples.
- cIoU: total intersection / total union over positive samples.
- N-Acc: share of negative samples (empty target) whose predicted mask is empty.
- Text accuracy: an answer is correct when it matches the ground-truth answer's Table 2 template
  and every variable of it (target, locations, lesion; certainty through the template).

Empty-case conventions (the paper leaves them open; these are ours and are documented in docs/inference.md):

- A positive whose prediction is empty scores IoU 0 (intersection 0, union = target area).
- A positive whose target is empty as well (a malformed positive: nothing to find, nothing found)
  scores IoU 1, as LISA's evaluation does for an empty union; it adds nothing to cIoU. Such samples
  are counted in ``empty_target_positives`` so that they are visible.
- A negative counts as correct when the prediction has at most ``empty_threshold`` foreground
  pixels (default 0). A generated answer without any [SEG] token has an empty mask.
- A score over no samples is NaN (shown as "-" in the tables, as in the paper's Table 13).
- Text: when the ground-truth answer matches no template, the two texts are compared after
  collapsing whitespace and case; when the prediction matches no template it is wrong.
  Locations are compared as sets: "left lung and right lung" equals "right lung and left lung".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import Cumulative, CumulativeIterationMetric

from monai_ils.data.templates import ParsedText, parse_answer

__all__ = [
    "MaskStats",
    "mask_stats",
    "sample_iou",
    "segmentation_scores",
    "answers_match",
    "normalise_answer",
    "MaskOverlapMetric",
    "TextAccuracyMetric",
]


@dataclass(frozen=True)
class MaskStats:
    """Pixel counts of one prediction against its target."""

    intersection: int
    union: int
    pred_area: int
    target_area: int

    def iou(self) -> float:
        """IoU with the conventions of this module (empty union -> 1.0)."""
        return 1.0 if self.union == 0 else self.intersection / self.union


def _as_tensor(mask, name: str) -> torch.Tensor:
    """A 2-D mask (optionally with singleton leading dims) as a ``[1, H, W]`` tensor."""
    tensor = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask.detach().cpu())
    while tensor.ndim > 2 and tensor.shape[0] == 1:  # [1, H, W], [1, 1, H, W]
        tensor = tensor[0]
    if tensor.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D mask (optionally with singleton dims), got shape {tuple(np.shape(mask))}.")
    return tensor[None]


def mask_stats(pred, target, positive: bool | None = None) -> MaskStats:
    """Intersection, union and areas of one predicted and one target mask (foreground = non-zero),
    counted by :class:`MaskOverlapMetric` (the one implementation)."""
    p, t = _as_tensor(pred, "prediction"), _as_tensor(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"Prediction shape {tuple(p.shape[1:])} differs from target shape {tuple(t.shape[1:])}; resize the prediction to the image first.")
    row = MaskOverlapMetric.counts(p[None], t[None])[0]
    return MaskStats(*(int(v) for v in row[:4]))


def sample_iou(pred, target) -> float:
    return mask_stats(pred, target).iou()


def segmentation_scores(positives: Sequence[MaskStats], negatives: Sequence[MaskStats], empty_threshold: int = 0) -> dict:
    """gIoU, cIoU (over ``positives``) and N-Acc (over ``negatives``) as fractions, with counts."""
    ious = [s.iou() for s in positives]
    inter = sum(s.intersection for s in positives)
    union = sum(s.union for s in positives)
    empty_ok = [s.pred_area <= empty_threshold for s in negatives]
    return {
        "giou": float(np.mean(ious)) if ious else math.nan,
        "ciou": inter / union if union > 0 else (1.0 if positives else math.nan),
        "nacc": float(np.mean(empty_ok)) if empty_ok else math.nan,
        "n_positive": len(ious),
        "n_negative": len(empty_ok),
        "empty_target_positives": sum(1 for s in positives if s.target_area == 0),
    }


# ------------------------------------------------------------------------------------------------
# text
# ------------------------------------------------------------------------------------------------
def normalise_answer(text: str | None) -> str:
    return " ".join(str(text or "").split()).lower()


def _comparable(parsed: ParsedText):
    variables = {}
    for key, value in parsed.variables.items():
        variables[key] = frozenset(value) if isinstance(value, list) else value
    return parsed.question_type, parsed.outcome, tuple(sorted(variables.items()))


def answers_match(predicted: str | None, reference: str) -> bool:
    """True when ``predicted`` has the template and all the variables of ``reference`` (see module doc)."""
    if predicted is None:
        return False
    ref = parse_answer(" ".join(reference.split()))
    if ref is None:
        return normalise_answer(predicted) == normalise_answer(reference)
    pred = parse_answer(" ".join(predicted.split()))
    return pred is not None and _comparable(pred) == _comparable(ref)


# ------------------------------------------------------------------------------------------------
# MONAI metric classes
# ------------------------------------------------------------------------------------------------
class MaskOverlapMetric(CumulativeIterationMetric):
    """gIoU, cIoU and N-Acc as a MONAI cumulative metric: the one implementation of the mask scores.

    Call it with predictions and targets (batch-first tensors ``[B, 1, H, W]`` or lists of
    channel-first ``[1, H, W]`` tensors of different sizes); every call buffers per-sample
    ``(intersection, union, pred_area, target_area, positive)`` and returns those rows. ``positive``
    (bool or ``[B]``) says which samples are positives; without it a sample is a negative when its
    target is empty (the MIMIC-ILS convention: negative pairs have empty masks). :meth:`aggregate`
    returns ``{"giou", "ciou", "nacc", "n_positive", "n_negative", "empty_target_positives"}``.
    """

    def __init__(self, empty_threshold: int = 0) -> None:
        super().__init__()
        self.empty_threshold = int(empty_threshold)

    @staticmethod
    def counts(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``[B, 4]`` long: intersection, union, predicted area, target area (foreground = > 0)."""
        p = (y_pred > 0).flatten(1)
        t = (y > 0).flatten(1)
        inter = (p & t).sum(1)
        pa, ta = p.sum(1), t.sum(1)
        return torch.stack([inter, pa + ta - inter, pa, ta], 1).to(torch.long).cpu()

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, positive=None, **kwargs) -> torch.Tensor:
        if y is None:
            raise ValueError("MaskOverlapMetric needs targets (y).")
        if y_pred.shape != y.shape:
            raise ValueError(f"MaskOverlapMetric: y_pred shape {tuple(y_pred.shape)} differs from y shape {tuple(y.shape)}.")
        rows = self.counts(y_pred, y)
        flags = rows[:, 3] > 0 if positive is None else torch.as_tensor(positive, dtype=torch.bool).flatten().expand(rows.shape[0])
        return torch.cat([rows, flags.to(torch.long)[:, None]], 1)

    @staticmethod
    def split(rows) -> tuple[list[MaskStats], list[MaskStats]]:
        """Buffered rows -> (positive, negative) :class:`MaskStats`."""
        stats = [(MaskStats(*(int(v) for v in row[:4])), bool(row[4])) for row in rows]
        return [s for s, pos in stats if pos], [s for s, pos in stats if not pos]

    def aggregate(self) -> dict:  # type: ignore[override]
        buffer = self.get_buffer()
        rows = [] if buffer is None or len(buffer) == 0 else buffer
        return segmentation_scores(*self.split(rows), self.empty_threshold)


class TextAccuracyMetric(Cumulative):
    """Text accuracy by question type, accumulated as MONAI ``Cumulative`` buffers.

    ``metric.append(predicted_answers, reference_answers, question_types)`` with lists of strings;
    :meth:`aggregate` returns ``{question_type: accuracy, ..., "overall": accuracy}``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._question_types: list[str] = []

    def reset(self) -> None:
        super().reset()
        self._question_types = []

    def append(self, predicted: Sequence[str | None], reference: Sequence[str], question_types: Sequence[str | None] | None = None) -> None:  # type: ignore[override]
        if isinstance(predicted, str) or isinstance(reference, str):
            predicted, reference = [predicted], [reference]
            question_types = [question_types] if isinstance(question_types, str) or question_types is None else question_types
        if question_types is None:
            question_types = [None] * len(reference)
        if not len(predicted) == len(reference) == len(question_types):
            raise ValueError(f"TextAccuracyMetric: {len(predicted)} predictions, {len(reference)} references, {len(question_types)} question types.")
        correct = torch.tensor([answers_match(p, r) for p, r in zip(predicted, reference)], dtype=torch.float32)
        super().extend(correct.view(-1, 1))
        self._question_types.extend(str(q) if q else "unknown" for q in question_types)

    def aggregate(self) -> dict:  # type: ignore[override]
        buffer = self.get_buffer()
        if buffer is None or len(buffer) == 0:
            return {"overall": math.nan}
        values = buffer.flatten().tolist()
        result = {}
        for q in dict.fromkeys(self._question_types):
            chosen = [v for v, t in zip(values, self._question_types) if t == q]
            result[q] = float(np.mean(chosen))
        result["overall"] = float(np.mean(values))
        return result
