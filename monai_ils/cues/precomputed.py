"""Cues computed elsewhere (a GPU cluster, a published dataset) and read from disk, so grounding runs here.

Every backend finds the study by the image's ``image_id`` metadata (set by ``LoadCXR``: the file stem).

* :class:`FolderCounterfactual`: ``{root}/{image_id}.npy`` (image units, exact) or ``.png/.jpg/.dcm``
  (loaded with ``LoadCXR`` and rescaled from that file's I_max to the image's I_max).
* :class:`CSVBoxes`: a CSV with ``image_id, x_min, y_min, x_max, y_max`` and optional ``score``
  (default 1.0) and ``class_id`` (default 7, lung opacity) or ``class_name`` (VinBigData names), in
  pixel coordinates of the image as loaded.
* :class:`PNGFolderAnatomy`: ``{root}/{image_id}/{label}.png`` (label names from the vocabulary,
  non-zero = inside).
* :class:`CheXmaskAnatomy`: a CheXmask table (``.csv``/``.csv.gz``), indexed once.

Masks or counterfactuals whose size differs from the image are resized to it (nearest / bilinear).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from monai_ils import vocab
from monai_ils.cues import chexmask
from monai_ils.cues.base import (
    AnatomyBackend,
    BoxBackend,
    Boxes,
    CounterfactualBackend,
    CueError,
    finish_masks,
    max_intensity_of,
    register_backend,
    to_numpy_image,
)


def image_id_of(image: Any) -> str:
    meta = getattr(image, "meta", None) or {}
    image_id = meta.get("image_id")
    if not image_id:
        raise CueError("precomputed cue: the image has no 'image_id' metadata; load it with monai_ils.transforms.LoadCXR.")
    return str(image_id)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == tuple(shape):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _existing_dir(root: str | Path, config_key: str) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"Config key '{config_key}' points to {str(path)!r}, which is not a folder.")
    return path


@register_backend("counterfactual", "folder")
class FolderCounterfactual(CounterfactualBackend):
    """Counterfactual images from a folder (see module doc). ``root`` is config key ``counterfactual_dir``."""

    suffixes = (".npy", ".png", ".dcm", ".jpg", ".jpeg", ".tif", ".tiff")

    def __init__(self, root: str | Path):
        self.root = _existing_dir(root, "counterfactual_dir")

    def __call__(self, image: Any, region: np.ndarray | None = None, max_intensity: float | None = None) -> np.ndarray:
        array = to_numpy_image(image)
        image_id = image_id_of(image)
        for suffix in self.suffixes:
            path = self.root / f"{image_id}{suffix}"
            if path.is_file():
                break
        else:
            raise CueError(f"no counterfactual for image {image_id!r} in {self.root} (looked for {', '.join(self.suffixes)}).")
        if suffix == ".npy":
            x_hat = to_numpy_image(np.load(path), f"counterfactual {path}")
        else:
            from monai_ils.transforms import LoadCXR

            loaded = LoadCXR(frontal_check="ignore")(path)
            x_hat = to_numpy_image(loaded, f"counterfactual {path}") * (max_intensity_of(image, max_intensity) / max_intensity_of(loaded))
        if x_hat.shape != array.shape:
            x_hat = cv2.resize(x_hat, (array.shape[1], array.shape[0]), interpolation=cv2.INTER_LINEAR)
        return x_hat[None].astype(np.float32)


@register_backend("boxes", "csv")
class CSVBoxes(BoxBackend):
    """Boxes from a CSV (see module doc); read once. ``path`` is config key ``boxes_csv``."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Config key 'boxes_csv' points to {str(path)!r}, which does not exist.")
        self.rows: dict[str, list[tuple[list[float], float, int]]] = {}
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            needed = {"image_id", "x_min", "y_min", "x_max", "y_max"}
            if not needed <= set(reader.fieldnames or []):
                raise ValueError(f"{path}: box CSV needs columns {sorted(needed)}, has {reader.fieldnames}.")
            for line, row in enumerate(reader, start=2):
                if not str(row["x_min"]).strip():  # VinBigData writes "No finding" rows without a box
                    self.rows.setdefault(row["image_id"], [])
                    continue
                try:
                    box = [float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max")]
                    score = float(row.get("score") or 1.0)
                    if row.get("class_id") not in (None, ""):
                        cls = int(float(row["class_id"]))
                    elif row.get("class_name"):
                        cls = vocab.VINBIG_CLASSES.index(row["class_name"])
                    else:
                        cls = vocab.VINBIG_CLASSES.index("lung opacity")
                except ValueError as error:
                    raise ValueError(f"{path}, line {line}: {error}") from error
                self.rows.setdefault(row["image_id"], []).append((box, score, cls))

    def __call__(self, image: Any, max_intensity: float | None = None, **_: Any) -> Boxes:
        image_id = image_id_of(image)
        if image_id not in self.rows:
            raise CueError(f"box CSV has no row for image {image_id!r}.")
        rows = self.rows[image_id]
        if not rows:
            return Boxes.empty()
        return Boxes([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


@register_backend("anatomy", "png_folder")
class PNGFolderAnatomy(AnatomyBackend):
    """Masks from ``{root}/{image_id}/{label}.png``. ``root`` is config key ``anatomy_dir``."""

    def __init__(self, root: str | Path, labels: tuple[str, ...] | None = None):
        self.root = _existing_dir(root, "anatomy_dir")
        self.labels = tuple(vocab.check_anatomy_label(label) for label in labels) if labels else tuple(vocab.CXAS_LABEL_IDS)

    def __call__(self, image: Any) -> dict[str, np.ndarray]:
        shape = to_numpy_image(image).shape
        folder = self.root / image_id_of(image)
        if not folder.is_dir():
            raise CueError(f"no anatomy masks for image {folder.name!r} in {self.root}.")
        masks = {}
        for label in self.labels:
            path = folder / f"{label}.png"
            if path.is_file():
                masks[label] = resize_mask(np.asarray(Image.open(path).convert("L")) > 0, shape)
        for required in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART):
            if required not in masks:
                raise CueError(f"{folder}: '{required}.png' is missing.")
        return finish_masks(masks)


@register_backend("anatomy", "chexmask")
class CheXmaskAnatomy(AnatomyBackend):
    """Right lung, left lung and heart from a CheXmask table. ``path`` is config key ``chexmask_csv``.

    The table is scanned once and only the rows' RLE strings are kept (only those of ``image_ids`` when
    given: a full MIMIC table holds gigabytes of RLE); zones are derived from the lungs with the
    classical zone rule (CheXmask has no zones). Use the ``OriginalResolution`` tables: the
    ``Preprocessed`` ones describe the padded 1024x1024 square, not the image.
    """

    labels = (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART)

    def __init__(self, path: str | Path, id_column: str | None = None, with_zones: bool = True, image_ids=None):
        from tqdm import tqdm

        wanted = None if image_ids is None else {str(i) for i in image_ids}
        self.rows = {}
        for image_id, row in tqdm(chexmask.iter_chexmask_rows(path, id_column), desc=f"indexing {Path(path).name}", unit=" rows", mininterval=5):
            if wanted is None or image_id in wanted:
                self.rows[image_id] = {k: row[k] for k in ("Right Lung", "Left Lung", "Heart", "Height", "Width")}
        self.with_zones = with_zones

    def __call__(self, image: Any) -> dict[str, np.ndarray]:
        from monai_ils.cues.classical_anatomy import lung_zones

        shape = to_numpy_image(image).shape
        image_id = image_id_of(image)
        if image_id not in self.rows:
            raise CueError(f"CheXmask table has no row for image {image_id!r}.")
        masks = {label: resize_mask(mask, shape) for label, mask in chexmask.decode_row(self.rows[image_id]).items()}
        if self.with_zones:
            for side in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG):
                masks.update(lung_zones(masks[side], side))
            masks["lung"] = masks[vocab.RIGHT_LUNG] | masks[vocab.LEFT_LUNG]
        return finish_masks(masks)
