"""The per-study grounding pipeline: report + image -> :class:`StudyGrounding` (paper Sec. 3.1).

report text -> section (Appendix A.1) -> structured findings -> LoadCXR -> anatomy, counterfactual and
lesion boxes (cue backends) -> for each positive lesion finding: anomaly map -> Algorithm 1 box filter ->
intersecting components -> refinement -> location verification; plus the study's empty locations, the
cardiothoracic ratio and the anatomy cross-check. Pair generation then reads the StudyGrounding.

Cues run on a copy of the image whose longer side is at most ``max_size`` (the grounding thresholds are
ratios, so they do not depend on the size); lesion masks are brought back to the image's own size, so a
mask PNG always matches the image it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from monai_ils import vocab
from monai_ils.data.mimic_cxr import StudyRecord
from monai_ils.generation.findings import GroundedFinding, StudyGrounding
from monai_ils.generation.results import SkipStudy, StageError

LUNG_LESIONS = tuple(t for t in vocab.LESION_TYPES if t not in vocab.ORGAN_LEVEL_LESION_TYPES)

LOBE_ZONE_APPROXIMATION: Mapping[str, tuple[str, ...]] = {
    "lung upper lobe right": ("right apical zone lung", "right upper zone lung"),
    "lung middle lobe right": ("right mid zone lung",),
    "lung lower lobe right": ("right lung base",),
    "lung upper lobe left": ("left apical zone lung", "left upper zone lung", "left mid zone lung"),
    "lung lower lobe left": ("left lung base",),
}
"""Frontal projection of each lobe by lung zones, used only when the anatomy backend has no lobe masks
(the classical one): the upper lobes project over the apical and upper zones (the left one, with the
lingula, over the mid zone too), the right middle lobe over the mid zone and the lower lobes over the bases."""


DEFAULT_MAX_PIXELS = 6000 * 6000
"""Above every chest X-ray detector in use (about 4300 x 4300); a larger image is a mistake or a bomb."""


def header_shape(path) -> tuple[int, int]:
    """(rows, columns) from the file's header, without decoding the pixels (DICOM, or any PIL image)."""
    from pathlib import Path

    path = Path(path)
    with path.open("rb") as stream:
        stream.seek(128)
        is_dicom = stream.read(4) == b"DICM"
    if is_dicom or path.suffix.lower() in (".dcm", ".dicom"):
        import pydicom

        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns)
    from PIL import Image

    with Image.open(path) as image:  # reads the header only
        return image.size[1], image.size[0]


def check_pixel_limit(path, max_pixels: int) -> None:
    """Raise before decoding an image larger than ``max_pixels`` (a study of 8000 x 8000 needs GBs per process)."""
    from pathlib import Path

    try:
        rows, cols = header_shape(path)
    except Exception:  # noqa: BLE001 - an unreadable header is LoadCXR's to report, naming the file and the cause
        return
    if rows * cols > max_pixels:
        raise ValueError(
            f"image {Path(path).name} is {cols} x {rows} = {rows * cols} pixels, above the limit of {max_pixels} "
            f"(the pipeline's max_pixels; raise it in generation.json to accept larger images)."
        )


def _stage(stage: str, call: Callable, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except (StageError, SkipStudy):
        raise
    except Exception as err:
        raise StageError(stage, f"{type(err).__name__}: {err}") from err


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _mask2d(x) -> np.ndarray:
    array = _to_numpy(x)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    return array > 0


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == tuple(shape):
        return mask
    from PIL import Image

    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.NEAREST)) > 0


