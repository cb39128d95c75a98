"""Evaluate predictions against a MIMIC-ILS split: per-sample scores, tables, overlays, summary.

Output folder (``output_dir``)::

    predictions/             written by inference when a predictor is given (see monai_ils.inference.runner)
    per_sample.csv           id, lesion, question type, positive, IoU, areas, text correctness
    segmentation_by_lesion.csv, segmentation_by_question_type.csv, text_by_outcome.csv, text_by_lesion.csv
    results.md               all tables in Markdown
    summary.json             headline numbers and counts
    overlays/overlays_XX.png a reproducible sample of cases
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from monai_ils.data.ils_format import load_mask_png
from monai_ils.evaluation.metrics import MaskOverlapMetric, MaskStats, TextAccuracyMetric, answers_match
from monai_ils.evaluation.overlays import OverlayCase, pick_cases, save_overlay_grid
from monai_ils.evaluation.tables import SampleScore, build_tables, lesion_type_of, write_tables
from monai_ils.inference.runner import load_inputs, read_predictions, run_inference

logger = logging.getLogger(__name__)


def _resize_nearest(mask: np.ndarray, shape) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.NEAREST)) > 127


PROTOCOLS = {"teacher_forced": "segment", "end_to_end": "generate"}
PROTOCOL_TITLES = {"teacher_forced": "teacher-forced", "end_to_end": "end-to-end"}


def mode_of(protocol: str) -> str:
    """The inference mode that ``protocol`` ("teacher_forced" or "end_to_end") runs."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown evaluation protocol {protocol!r}; expected one of {list(PROTOCOLS)}.")
    return PROTOCOLS[protocol]


def protocol_of(mode: str | None) -> str:
    """The evaluation protocol of an inference mode: "segment" is teacher-forced ([SEG] given, masks only),
    "generate" is end-to-end (answer generated, masks from the generated [SEG]s, text accuracy)."""
    for protocol, protocol_mode in PROTOCOLS.items():
        if mode == protocol_mode:
            return protocol
    raise ValueError(f"Unknown inference mode {mode!r}; expected one of {list(PROTOCOLS.values())}.")


def score_samples(samples, requests, predictions_dir, empty_threshold: int = 0):
    """Score every sample against its prediction record with MONAI metric classes.

    Returns ``(scores, records, metrics)``: per-sample :class:`SampleScore`, the prediction records in
    sample order, and the filled ``{"segmentation": MaskOverlapMetric, "text": TextAccuracyMetric}``.
    Raises when predictions are missing.
    """
    predictions_dir = Path(predictions_dir)
    records = read_predictions(predictions_dir)
    missing = [r.id for r in requests if r.id not in records]
    if missing:
        raise ValueError(
            f"{predictions_dir}: {len(missing)} of {len(requests)} samples have no prediction (e.g. {missing[:3]}); "
            "rerun inference (it resumes) or check errors.jsonl."
        )
    seg_metric, text_metric = MaskOverlapMetric(empty_threshold), TextAccuracyMetric()
    scores, used = [], []
    resized = 0
    for sample, request in zip(samples, requests):
        record = records[request.id]
        pred = load_mask_png(predictions_dir / record["mask_path"])
        target = sample.load_mask(shape=pred.shape)
        if target.shape != pred.shape:  # evaluate at the ground truth's resolution
            pred = _resize_nearest(pred, target.shape)
            resized += 1
        row = seg_metric([torch.from_numpy(np.ascontiguousarray(pred))[None]], [torch.from_numpy(np.ascontiguousarray(target))[None]], positive=sample.positive)[0]
        text = record.get("text")
        if text is not None:
            text_metric.append([text], [sample.answer], [sample.question_type])
        scores.append(
            SampleScore(
                id=request.id,
                lesion=lesion_type_of(sample),
                question_type=sample.question_type or "unknown",
                positive=sample.positive,
                stats=MaskStats(*(int(v) for v in row[:4])),
                text_correct=None if text is None else bool(text_metric.get_buffer()[-1, 0]),
                extra={"instruction": sample.instruction, "answer": sample.answer, "predicted": text},
            )
        )
        used.append(record)
    if resized:
        logger.warning("%d predictions differ in size from their ground truth; resized (nearest) to it.", resized)
    return scores, used, {"segmentation": seg_metric, "text": text_metric}


def write_per_sample(scores, path) -> Path:
    path = Path(path)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "lesion", "question_type", "positive", "iou", "intersection", "union", "pred_area", "target_area", "text_correct", "instruction", "answer", "predicted"])
        for s in scores:
            writer.writerow(
                [s.id, s.lesion, s.question_type, int(s.positive), f"{s.iou:.6f}" if s.positive else "", s.stats.intersection, s.stats.union,
                 s.stats.pred_area, s.stats.target_area, "" if s.text_correct is None else int(s.text_correct),
                 s.extra["instruction"], s.extra["answer"], s.extra["predicted"] if s.extra["predicted"] is not None else ""]
            )
    return path


