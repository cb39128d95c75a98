"""``rosalia``: an instruction in (OHIF's options text field or the ``instruction`` param), a mask and the
model's text answer out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

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


class RosaliaInfer(CXRInferTask):
    """ROSALIA through :class:`monai_ils.inference.RosaliaPredictor`, loaded once, on first use."""

    def __init__(self, path: str | None, limits: ImageLimits, device: str = "auto", dtype: str | None = None,
                 mode: str = "generate", max_new_tokens: int = 32, load_kwargs: dict | None = None):
        super().__init__(
            labels={"lesion": 1},
            description="Instruction-guided lesion segmentation of chest X-rays (ROSALIA): type an instruction, "
            f"e.g. '{EXAMPLE}'",
            config={"instruction": "", "mode": [mode, *[m for m in ("generate", "segment") if m != mode]]},
            limits=limits,
            path=path,
        )
        self.device, self.dtype, self.mode = device, dtype, mode
        self.max_new_tokens = max_new_tokens
        self.load_kwargs = dict(load_kwargs or {})
        self._predictor = None
        self._reason = self._check_path(path)

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
                from monai_ils.inference import RosaliaPredictor

                try:
                    self._predictor = RosaliaPredictor.from_pretrained(
                        self.path[-1], device=self.device, dtype=self.dtype, load_kwargs=self.load_kwargs,
                        mode=self.mode, max_new_tokens=self.max_new_tokens, batch_size=1, cache_size=8,
                    )
                except Exception as err:
                    logger.exception("Loading ROSALIA from %s failed", self.path[-1])
                    raise ModelUnavailable(f"Loading the 'rosalia' weights from {self.path[-1]!r} failed: {type(err).__name__}: {err}") from err
                logger.info("ROSALIA loaded from %s on %s", self.path[-1], self._predictor.device)
            return self._predictor

    def warm_up(self) -> None:
        self.predictor()

    def pre_transforms(self, data=None) -> Sequence[Callable]:
        from monai_ils.transforms import LoadCXRd, ScaleCXRIntensityd

        return [
            RequireTextd("instruction", max_length=1000, hint=f"Type an instruction, e.g. '{EXAMPLE}'"),
            *self.input_transforms(),
            LoadCXRd("image", frontal_check="flag"),
            ScaleCXRIntensityd("image"),  # the model's image path (what training reads): LoadCXR + this scaling
        ]

    def run_inferer(self, data, convert_to_batch=True, device="cuda"):
        mode = first(data.get("mode")) or self.mode
        if mode not in ("generate", "segment"):
            raise BadRequest(f"mode {mode!r} is not supported; use 'generate' (answer text and mask) or 'segment' (mask only).")
        predictor = self.predictor()
        image = data["image"]
        with self._lock:
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