class GroundingPipeline:
    """``StudyRecord -> StudyGrounding`` with configurable structurer and cue backends.

    Args:
        structurer: an object with ``structure(section_text, section_name) -> StructuredReport`` (the rule-based
            or an LLM structurer of ``monai_ils.report``); default the shared rule-based one.
        anatomy, counterfactual, boxes: cue backend names (``"classical"``, ``"cxas"``, ``"radedit"``, ``"yolo"``,
            precomputed ...) or backend objects, with ``*_kwargs`` for their constructors (weights paths).
        thresholds: Table 7 overrides (a ``ThresholdTable``, or a mapping for ``ThresholdTable.from_dict``).
        max_size: longer side of the image the cues and grounding run on (None: full size).
        cross_check_anatomy: a second anatomy backend for the Appendix D.2 cross-check (None: not checked),
            with ``cross_check_tolerance`` (fraction of the image size).
        keep_image: put the image on the StudyGrounding so the processor can draw overlays.
        max_pixels: refuse (an error record of stage ``load``) an image with more pixels than this, read from
            its header before it is decoded; None: no limit. The default is the MONAI Label app's.
    """

    def __init__(
        self,
        structurer=None,
        anatomy="classical",
        counterfactual="classical",
        boxes="classical",
        anatomy_kwargs: Mapping | None = None,
        counterfactual_kwargs: Mapping | None = None,
        boxes_kwargs: Mapping | None = None,
        thresholds=None,
        max_size: int | None = 1024,
        cross_check_anatomy=None,
        cross_check_tolerance: float = 0.05,
        keep_image: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ):
        from monai.transforms import Compose

        from monai_ils.cues.transforms import AnatomyMasks, Counterfactual, DetectLesionBoxes
        from monai_ils.transforms import (
            AnomalyMapd,
            FilterLesionBoxesd,
            IntersectingComponentsd,
            LoadCXR,
            RefineLesionMaskd,
            VerifyLocations,
            VerifyLocationsd,
        )

        if structurer is None:
            from monai_ils.report import default_structurer

            structurer = default_structurer()
        if not hasattr(structurer, "structure"):
            raise TypeError(f"structurer must have structure(section_text, section_name), got {type(structurer).__name__}.")
        self.structurer = structurer
        self.loader = LoadCXR(frontal_check="flag")
        self.anatomy = AnatomyMasks(anatomy, **dict(anatomy_kwargs or {}))
        self.counterfactual = Counterfactual(counterfactual, **dict(counterfactual_kwargs or {}))
        self.boxes = DetectLesionBoxes(boxes, **dict(boxes_kwargs or {}))
        self.thresholds = self._thresholds(thresholds)
        self.max_size = None if max_size is None else int(max_size)
        self.keep_image = bool(keep_image)
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self.verify = VerifyLocations()
        self.cross_check = None
        if cross_check_anatomy is not None:
            from monai_ils.cues.transforms import CrossCheckAnatomy

            self.cross_check_anatomy = AnatomyMasks(cross_check_anatomy)
            self.cross_check = CrossCheckAnatomy(tolerance=cross_check_tolerance)
        t = self.thresholds
        self.chain = Compose(
            [
                AnomalyMapd(thresholds=t),
                FilterLesionBoxesd(thresholds=t),
                IntersectingComponentsd(),
                RefineLesionMaskd(),
                VerifyLocationsd(),
            ]
        )

    @staticmethod
    def _thresholds(thresholds):
        if thresholds is None or isinstance(thresholds, vocab.ThresholdTable):
            return thresholds or vocab.DEFAULT_THRESHOLDS
        if isinstance(thresholds, Mapping):
            return vocab.ThresholdTable.from_dict(thresholds)
        raise TypeError(f"thresholds must be a ThresholdTable or a mapping, got {type(thresholds).__name__}.")

    # ------------------------------------------------------------------------------------------
    def structure(self, record: StudyRecord):
        """Report -> StructuredReport; a study without a usable section is skipped (Appendix A.1)."""
        from monai_ils.report import structure_report

        text = _stage("report", record.read_report)
        report = _stage("structure", structure_report, text, self.structurer)
        if report.skipped_reason is not None:
            raise SkipStudy(f"report: {report.skipped_reason} ({record.report_path or 'inline text'})")
        return report

    def load(self, record: StudyRecord):
        if self.max_pixels is not None:
            _stage("load", check_pixel_limit, record.image_path, self.max_pixels)
        image = _stage("load", self.loader, record.image_path, record.view_position, record.study_id, record.dicom_id)
        if image.meta.get("is_frontal") is False:
            raise SkipStudy(f"quality control: view position {image.meta.get('view_position')!r} is not frontal")
        if self.max_size and max(image.shape[-2:]) > self.max_size:
            from monai.transforms import Resize

            work = _stage("load", Resize(self.max_size, size_mode="longest", mode="area"), image)
        else:
            work = image
        return image, work

    def cues(self, work) -> dict:
        """Anatomy (bool masks, lobes approximated from zones when the backend has none), the counterfactual,
        and the boxes (the box backend may reuse the counterfactual and anatomy instead of recomputing them)."""
        masks = _stage("cues", self.anatomy, work)
        anatomy = {label: _mask2d(mask)[None] for label, mask in masks.items()}  # bool: checked once, not per transform
        for lobe, zones in LOBE_ZONE_APPROXIMATION.items():
            if lobe not in anatomy and all(z in anatomy for z in zones):
                anatomy[lobe] = np.logical_or.reduce([anatomy[z] for z in zones])
        counterfactual = _stage("cues", self.counterfactual, work, anatomy)
        boxes = _stage("cues", self.boxes, work, None, counterfactual=counterfactual, anatomy=anatomy)
        return {"anatomy": anatomy, "counterfactual": counterfactual, "boxes": boxes}

    # ------------------------------------------------------------------------------------------
    def __call__(self, record: StudyRecord) -> StudyGrounding:
        report = self.structure(record)
        image, work = self.load(record)
        cues = self.cues(work)
        anatomy = cues["anatomy"]
        shape = tuple(image.shape[-2:])
        reported_of = [self._reported(f, f.predicted_lesion_type or f.lesion_type) for f in report.findings]
        # every positive finding, of any kind, occupies its reported lung regions (Appendix A.6)
        occupied = list(dict.fromkeys(
            label for f, labels in zip(report.findings, reported_of) if f.presence == "positive" for label in self._lung_labels(labels)
        ))
        empty = _stage("verification", self.verify, np.zeros(tuple(work.shape[-2:]), bool), anatomy, [], (), occupied).empty
        ctr = self._ctr(anatomy)
        qc_reasons = self._cross_check(work, anatomy)

        findings = []
        base = {
            "image": work,
            "counterfactual": cues["counterfactual"],
            "anatomy": anatomy,
            "boxes": cues["boxes"].boxes,
            "box_scores": cues["boxes"].scores,
            "all_reported_locations": occupied,
        }
        for finding, reported in zip(report.findings, reported_of):
            lesion = finding.predicted_lesion_type or finding.lesion_type
            grounded, mask = [], None
            if finding.presence == "positive" and lesion in LUNG_LESIONS and reported:
                out = _stage("grounding", self.chain, {**base, "lesion_type": lesion, "reported_locations": reported})
                lesion_mask = _mask2d(out["lesion_mask"])
                grounded = list(out["grounded_locations"])
                if lesion_mask.any() and grounded:
                    mask = _resize_mask(lesion_mask, shape)
            elif finding.presence == "positive" and lesion in vocab.ORGAN_LEVEL_LESION_TYPES and vocab.HEART in anatomy:
                heart = _mask2d(anatomy[vocab.HEART])
                mask = _resize_mask(heart, shape) if heart.any() else None
            findings.append(
                _stage(
                    "grounding",
                    GroundedFinding,
                    finding.lesion_type,
                    finding.presence,
                    finding.certainty,
                    reported,
                    grounded,
                    mask,
                    predicted_lesion_type=finding.predicted_lesion_type,
                    entity=finding.entity,
                    sentence_index=finding.sentence_index,
                )
            )
        return StudyGrounding(
            study_key=record.key,
            image_path=record.image_path,
            split=record.split,
            findings=findings,
            empty_locations=empty,
            ctr=ctr,
            qc_passed=not qc_reasons,
            qc_reasons=qc_reasons,
            image_shape=shape,
            image=_to_numpy(image)[0] if self.keep_image else None,
            sentences=list(report.sentences),
            section_name=report.section_name,
            section_content=report.section_text,
        )

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _lung_labels(labels: Sequence[str]) -> list[str]:
        return [label for label in labels if label in vocab.LUNG_LABELS]

    def _reported(self, finding, lesion) -> list[str]:
        """Anatomical labels of the finding; a lung lesion reported without a location means both lungs."""
        labels = [label for label in finding.locations if label in vocab.CXAS_LABEL_IDS]
        if lesion in LUNG_LESIONS:
            labels = self._lung_labels(labels)
            if not labels and finding.presence == "positive":
                labels = [vocab.RIGHT_LUNG, vocab.LEFT_LUNG]
        return labels

    @staticmethod
    def _ctr(anatomy) -> float | None:
        from monai_ils.transforms import CardiothoracicRatio, GroundingInputError

        try:
            return float(CardiothoracicRatio()(anatomy[vocab.RIGHT_LUNG], anatomy[vocab.LEFT_LUNG], anatomy[vocab.HEART]))
        except (KeyError, GroundingInputError, ZeroDivisionError):
            return None

    def _cross_check(self, work, anatomy) -> list[str]:
        if self.cross_check is None:
            return []
        other = _stage("cues", self.cross_check_anatomy, work)
        verdict = _stage("qc", self.cross_check, anatomy, other, tuple(work.shape[-2:]))
        if verdict["passed"]:
            return []
        return [f"anatomy cross-check: the two anatomy sources disagree on {', '.join(verdict['failed'])}"]
