"""What pair generation consumes: one study's grounded findings (the output of location verification).

These records are the seam between the grounding pipeline (report structuring, spatial cues, Algorithm 1,
location verification) and instruction-answer generation: anything that can fill them (our pipeline, a
user's own masks, a test) gets Table 2 pairs from :func:`monai_ils.generation.pairs.generate_pairs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from monai_ils.vocab import CERTAINTY_VALUES, LESION_TYPES, PRESENCE_VALUES, check_anatomy_label, check_lesion_type


def _labels(values, where: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    out = []
    for value in values:
        try:
            label = check_anatomy_label(value)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        if label not in out:
            out.append(label)
    return tuple(out)


@dataclass
class GroundedFinding:
    """One structured finding of a report after grounding and location verification.

    lesion_type: one of ``vocab.LESION_TYPES`` or None for any other finding (nodule, pneumothorax, ...);
        other findings never produce pairs but do block global negatives (see docs/generation.md).
    presence / certainty: "positive"/"negative" and "definitive"/"tentative" (paper Fig. 9).
    predicted_lesion_type: the lesion a non-specific finding is said to reflect ("opacity ... likely
        atelectasis"); when it is one of the seven it is the lesion the pairs are about.
    reported_location: anatomical labels of the report's location (location mapping output).
    grounded_location: the subset of reported_location that overlaps the generated mask.
    mask: bool [H, W] lesion mask (the heart mask for cardiomegaly), or None when grounding failed.
    """

    lesion_type: str | None
    presence: str = "positive"
    certainty: str = "definitive"
    reported_location: Sequence[str] = ()
    grounded_location: Sequence[str] = ()
    mask: np.ndarray | None = None
    predicted_lesion_type: str | None = None
    entity: str | None = None
    sentence_index: int | None = None

    def __post_init__(self):
        where = f"GroundedFinding({self.entity or self.lesion_type!r})"
        if self.lesion_type is not None:
            self.lesion_type = check_lesion_type(self.lesion_type)
        if self.predicted_lesion_type is not None:
            name = str(self.predicted_lesion_type).strip().lower()
            self.predicted_lesion_type = name if name in LESION_TYPES else None
        self.presence = str(self.presence).strip().lower()
        self.certainty = str(self.certainty).strip().lower()
        if self.presence not in PRESENCE_VALUES:
            raise ValueError(f"{where}: presence must be one of {list(PRESENCE_VALUES)}, got {self.presence!r}.")
        if self.certainty not in CERTAINTY_VALUES:
            raise ValueError(f"{where}: certainty must be one of {list(CERTAINTY_VALUES)}, got {self.certainty!r}.")
        self.reported_location = _labels(self.reported_location, f"{where}.reported_location")
        self.grounded_location = _labels(self.grounded_location, f"{where}.grounded_location")
        extra = set(self.grounded_location) - set(self.reported_location)
        if extra and self.reported_location:
            raise ValueError(f"{where}: grounded location {sorted(extra)} is not part of the reported location {list(self.reported_location)}.")
        if self.mask is not None:
            mask = np.squeeze(np.asarray(self.mask.detach().cpu() if hasattr(self.mask, "detach") else self.mask))
            if mask.ndim != 2:
                raise ValueError(f"{where}: mask must be 2-D, got shape {mask.shape}.")
            self.mask = mask > 0

    @property
    def effective_lesion_type(self) -> str | None:
        """The lesion the pairs are about: the predicted type when the report names one, else the lesion type."""
        return self.predicted_lesion_type or self.lesion_type

    @property
    def is_positive(self) -> bool:
        return self.presence == "positive"

    @property
    def is_grounded(self) -> bool:
        return self.is_positive and self.mask is not None and bool(self.mask.any()) and bool(self.grounded_location)


@dataclass
class StudyGrounding:
    """Everything pair generation needs about one image and its report.

    empty_locations: lung regions free of every reported lesion (paper A.6), as anatomical labels; None
        when unknown (then only a study without positive findings gets located negatives).
    ctr: cardiothoracic ratio from the heart and lung masks, or None when it could not be measured.
    qc_passed: the study passed quality control (frontal view, anatomy cross-check); if not, no pairs.
    qc_reasons: why it did not (recorded by the runner).
    image: the [H, W] image the masks belong to, only used to draw overlays (optional).
    sentences: the report section's sentences (``GroundedFinding.sentence_index`` counts from 1 into them);
        the DICOM SR quotes a finding's sentence. None when unknown.
    section_name / section_content: the report section the findings come from ("findings", "impression", ...)
        and its text; written into the dataset (the released schema's study fields), never into logs.
    """

    study_key: str
    image_path: str
    split: str = "train"
    findings: list[GroundedFinding] = field(default_factory=list)
    empty_locations: Sequence[str] | None = None
    ctr: float | None = None
    qc_passed: bool = True
    qc_reasons: list[str] = field(default_factory=list)
    image_shape: tuple[int, int] | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    sentences: list[str] | None = field(default=None, repr=False)
    section_name: str | None = None
    section_content: str | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.empty_locations is not None:
            self.empty_locations = _labels(self.empty_locations, f"StudyGrounding({self.study_key!r}).empty_locations")
        for finding in self.findings:
            if not isinstance(finding, GroundedFinding):
                raise TypeError(f"StudyGrounding({self.study_key!r}): findings must be GroundedFinding, got {type(finding).__name__}.")
