"""The per-study callable of the runner: view QC -> grounding -> QC verdict -> pairs (+ overlays).

The grounding step is injected (``record -> StudyGrounding``): our pipeline (report structuring, spatial cues,
Algorithm 1, location verification) in the bundle, precomputed findings and masks, or a test double. Each
failure is re-raised as a :class:`StageError` naming the stage, so the runner's error record says where.
"""

from __future__ import annotations

from collections.abc import Callable

from monai_ils.data.mimic_cxr import StudyRecord
from monai_ils.generation.findings import StudyGrounding
from monai_ils.generation.images import export_image, export_mode, should_export
from monai_ils.generation.overlay import OVERLAY_SIZE, OverlayCanvas
from monai_ils.generation.pairs import PairGenerator
from monai_ils.generation.qc import StudyQC
from monai_ils.generation.results import SkipStudy, StageError, StudyResult

Grounder = Callable[[StudyRecord], StudyGrounding]


class PairsProcessor:
    """``record -> StudyResult`` for :class:`~monai_ils.generation.runner.GenerationRunner`.

    Args:
        grounder: ``record -> StudyGrounding``; it may raise :class:`StageError` itself to name a finer stage
            (``load``, ``structure``, ``cues``, ``grounding``, ``verification``).
        generator: the pair generator (seed and negative options); default ``PairGenerator()``.
        qc: view filter and verdict; default ``StudyQC()`` (PA/AP only; records without a view pass only
            with ``StudyQC(require_view=False)``).
        overlays: draw one overlay (a JPEG in the dataset) per positive mask when the grounding carries the image.
        export_images: ``"auto"`` (default): write an 8-bit PNG of each image that is not already an 8-bit PNG/JPEG
            (DICOM, 16-bit PNG) into the dataset and point its pairs at it, so an OpenCV-based reader (ROSALIA's
            training code) reads it with full contrast; True: export every image; False: never (pairs point at the
            input files). The export is ``LoadCXR`` + ``ScaleCXRIntensity`` (see ``monai_ils.generation.images``).
        overlay_size: longer side of the overlays in pixels (default ``OVERLAY_SIZE``, 512; None: full size).
            The display image is computed once per study at this size and every mask is drawn on it.
        dicom_exporter: ``grounding -> {kind: path}`` (``monai_ils.dicom.DicomExporter``) writing the study's DICOM
            SEG and TID 1500 SR; its paths go into the shard line's ``info["dicom"]``. None: no DICOM output.
    """

    def __init__(self, grounder: Grounder, generator: PairGenerator | None = None, qc: StudyQC | None = None, overlays: bool = True,
                 export_images: bool | str = "auto", dicom_exporter: Callable[[StudyGrounding], dict] | None = None,
                 overlay_size: int | None = OVERLAY_SIZE):
        if not callable(grounder):
            raise TypeError(f"grounder must be callable (record -> StudyGrounding), got {type(grounder).__name__}.")
        self.grounder = grounder
        self.generator = generator or PairGenerator()
        self.qc = qc or StudyQC()
        self.overlays = bool(overlays)
        self.export_images = export_mode(export_images)
        if overlay_size is not None and int(overlay_size) < 1:
            raise ValueError(f"overlay_size must be a positive number of pixels or None (full size), got {overlay_size}.")
        self.overlay_size = None if overlay_size is None else int(overlay_size)
        self.dicom_exporter = dicom_exporter

    def __call__(self, record: StudyRecord) -> StudyResult:
        verdict = self.qc.check_view(record.view_position)
        if not verdict.passed:
            raise SkipStudy("quality control: " + "; ".join(verdict.reasons))
        try:
            grounding = self.grounder(record)
        except (StageError, SkipStudy):
            raise
        except Exception as err:
            raise StageError("grounding", f"{type(err).__name__}: {err}") from err
        if not isinstance(grounding, StudyGrounding):
            raise StageError("grounding", f"the grounder returned {type(grounding).__name__}, expected StudyGrounding.")
        if not grounding.qc_passed:
            raise SkipStudy("quality control: " + ("; ".join(grounding.qc_reasons) or "failed"))
        try:
            pairs = self.generator(grounding)
        except Exception as err:
            raise StageError("pairs", f"{type(err).__name__}: {err}") from err
        overlays = {}
        if self.overlays and pairs.masks and grounding.image is not None:
            canvas = OverlayCanvas(grounding.image, self.overlay_size)  # the display image, once per study
            for name, mask in pairs.masks.items():
                overlays[name] = canvas.draw(mask)
        info = {
            "findings": len(grounding.findings),
            "grounded": sum(1 for f in grounding.findings if f.is_grounded),
            "ctr": None if grounding.ctr is None else round(float(grounding.ctr), 4),
        }
        if self.dicom_exporter is not None:
            try:
                info["dicom"] = self.dicom_exporter(grounding)
            except Exception as err:
                raise StageError("dicom", f"{type(err).__name__}: {err}") from err
        image = None
        if should_export(self.export_images, grounding.image_path):
            try:
                image = export_image(grounding)
            except Exception as err:
                raise StageError("export", f"{type(err).__name__}: {err}") from err
        return StudyResult(samples=pairs.samples, masks=pairs.masks, overlays=overlays, info=info, image=image)
