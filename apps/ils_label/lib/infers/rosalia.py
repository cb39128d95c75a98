"""``rosalia``: an instruction in (OHIF's options text field or the ``instruction`` param), a mask and the
model's text answer out.

The model, its pre-processing and its post-processing come from the bundle's ``inference.json``
(``network_def``, ``preprocessing``, ``postprocessing``, ``predictor``), parsed with
``monai.bundle.ConfigParser`` as MONAI Label's own bundle tasks do; app conf keys only override bundle
values (weights folder, device, dtype, mode, ...), so what the bundle defines is what the server runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lib.configs.common import ImageLimits
from lib.errors import BadRequest, ModelUnavailable
from lib.infers.base import CXRInferTask, first
from lib.transforms import LabelMapd, RequireTextd

logger = logging.getLogger(__name__)

EXAMPLE = "Segment the effusion in the left lung base."
CONFIGURE = (
    "Start the server with '--conf rosalia_path /path/to/checkpoint' (a ROSALIA, LISA-layout or Hugging Face "
    "LLaVA folder; for the published LISA-layout weights also '--conf rosalia_vision_tower /path/to/clip-vit-large-patch14')."
)


# apps/ils_label/lib/infers/rosalia.py -> the repository's bundles/rosalia/configs/inference.json
BUNDLE_CONFIG = Path(__file__).resolve().parents[4] / "bundles" / "rosalia" / "configs" / "inference.json"
# what the server sets whatever the bundle says: one request at a time, a few images cached
SERVING_OVERRIDES = {"batch_size": 1, "cache_size": 8}


def read_bundle(config_file, overrides: dict[str, Any]):
    """``ConfigParser`` of ``config_file`` with ``overrides`` (bundle ids -> values) applied."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config_file))
    for key in ("network_def", "preprocessing", "postprocessing", "predictor"):
        if key not in parser:
            raise ValueError(f"Bundle config {Path(config_file).name} has no '{key}' section.")
    parser.update(overrides)
    return parser


class RosaliaInfer(CXRInferTask):
    """ROSALIA built from the bundle's ``inference.json``, loaded once, on first use.

    ``overrides`` are bundle ids and values (``{"device": "cpu", "mask_threshold": 0.5}``) set over the
    bundle's; ``path`` overrides ``checkpoint_dir``. The app turns on the frontal-view flag of the
    bundle's ``LoadCXRd`` so that non-frontal views are reported.
    """

    def __init__(self, path: str | None, limits: ImageLimits, overrides: dict[str, Any] | None = None,
                 bundle_config: str | Path | None = None):
        self.bundle_config = Path(bundle_config) if bundle_config else BUNDLE_CONFIG
        overrides = {**SERVING_OVERRIDES, **(overrides or {}), "preprocessing#transforms#0#frontal_check": "flag"}
        if path:
            overrides["checkpoint_dir"] = str(path)
        self._parser, reason = None, None
        try:
            self._parser = read_bundle(self.bundle_config, overrides)
        except Exception as err:  # a broken bundle file: the task is listed as unavailable, with the cause
            reason = f"The 'rosalia' bundle config {self.bundle_config.name} cannot be read: {type(err).__name__}: {err}"
        mode = self._parser.get("mode", "generate") if self._parser else "generate"
        super().__init__(
            labels={"lesion": 1},
            description="Instruction-guided lesion segmentation of chest X-rays (ROSALIA): type an instruction, "
            f"e.g. '{EXAMPLE}'",
            config={"instruction": "", "mode": [mode, *[m for m in ("generate", "segment") if m != mode]]},
            limits=limits,
            path=path,
        )
        self.mode = mode
        self._predictor = None
        self._preprocessing = None
        self._reason = reason or self._check_path(path)

    @staticmethod
    def _check_path(path: str | None) -> str | None:
        if not path:
            return f"The 'rosalia' model has no weights configured. {CONFIGURE}"
        folder = Path(path)
        if not folder.is_dir():
            return f"The 'rosalia' weights folder {path!r} does not exist. {CONFIGURE}"
        from monai_ils.models import CheckpointError, detect_layout

        try:
            detect_layout(folder)
        except (CheckpointError, ValueError, OSError) as err:
            return f"The 'rosalia' weights folder {path!r} is not a checkpoint: {err} {CONFIGURE}"
        return None

    def unavailable_reason(self) -> str | None:
        return self._reason

    def info(self):
        info = super().info()
        info["example_instruction"] = EXAMPLE
        return info

    def predictor(self):
        """The loaded predictor; a loading failure is answered with a 503 naming the folder and the cause."""
        if self._reason:
            raise ModelUnavailable(self._reason)
        with self._lock:
            if self._predictor is None:
                try:
                    self._predictor = self._parser.get_parsed_content("predictor")
                except Exception as err:
                    logger.exception("Loading ROSALIA from %s failed", self.path[-1])
                    raise ModelUnavailable(f"Loading the 'rosalia' weights from {self.path[-1]!r} failed: {type(err).__name__}: {err}") from err
                logger.info("ROSALIA loaded from %s on %s", self.path[-1], self._predictor.device)
            return self._predictor

    def warm_up(self) -> None:
        self.predictor()

    def preprocessing(self):
        """The bundle's ``preprocessing`` (LoadCXRd + ScaleCXRIntensityd: the image path training reads)."""
        if self._parser is None:
            raise ModelUnavailable(self._reason)
        with self._lock:
            if self._preprocessing is None:
                self._preprocessing = self._parser.get_parsed_content("preprocessing")
            return self._preprocessing

    def pre_transforms(self, data=None) -> Sequence[Callable]:
        return [
            RequireTextd("instruction", max_length=1000, hint=f"Type an instruction, e.g. '{EXAMPLE}'"),
            *self.input_transforms(),
            self.preprocessing(),
        ]

    def run_inferer(self, data, convert_to_batch=True, device="cuda"):
        mode = first(data.get("mode")) or self.mode
        if mode not in ("generate", "segment"):
            raise BadRequest(f"mode {mode!r} is not supported; use 'generate' (answer text and mask) or 'segment' (mask only).")
        predictor = self.predictor()
        image = data["image"]
        with self._lock:  # the image is preprocessed already; the predictor applies the bundle's postprocessing
            prediction = predictor.predict(image[0].numpy(), data["instruction"], mode=mode)
        meta = image.meta
        result = {
            "instruction": data["instruction"],
            "answer": prediction.text,
            "mode": mode,
            "masks": int(prediction.n_seg),
            "empty": bool(prediction.is_empty),
            "empty_reason": prediction.empty_reason,  # "no_seg_generated" / "no_foreground" / None
            "foreground_pixels": int(prediction.mask.sum()),
            "image": {
                "rows": int(image.shape[-2]),
                "columns": int(image.shape[-1]),
                "photometric_interpretation": meta.get("photometric_interpretation"),
                "view_position": meta.get("view_position"),
            },
        }
        if meta.get("is_frontal") is False:
            result["warning"] = f"View position {meta.get('view_position')!r} is not frontal; ROSALIA was trained on PA/AP views."
        data["pred"] = prediction.mask
        data["result"] = result
        return data

    def post_transforms(self, data=None) -> Sequence[Callable]:
        return [LabelMapd("pred")]
