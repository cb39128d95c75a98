"""Evaluation of instruction-guided lesion segmentation: metrics, the paper's tables, overlays, runner."""

from monai_ils.evaluation.metrics import (
    MaskOverlapMetric,
    MaskStats,
    TextAccuracyMetric,
    answers_match,
    mask_stats,
    sample_iou,
    segmentation_scores,
)
from monai_ils.evaluation.tables import SampleScore, Table, build_tables, lesion_type_of, write_tables

__all__ = [
    "MaskOverlapMetric",
    "MaskStats",
    "SampleScore",
    "Table",
    "TextAccuracyMetric",
    "answers_match",
    "build_tables",
    "lesion_type_of",
    "mask_stats",
    "sample_iou",
    "segmentation_scores",
    "write_tables",
]
