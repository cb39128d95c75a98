"""Overlay pictures for eyeballing results: image, ground truth, prediction, and the texts."""

from __future__ import annotations

import random
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monai_ils.models.processing import to_rgb_uint8


@dataclass
class OverlayCase:
    """One row of an overlay figure."""

    image_path: str
    target: np.ndarray
    prediction: np.ndarray
    instruction: str
    reference_answer: str
    predicted_answer: str | None
    iou: float | None
    positive: bool
    title: str = ""


def pick_cases(n_items: int, positives: Sequence[bool], count: int, seed: int = 0) -> list[int]:
    """Indices of up to ``count`` cases, half positives and half negatives where possible, reproducibly."""
    rng = random.Random(seed)
    pos = [i for i in range(n_items) if positives[i]]
    neg = [i for i in range(n_items) if not positives[i]]
    rng.shuffle(pos)
    rng.shuffle(neg)
    take_pos = min(len(pos), max(count - len(neg), (count + 1) // 2))
    chosen = pos[:take_pos] + neg[: count - take_pos]
    return sorted(chosen)


def _blend(rgb: np.ndarray, mask: np.ndarray, color) -> np.ndarray:
    out = rgb.astype(np.float32).copy()
    if mask.shape != rgb.shape[:2]:
        return out.astype(np.uint8)
    out[mask] = 0.55 * out[mask] + 0.45 * np.asarray(color, dtype=np.float32)
    return out.clip(0, 255).astype(np.uint8)


def save_overlay_grid(cases: Sequence[OverlayCase], path, columns_title: Sequence[str] = ("Image", "Ground truth", "Prediction")) -> Path:
    """One figure, one row per case: the image, the target overlay (green), the prediction overlay (red)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not cases:
        raise ValueError("save_overlay_grid: no cases to draw.")
    fig, axes = plt.subplots(len(cases), 4, figsize=(16, 3.6 * len(cases)), squeeze=False, gridspec_kw={"width_ratios": [1, 1, 1, 1.3]})
    for row, case in zip(axes, cases):
        rgb = to_rgb_uint8(case.image_path)
        panels = [rgb, _blend(rgb, case.target, (0, 220, 0)), _blend(rgb, case.prediction, (230, 30, 30))]
        for ax, panel, name in zip(row, panels, columns_title):
            ax.imshow(panel)
            ax.set_title(name, fontsize=9)
            ax.axis("off")
        score = f"IoU {case.iou:.3f}" if case.iou is not None else ("predicted empty" if not case.prediction.any() else "predicted non-empty")
        lines = [
            case.title,
            f"Instruction: {case.instruction}",
            f"Reference: {case.reference_answer}",
            f"Predicted: {case.predicted_answer if case.predicted_answer is not None else '(segmentation only)'}",
            f"{'positive' if case.positive else 'negative'} | {score}",
        ]
        text = "\n\n".join(textwrap.fill(line, 48) for line in lines if line)
        row[3].axis("off")
        row[3].text(0.0, 0.95, text, transform=row[3].transAxes, fontsize=8.5, va="top", ha="left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
