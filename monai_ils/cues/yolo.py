"""Lesion boxes from a YOLO detector trained on VinBigData (14 classes), through ultralytics, fully offline.

The paper uses a VinBigData-competition YOLO checkpoint (Appendix A.3). Any ultralytics detection
checkpoint (``.pt`` as written by ``Model.save`` / training) with the 14 VinBigData classes in their
usual order works; its path is config key ``yolo_weights``.

Offline: before ultralytics is imported we set ``YOLO_OFFLINE=1`` (no connectivity checks),
``YOLO_CONFIG_DIR`` (default ``~/.cache/monai_ils/ultralytics`` unless already set), copy matplotlib's
DejaVuSans.ttf to ``$YOLO_CONFIG_DIR/Ultralytics/Arial.ttf`` (ultralytics downloads that font when it
draws otherwise) and turn its MLflow/hub integrations off.

Input: the image is windowed to 8 bits by its 0.5/99.5 percentiles (VinBigData's PNGs were made by
min-max scaling the DICOM), repeated to 3 channels; ultralytics letterboxes it to ``imgsz`` and maps
the boxes back to the image's pixels. Aortic enlargement, other lesion and pneumothorax are dropped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_ils import vocab
from monai_ils.cues.base import BoxBackend, Boxes, LazyWeights, check_weights_path, register_backend, to_numpy_image

WEIGHTS_HELP = "an ultralytics YOLO detection checkpoint (.pt) trained on the 14 VinBigData classes (e.g. a VinBigData Chest X-ray Abnormalities Detection solution)"


def prepare_offline_ultralytics(config_dir: str | os.PathLike | None = None) -> Path:
    """Make ultralytics work without a network; returns the folder that holds its settings and font.

    ultralytics reads ``YOLO_CONFIG_DIR`` once, when first imported: ``config_dir`` only takes effect
    before that, afterwards the font is placed in the folder ultralytics already uses.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    if config_dir is not None:
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path.home() / ".cache" / "monai_ils" / "ultralytics"))
    import ultralytics.utils as uu  # noqa: E402  (imported after the environment is set)

    _undo_pil_open_patch()
    folder = Path(uu.USER_CONFIG_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    font = folder / "Arial.ttf"
    if not font.exists():
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        shutil.copyfile(source, font)
    try:
        uu.SETTINGS.update({"mlflow": False, "hub": False, "sync": False})
    except (KeyError, AttributeError, TypeError):  # settings schema of another ultralytics version
        uu.SETTINGS.update({"mlflow": False, "sync": False})
    return folder


def _undo_pil_open_patch() -> None:
    """Give PIL back its own ``Image.open``.

    Importing ultralytics replaces ``PIL.Image.open`` process-wide with a wrapper that, on any
    unreadable file, tries to install and import ``pi_heif``: offline that turns a clear
    "cannot identify image file" into ModuleNotFoundError in every image reader of the process.
    We never feed HEIF files to the detector, so the original is restored.
    """
    from PIL import Image
    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is not original:
        Image.open = original


def to_uint8_rgb(array: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(array, [0.5, 99.5])
    grey = np.clip((array - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


@register_backend("boxes", "yolo")
class YOLOBoxes(LazyWeights, BoxBackend):
    """VinBigData YOLO detector (see module doc). The checkpoint path is checked here; ultralytics is imported,
    made offline and the detector (``model``) loaded on first use (:class:`~monai_ils.cues.base.LazyWeights`),
    when its class count is checked too.

    Args:
        weights: the checkpoint path (config key ``yolo_weights``).
        conf: lowest confidence ultralytics keeps (Table 7's thresholds are applied later, by grounding;
            edema's is 0.01, so keep this at or below it).
        iou: NMS IoU threshold. imgsz: inference size. device: "cpu", "cuda:0", ...
        config_dir: where ultralytics keeps settings and its font (default see module doc).
    """

    name = "yolo"

    def __init__(self, weights: str | os.PathLike | None = None, conf: float = 0.01, iou: float = 0.5, imgsz: int = 1024,
                 device: str = "cpu", config_dir: str | os.PathLike | None = None, batch_size: int = 8):
        self.weights = check_weights_path(weights, "yolo_weights", WEIGHTS_HELP)
        self.config_dir = None if config_dir is None else str(config_dir)
        self.conf, self.iou, self.imgsz, self.device, self.batch_size = float(conf), float(iou), int(imgsz), device, int(batch_size)

    lazy_attributes = ("model",)

    def _load(self) -> dict[str, Any]:
        prepare_offline_ultralytics(self.config_dir)
        from ultralytics import YOLO

        model = YOLO(self.weights, task="detect")
        names = model.names
        if len(names) != len(vocab.VINBIG_CLASSES):
            raise ValueError(f"{self.weights}: the detector has {len(names)} classes; the VinBigData model has {len(vocab.VINBIG_CLASSES)}.")
        return {"model": model}

    def _predict(self, arrays: Sequence[np.ndarray]) -> list[Boxes]:
        results = self.model.predict([to_uint8_rgb(a) for a in arrays], conf=self.conf, iou=self.iou, imgsz=self.imgsz,
                                     device=self.device, verbose=False, save=False)
        out = []
        for result in results:
            b = result.boxes
            boxes = Boxes(b.xyxy.cpu().numpy(), b.conf.cpu().numpy().clip(0, 1), b.cls.cpu().numpy().astype(np.int64))
            out.append(boxes.drop_excluded())
        return out

    def __call__(self, image: Any, max_intensity: float | None = None, **_: Any) -> Boxes:
        return self._predict([to_numpy_image(image)])[0]

    def batch(self, images, max_intensities=None, cues=None) -> list[Boxes]:
        arrays = [to_numpy_image(i) for i in images]
        out: list[Boxes] = []
        for start in range(0, len(arrays), self.batch_size):
            out.extend(self._predict(arrays[start : start + self.batch_size]))
        return out
