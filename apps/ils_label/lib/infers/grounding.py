"""``grounding``: the dataset-generation grounding on one image + report, for review in OHIF.

The report (``report`` param) is structured, the spatial cues run, and every positive finding is grounded as
in MIMIC-ILS generation (Algorithm 1, refinement, location verification). The label map has one label per
lesion type (``vocab.LESION_TYPES`` order, ids from 1), so a reviewer sees each generated mask as its own
segment in OHIF and can accept or correct it; the JSON result lists every finding, grounded or not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from monai_ils import vocab
from lib.configs.common import ImageLimits
from lib.errors import BadRequest, RequestError, Unprocessable
from lib.infers.base import CXRInferTask
from lib.transforms import LabelMapd, RequireTextd

logger = logging.getLogger(__name__)

LESION_LABELS = dict(vocab.LESION_LABEL_IDS)
"""Label id of each lesion type in the grounding label map."""

EXAMPLE = "FINDINGS: Right lower lobe consolidation. No pleural effusion."


# apps/ils_label/lib/infers/grounding.py -> the repository's bundles/ils_generation/configs/generation.json
BUNDLE_CONFIG = Path(__file__).resolve().parents[4] / "bundles" / "ils_generation" / "configs" / "generation.json"
SERVING_OVERRIDES = {"keep_image": False, "run_thresholds": "@thresholds"}
"""What the server sets over the bundle: no image kept on the result, and the bundle's ``thresholds`` (its
``sample_thresholds`` are for the bundled sample study only); app conf ``grounding#<id>`` overrides win."""


def read_generation_bundle(config_files: Sequence[str | Path], overrides: dict):
    """``ConfigParser`` of the merged ``config_files`` with ``overrides`` (bundle ids -> values) applied."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])
    for key in ("pipeline", "study_transforms", "finding_transforms"):
        if key not in parser:
            raise ValueError(f"Bundle config {', '.join(Path(f).name for f in config_files)} has no '{key}' node.")
    parser.update(overrides)
    return parser


class GroundingInfer(CXRInferTask):
    """The generation bundle's ``pipeline`` node (``GroundingPipeline``) behind MONAI Label; built once, on first use.

    ``bundle_configs``: generation bundle config files merged in order (default the repository's generation.json);
    ``overrides``: bundle ids and values set over them (after :data:`SERVING_OVERRIDES`); the app's pixel limit
    becomes the pipeline's ``max_pixels``.
    """

    def __init__(self, limits: ImageLimits, bundle_configs: Sequence[str | Path] | None = None, overrides: dict | None = None):
        super().__init__(
            labels=LESION_LABELS,
            description="Review generated lesion masks: grounds the findings of a radiology report (the 'report' "
            "option) on the image, one label per lesion type.",
            config={"report": "", "pairs": True},
            limits=limits,
        )
        self.bundle_configs = [Path(f) for f in bundle_configs] if bundle_configs else [BUNDLE_CONFIG]
        self.overrides = {**SERVING_OVERRIDES, "max_pixels": int(limits.max_pixels), **dict(overrides or {})}
        self._pipeline = None

    def pipeline(self):
        with self._lock:
            if self._pipeline is None:
                names = ", ".join(f.name for f in self.bundle_configs)
                try:
                    parser = read_generation_bundle(self.bundle_configs, self.overrides)
                    self._pipeline = parser.get_parsed_content("pipeline")
                except Exception as err:
                    logger.exception("Building the grounding pipeline failed")
                    raise RequestError(f"The grounding pipeline could not be built from the bundle config {names}: "
                                       f"{type(err).__name__}: {err}", 503) from err
            return self._pipeline

    def warm_up(self) -> None:
        self.pipeline()

    def pre_transforms(self, data=None) -> Sequence[Callable]:
        return [
            RequireTextd("report", max_length=20000, hint=f"Paste the report text, e.g. '{EXAMPLE}'"),
            *self.input_transforms(),
        ]

    def run_inferer(self, data, convert_to_batch=True, device="cuda"):
        from monai_ils.data.mimic_cxr import StudyRecord
        from monai_ils.generation.results import SkipStudy, StageError

        pipeline = self.pipeline()
        path = data["image"]
        # the datastore id of the request (a DICOMweb cache file is named "1.dcm" or so), else the file's name
        image_id = str(data.get("image_id") or Path(path).name.split(".")[0])
        record = StudyRecord(key=image_id, image_path=path, report_text=data["report"])
        try:
            with self._lock:
                grounding = pipeline(record)
        except SkipStudy as err:
            raise Unprocessable(f"Grounding skipped this study: {err}") from err
        except StageError as err:
            if err.stage == "load":
                raise BadRequest(f"Image {Path(path).name} could not be loaded: {err}") from err
            if err.stage in ("report", "structure", "cues"):  # the inputs do not fit the configured backends
                raise Unprocessable(f"Grounding failed at stage '{err.stage}': {err}") from err
            raise RequestError(f"Grounding failed at stage '{err.stage}': {err}", 500) from err

        masks, findings = {}, []
        for finding in grounding.findings:
            lesion = finding.predicted_lesion_type or finding.lesion_type
            entry = {
                "lesion": lesion,
                "reported_lesion": finding.lesion_type,
                "entity": finding.entity,
                "presence": finding.presence,
                "certainty": finding.certainty,
                "reported_location": list(finding.reported_location),
                "grounded_location": list(finding.grounded_location),
                "label": None,
                "pixels": 0,
                "sentence_index": finding.sentence_index,
            }
            if finding.mask is not None and finding.mask.any() and lesion in LESION_LABELS:
                label = LESION_LABELS[lesion]
                masks[label] = finding.mask if label not in masks else (masks[label] | finding.mask)
                entry.update(label=label, pixels=int(finding.mask.sum()))
            findings.append(entry)
        rows, cols = grounding.image_shape
        if not masks:
            masks = {1: np.zeros((rows, cols), dtype=bool)}  # an empty label map of the image's size
        result = {
            "findings": findings,
            "labels_present": sorted(name for name, i in LESION_LABELS.items() if i in masks and masks[i].any()),
            "empty_locations": list(grounding.empty_locations),
            "ctr": None if grounding.ctr is None else round(float(grounding.ctr), 4),
            "qc_passed": bool(grounding.qc_passed),
            "qc_reasons": list(grounding.qc_reasons),
            "image": {"rows": int(rows), "columns": int(cols)},
            "sentences": list(grounding.sentences or []),  # what sentence_index counts into (the SR's comments)
        }
        if str(data.get("pairs", True)).lower() not in ("false", "0", "no"):
            result["pairs"] = self._pairs(grounding)
        data["pred"] = masks
        data["result"] = result
        return data

    @staticmethod
    def _pairs(grounding) -> list[dict]:
        """The instruction-answer pairs generation would write for this study (what a reviewer signs off)."""
        from monai_ils.generation import generate_pairs

        try:
            pairs = generate_pairs(grounding)
        except Exception as err:  # review still shows the masks
            logger.warning("Pair generation failed: %s", err)
            return []
        return [{"instruction": s.instruction, "answer": s.answer, "positive": bool(s.positive)} for s in pairs.samples]

    def post_transforms(self, data=None) -> Sequence[Callable]:
        return [LabelMapd("pred")]
