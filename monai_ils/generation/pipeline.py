"""The per-study grounding pipeline: report + image -> :class:`StudyGrounding` (paper Sec. 3.1).

Two MONAI ``Compose`` chains do the image work, so a bundle config spells every step and parameter out
(``study_transforms`` and ``finding_transforms`` of ``bundles/ils_generation/configs/generation.json``):

* ``study_transforms``, once per study, on ``{"image": path, "view_position", "study_id", "image_id"}``:
  LoadCXRd -> WorkingResized (the working copy, longest side ``max_size``) -> anatomy, counterfactual and
  lesion boxes (cue transforms) -> optional Appendix D.2 cross-check -> the cardiothoracic ratio;
* ``finding_transforms``, once per positive lung finding, on the study's dictionary plus ``lesion_type``,
  ``reported_locations`` and ``all_reported_locations``: anomaly map -> Algorithm 1 box filter ->
  intersecting components -> refinement -> location verification.

What stays Python is here: report structuring (a study without a usable section is skipped), the pixel limit
read from the header, the per-finding loop, the organ-level rule (cardiomegaly -> the heart mask), the study's
empty locations and building the StudyGrounding. Lesion masks are brought back to the image's own size (the
thresholds are ratios, so they do not depend on the working size), so a mask PNG always matches its image.
:func:`default_study_transforms` and :func:`default_finding_transforms` build the bundle's default chains in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from monai_ils import vocab
from monai_ils.data.mimic_cxr import StudyRecord
from monai_ils.generation.findings import GroundedFinding, StudyGrounding
from monai_ils.generation.results import SkipStudy, StageError
from monai_ils.generation.study_transforms import LOBE_ZONE_APPROXIMATION, ORIGINAL_IMAGE_KEY  # noqa: F401 - re-exported
from monai_ils.transforms.keys import GroundingKeys as K

LUNG_LESIONS = tuple(t for t in vocab.LESION_TYPES if t not in vocab.ORGAN_LEVEL_LESION_TYPES)

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


def _threshold_table(thresholds) -> vocab.ThresholdTable:
    if thresholds is None or isinstance(thresholds, vocab.ThresholdTable):
        return thresholds or vocab.DEFAULT_THRESHOLDS
    if isinstance(thresholds, Mapping):
        return vocab.ThresholdTable.from_dict(thresholds)
    raise TypeError(f"thresholds must be a ThresholdTable or a mapping, got {type(thresholds).__name__}.")


def default_study_transforms(
    anatomy="classical",
    counterfactual="classical",
    boxes="classical",
    anatomy_kwargs: Mapping | None = None,
    counterfactual_kwargs: Mapping | None = None,
    boxes_kwargs: Mapping | None = None,
    max_size: int | None = 1024,
    cross_check_anatomy=None,
    cross_check_kwargs: Mapping | None = None,
    cross_check_tolerance: float = 0.05,
):
    """The bundle's default per-study chain (``study_transforms`` of generation.json) as a MONAI ``Compose``.

    ``anatomy``, ``counterfactual``, ``boxes``: cue backend names (``"classical"``, ``"cxas"``, ``"radedit"``,
    ``"yolo"``, precomputed ...) or backend objects, with ``*_kwargs`` for their constructors (weights paths).
    ``max_size``: longest side of the working copy (None: full size). ``cross_check_anatomy``: a second anatomy
    backend for the Appendix D.2 cross-check (None: not checked).
    """
    from monai.transforms import Compose

    from monai_ils.cues.transforms import AnatomyMasksd, Counterfactuald, CrossCheckAnatomyd, DetectLesionBoxesd
    from monai_ils.generation.study_transforms import BinaryAnatomyd, LobesFromZonesd, StudyCardiothoracicRatiod, WorkingResized
    from monai_ils.transforms import LoadCXRd

    transforms = [
        LoadCXRd(keys=K.IMAGE, frontal_check="flag"),
        WorkingResized(keys=K.IMAGE, max_size=max_size, mode="area", original_key=ORIGINAL_IMAGE_KEY),
        AnatomyMasksd(keys=K.IMAGE, backend=anatomy, anatomy_key=K.ANATOMY, on_error="raise", **dict(anatomy_kwargs or {})),
        BinaryAnatomyd(keys=K.ANATOMY),
        LobesFromZonesd(keys=K.ANATOMY),
        Counterfactuald(keys=K.IMAGE, backend=counterfactual, counterfactual_key=K.COUNTERFACTUAL, anatomy_key=K.ANATOMY,
                        on_error="raise", **dict(counterfactual_kwargs or {})),
        DetectLesionBoxesd(keys=K.IMAGE, backend=boxes, on_error="raise", **dict(boxes_kwargs or {})),
    ]
    if cross_check_anatomy is not None:
        transforms += [
            AnatomyMasksd(keys=K.IMAGE, backend=cross_check_anatomy, anatomy_key=K.ANATOMY_REFERENCE, on_error="raise",
                          **dict(cross_check_kwargs or {})),
            CrossCheckAnatomyd(keys=(K.ANATOMY, K.ANATOMY_REFERENCE), tolerance=cross_check_tolerance, qc_key=K.ANATOMY_QC),
        ]
    transforms.append(StudyCardiothoracicRatiod(keys=K.ANATOMY, output_key=K.CTR))
    return Compose(transforms)


def default_finding_transforms(thresholds=None, refine: Mapping | None = None):
    """The bundle's default per-finding chain (``finding_transforms`` of generation.json) as a MONAI ``Compose``.

    ``thresholds``: Table 7 overrides (a ``ThresholdTable`` or a mapping for ``ThresholdTable.from_dict``);
    ``refine``: keyword arguments of ``RefineLesionMaskd`` (``noise_radius``, ``expand_iterations`` ...).
    """
    from monai.transforms import Compose

    from monai_ils.transforms import AnomalyMapd, FilterLesionBoxesd, IntersectingComponentsd, RefineLesionMaskd, VerifyLocationsd

    table = _threshold_table(thresholds)
    return Compose([
        AnomalyMapd(keys=K.IMAGE, thresholds=table),
        FilterLesionBoxesd(keys=K.BOXES, thresholds=table),
        IntersectingComponentsd(keys=K.ANOMALY),
        RefineLesionMaskd(keys=K.COMPONENTS, **dict(refine or {})),
        VerifyLocationsd(keys=K.LESION_MASK),
    ])


def study_stage(transform) -> str:
    """The stage a failure of this study transform is recorded under: ``load``, ``cues``, ``qc``, or ``transform <Name>``."""
    from monai.transforms import Resize, Resized

    from monai_ils.cues.transforms import AnatomyMasksd, Counterfactuald, CrossCheckAnatomyd, DetectLesionBoxesd
    from monai_ils.generation import study_transforms as st
    from monai_ils.transforms import CardiothoracicRatiod, LoadCXR, LoadCXRd

    if isinstance(transform, (LoadCXRd, LoadCXR, Resized, Resize)):  # WorkingResized is a Resized
        return "load"
    if isinstance(transform, CrossCheckAnatomyd):
        return "qc"
    if isinstance(transform, (AnatomyMasksd, Counterfactuald, DetectLesionBoxesd, CardiothoracicRatiod, st.BinaryAnatomyd,
                              st.LobesFromZonesd, st.MergeAnatomyd)):
        return "cues"
    return f"transform {type(transform).__name__}"


def _root_cause(err: BaseException) -> BaseException:
    """The transform's own exception under MONAI's ``RuntimeError("applying transform ...")`` wrappers."""
    while isinstance(err, RuntimeError) and str(err).startswith("applying transform") and err.__cause__ is not None:
        err = err.__cause__
    return err


def _as_compose(chain, name: str):
    from monai.transforms import Compose

    if isinstance(chain, Compose):
        return chain
    if isinstance(chain, Sequence) and not isinstance(chain, str):
        return Compose(list(chain))
    if callable(chain):
        return Compose([chain])
    raise TypeError(f"{name} must be a MONAI Compose (or a list of transforms), got {type(chain).__name__}.")


class GroundingPipeline:
    """``StudyRecord -> StudyGrounding``: the report structurer plus the two transform chains.

    Args:
        structurer: an object with ``structure(section_text, section_name) -> StructuredReport`` (the rule-based
            or an LLM structurer of ``monai_ils.report``); default the shared rule-based one.
        study_transforms: per-study ``Compose`` (default :func:`default_study_transforms`): from
            ``{"image": path, "view_position", "study_id", "image_id"}`` it must leave the working image under
            ``image``, the anatomy dict, counterfactual and boxes under the ``GroundingKeys`` names; optionally
            ``original_image`` (the full-size image), ``ctr`` and ``anatomy_qc`` (a cross-check verdict).
        finding_transforms: per-finding ``Compose`` (default :func:`default_finding_transforms`): it must write
            ``lesion_mask`` and ``grounded_locations``.
        keep_image: put the image on the StudyGrounding so the processor can draw overlays.
        max_pixels: refuse (an error record of stage ``load``) an image with more pixels than this, read from
            its header before it is decoded; None: no limit. The default is the MONAI Label app's.

    A failure is raised as a :class:`StageError` naming the stage: ``report``/``structure``, ``load`` (loading and the
    working resize), ``cues``, ``qc`` (the cross-check), ``transform <Name>`` (a transform of yours), ``grounding``.
    """

    def __init__(self, structurer=None, study_transforms=None, finding_transforms=None, keep_image: bool = True,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        from monai_ils.transforms import VerifyLocations

        if structurer is None:
            from monai_ils.report import default_structurer

            structurer = default_structurer()
        if not hasattr(structurer, "structure"):
            raise TypeError(f"structurer must have structure(section_text, section_name), got {type(structurer).__name__}.")
        self.structurer = structurer
        self.study_transforms = _as_compose(default_study_transforms() if study_transforms is None else study_transforms, "study_transforms")
        self.finding_transforms = _as_compose(default_finding_transforms() if finding_transforms is None else finding_transforms,
                                              "finding_transforms")
        self.keep_image = bool(keep_image)
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self.verify = VerifyLocations()

    # ------------------------------------------------------------------------------------------
    def structure(self, record: StudyRecord):
        """Report -> StructuredReport; a study without a usable section is skipped (Appendix A.1)."""
        from monai_ils.report import structure_report

        text = _stage("report", record.read_report)
        report = _stage("structure", structure_report, text, self.structurer)
        if report.skipped_reason is not None:
            raise SkipStudy(f"report: {report.skipped_reason} ({record.report_path or 'inline text'})")
        return report

    def study(self, record: StudyRecord) -> dict:
        """Run ``study_transforms`` one step at a time (so a failure names its stage); a view flagged as not
        frontal by the loader skips the study before any cue runs."""
        from monai.data import MetaTensor

        if self.max_pixels is not None:
            _stage("load", check_pixel_limit, record.image_path, self.max_pixels)
        data = {K.IMAGE: record.image_path, "view_position": record.view_position, "study_id": record.study_id,
                "image_id": record.dicom_id}
        chain, view_checked = self.study_transforms, False
        for index, transform in enumerate(chain.transforms):
            try:
                data = chain(data, start=index, end=index + 1)
            except Exception as err:
                cause = _root_cause(err)
                if isinstance(cause, (StageError, SkipStudy)):
                    raise cause from err
                raise StageError(study_stage(transform), f"{type(cause).__name__}: {cause}") from cause
            image = data.get(K.IMAGE) if isinstance(data, Mapping) else None
            if not view_checked and isinstance(image, MetaTensor):
                view_checked = True
                if image.meta.get("is_frontal") is False:
                    raise SkipStudy(f"quality control: view position {image.meta.get('view_position')!r} is not frontal")
        if not isinstance(data, Mapping):
            raise StageError("cues", f"study_transforms returned {type(data).__name__}, expected a dictionary.")
        if data.get(K.CUE_ERRORS):
            raise StageError("cues", "; ".join(f"{e['cue']} backend {e['backend']}: {e['error']}" for e in data[K.CUE_ERRORS]))
        if not isinstance(data.get(K.IMAGE), MetaTensor) or K.ANATOMY not in data:
            raise StageError("cues", f"study_transforms must leave a loaded image (MetaTensor) under {K.IMAGE!r} and the anatomy "
                                     f"dict under {K.ANATOMY!r}; the study dictionary has {sorted(map(str, data))}.")
        return dict(data)

    # ------------------------------------------------------------------------------------------
    def __call__(self, record: StudyRecord) -> StudyGrounding:
        report = self.structure(record)
        study = self.study(record)
        work = study[K.IMAGE]
        image = study.get(ORIGINAL_IMAGE_KEY, work)
        anatomy = study[K.ANATOMY]
        shape = tuple(image.shape[-2:])
        reported_of = [self._reported(f, f.predicted_lesion_type or f.lesion_type) for f in report.findings]
        # every positive finding, of any kind, occupies its reported lung regions (Appendix A.6)
        occupied = list(dict.fromkeys(
            label for f, labels in zip(report.findings, reported_of) if f.presence == "positive" for label in self._lung_labels(labels)
        ))
        empty = _stage("verification", self.verify, np.zeros(tuple(work.shape[-2:]), bool), anatomy, [], (), occupied).empty
        ctr = study.get(K.CTR)
        verdict = study.get(K.ANATOMY_QC)
        qc_reasons = [] if verdict is None or verdict.get("passed") else [
            f"anatomy cross-check: the two anatomy sources disagree on {', '.join(verdict.get('failed') or ['their extents'])}"
        ]

        findings = []
        base = {key: value for key, value in study.items() if key != ORIGINAL_IMAGE_KEY}
        base[K.ALL_REPORTED_LOCATIONS] = occupied
        for finding, reported in zip(report.findings, reported_of):
            lesion = finding.predicted_lesion_type or finding.lesion_type
            grounded, mask = [], None
            if finding.presence == "positive" and lesion in LUNG_LESIONS and reported:
                out = self._ground({**base, K.LESION_TYPE: lesion, K.REPORTED_LOCATIONS: reported})
                lesion_mask = _mask2d(out[K.LESION_MASK])
                grounded = list(out[K.GROUNDED_LOCATIONS])
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
            ctr=None if ctr is None else float(ctr),
            qc_passed=not qc_reasons,
            qc_reasons=qc_reasons,
            image_shape=shape,
            image=_to_numpy(image)[0] if self.keep_image else None,
            sentences=list(report.sentences),
            section_name=report.section_name,
            section_content=report.section_text,
        )

    def _ground(self, data: dict) -> Mapping:
        try:
            out = self.finding_transforms(data)
        except Exception as err:
            cause = _root_cause(err)
            if isinstance(cause, (StageError, SkipStudy)):
                raise cause from err
            raise StageError("grounding", f"{type(cause).__name__}: {cause}") from cause
        missing = [key for key in (K.LESION_MASK, K.GROUNDED_LOCATIONS) if key not in out]
        if missing:
            raise StageError("grounding", f"finding_transforms wrote no {missing} (have {sorted(map(str, out))}).")
        return out

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