def summarise(metrics: dict, empty_threshold: int = 0) -> dict:
    """Headline numbers from the filled metrics of :func:`score_samples` (NaN -> None for JSON)."""
    seg = metrics["segmentation"].aggregate()
    text_buffer = metrics["text"].get_buffer()
    n_text = 0 if text_buffer is None else len(text_buffer)
    summary = {**seg, "n_samples": seg["n_positive"] + seg["n_negative"], "empty_threshold": empty_threshold}
    summary["text_accuracy"] = metrics["text"].aggregate()["overall"] if n_text else None
    summary["n_text"] = n_text
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in summary.items()}


def write_overlays(samples, scores, records, predictions_dir, output_dir, count: int = 16, per_figure: int = 4, seed: int = 0) -> list[Path]:
    """Draw ``count`` reproducibly chosen cases, ``per_figure`` rows per PNG."""
    if count <= 0 or not scores:
        return []
    chosen = pick_cases(len(scores), [s.positive for s in scores], count, seed)
    cases = []
    for i in chosen:
        sample, score, record = samples[i], scores[i], records[i]
        pred = load_mask_png(Path(predictions_dir) / record["mask_path"])
        target = sample.load_mask(shape=pred.shape)
        if target.shape != pred.shape:
            pred = _resize_nearest(pred, target.shape)
        cases.append(
            OverlayCase(sample.image_path, target, pred, sample.instruction, sample.answer, record.get("text"),
                        score.iou if sample.positive else None, sample.positive, title=f"{score.id} ({score.lesion}, {score.question_type})")
        )
    paths = []
    for n, start in enumerate(range(0, len(cases), per_figure)):
        paths.append(save_overlay_grid(cases[start : start + per_figure], Path(output_dir) / "overlays" / f"overlays_{n:02d}.png"))
    return paths


class EvaluationRunner:
    """Bundle entry point of ``evaluate.json``: (optionally) predict, then score and report.

    ``protocol`` is "teacher_forced" (mode "segment": [SEG] given, gIoU/cIoU over positives, N-Acc
    over negatives) or "end_to_end" (mode "generate": answer generated, masks from the generated
    [SEG]s, plus text accuracy); the tables and summary.json name it. Without a ``predictor``,
    existing predictions in ``predictions_dir`` are scored (their mode gives the protocol).
    """

    def __init__(
        self,
        output_dir,
        dataset_json,
        predictor=None,
        predictions_dir=None,
        splits="test",
        image_root=None,
        mode: str | None = None,
        protocol: str | None = None,
        resume: bool = True,
        limit: int | None = None,
        empty_threshold: int = 0,
        num_overlays: int = 16,
        overlays_per_figure: int = 4,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.predictions_dir = Path(predictions_dir) if predictions_dir else self.output_dir / "predictions"
        self.dataset = dict(dataset_json=dataset_json, splits=splits, image_root=image_root, limit=limit)
        self.predictor = predictor
        if protocol is not None:
            if mode is not None and mode != mode_of(protocol):
                raise ValueError(f"Protocol {protocol!r} runs mode {mode_of(protocol)!r}, not {mode!r}.")
            mode = mode_of(protocol)
        self.mode = mode
        self.resume = resume
        self.empty_threshold = int(empty_threshold)
        self.num_overlays = int(num_overlays)
        self.overlays_per_figure = int(overlays_per_figure)
        self.seed = seed
        self.progress = progress

    def run(self) -> dict:
        samples, requests = load_inputs(**self.dataset)
        if self.predictor is not None:
            run_inference(self.predictor, requests, self.predictions_dir, self.mode, self.resume, self.progress)
        scores, records, metrics = score_samples(samples, requests, self.predictions_dir, self.empty_threshold)
        modes = {r.get("mode") for r in records}
        if len(modes) > 1:
            raise ValueError(f"{self.predictions_dir}: predictions of several modes {sorted(map(str, modes))}; score one protocol per folder.")
        mode = modes.pop() if modes else (self.mode or getattr(self.predictor, "mode", None))
        protocol = protocol_of(mode)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_per_sample(scores, self.output_dir / "per_sample.csv")
        tables = build_tables(scores, self.empty_threshold, protocol=PROTOCOL_TITLES[protocol])
        markdown = write_tables(tables, self.output_dir)
        overlays = write_overlays(samples, scores, records, self.predictions_dir, self.output_dir, self.num_overlays, self.overlays_per_figure, self.seed)
        summary = summarise(metrics, self.empty_threshold)
        summary["mode"] = mode
        summary["protocol"] = protocol
        summary["tables"] = [t.name for t in tables]
        summary["overlays"] = [str(p.relative_to(self.output_dir)) for p in overlays]
        if self.predictor is not None:
            summary["cache"] = self.predictor.cache_stats()
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        logger.info("Evaluation written to %s:\n%s", self.output_dir, markdown.read_text())
        return summary
