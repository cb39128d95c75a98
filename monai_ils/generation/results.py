"""What a per-study processor returns or raises; imported by the pipeline without the shard engine."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monai_ils.data.ils_format import ILSSample
from monai_ils.data.mimic_cxr import StudyRecord
from monai_ils.generation.pairs import GeneratedPairs


class StageError(RuntimeError):
    """A failure inside one stage of the per-study pipeline; ``stage`` names it in the error record."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


class SkipStudy(Exception):
    """Raised by a processor for a study that is excluded by design (quality control), not broken."""


@dataclass
class StudyResult:
    """What a processor returns for one study.

    masks: mask path relative to the masks folder (``<study>/<name>.png``) -> bool array; positive samples'
        ``seg_mask_path`` use these keys. overlays: path relative to the overlays folder -> RGB uint8 array.
    image: an 8-bit [H, W] copy of the image to write as ``images/<study>.png`` and point the samples at
        (for training code that reads PNGs, like ROSALIA's); None keeps the original image path.
    info: small JSON-able facts worth keeping in the shard line (number of findings, CTR, ...).
    """

    samples: list[ILSSample] = field(default_factory=list)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    overlays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    image: np.ndarray | None = None

    @classmethod
    def from_pairs(cls, pairs: GeneratedPairs, **kwargs) -> StudyResult:
        return cls(samples=list(pairs.samples), masks=dict(pairs.masks), **kwargs)


Processor = Callable[[StudyRecord], "StudyResult | GeneratedPairs"]


def error_record(record: StudyRecord, err: BaseException) -> dict:
    """What failed and where: the study, its files, the stage, the exception and the innermost frames."""
    inner = err
    while inner.__cause__ is not None and inner.__cause__.__traceback__ is not None:
        inner = inner.__cause__  # the frames of the original failure, not of the wrapper
    frames = traceback.extract_tb(inner.__traceback__)[-3:]
    return {
        "stage": getattr(err, "stage", "process"),
        "type": type(err).__name__,
        "message": str(err),
        "where": [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames],
        "image_path": record.image_path,
        "report_path": record.report_path,
    }
