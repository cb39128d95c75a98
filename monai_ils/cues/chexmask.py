"""CheXmask run-length encoding and CSV tables (HybridGNet lung and heart masks published on PhysioNet).

CheXmask tables (``*.csv`` or ``*.csv.gz``) have one row per image with the columns: an image id whose
name depends on the source dataset (``dicom_id`` for MIMIC-CXR-JPG, ``image_id`` for VinDr-CXR, ...),
``Dice RCA (Max)``, ``Dice RCA (Mean)``, ``Landmarks`` (120 x/y points: right lung 0:44, left lung 44:94,
heart 94:120), ``Left Lung``, ``Right Lung``, ``Heart`` (RLE) and ``Height``, ``Width``.
RLE: space-separated ``start length`` pairs, starts 1-based, over the row-major flattened
``Height x Width`` mask.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from monai_ils import vocab

CHEXMASK_MASK_COLUMNS = {vocab.RIGHT_LUNG: "Right Lung", vocab.LEFT_LUNG: "Left Lung", vocab.HEART: "Heart"}
CHEXMASK_ID_COLUMNS = ("dicom_id", "image_id", "Image ID", "ImageID", "Image Index", "Path", "path", "id")
HYBRIDGNET_SLICES = {vocab.RIGHT_LUNG: slice(0, 44), vocab.LEFT_LUNG: slice(44, 94), vocab.HEART: slice(94, 120)}


def rle_decode(rle: str | float | None, height: int, width: int) -> np.ndarray:
    """Bool ``[height, width]`` mask of a CheXmask RLE string (empty/NaN -> empty mask)."""
    mask = np.zeros(int(height) * int(width), dtype=bool)
    if rle is None or (isinstance(rle, float) and np.isnan(rle)) or not str(rle).strip():
        return mask.reshape(int(height), int(width))
    try:
        runs = np.asarray(str(rle).split(), dtype=np.int64)
    except ValueError as error:
        raise ValueError(f"RLE string is not a list of integers: {str(rle)[:40]!r}...") from error
    if len(runs) % 2:
        raise ValueError(f"RLE string has an odd number of values ({len(runs)}); expected start/length pairs.")
    starts, lengths = runs[0::2] - 1, runs[1::2]
    if len(starts) and (starts.min() < 0 or (starts + lengths).max() > mask.size):
        raise ValueError(f"RLE runs fall outside a {height}x{width} mask.")
    for start, length in zip(starts, lengths):
        mask[start : start + length] = True
    return mask.reshape(int(height), int(width))


def rle_encode(mask: np.ndarray) -> str:
    """CheXmask RLE of a 2-D mask (inverse of :func:`rle_decode`)."""
    flat = np.concatenate([[0], np.asarray(mask).astype(bool).ravel().astype(np.int8), [0]])
    runs = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs[1::2] -= runs[0::2]
    return " ".join(str(int(v)) for v in runs)


def _open_text(path: Path):
    return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="") if path.suffix == ".gz" else open(path, newline="", encoding="utf-8")


def find_id_column(header: list[str], id_column: str | None = None) -> str:
    if id_column:
        if id_column not in header:
            raise ValueError(f"CheXmask CSV has no column {id_column!r}; its columns are {header}.")
        return id_column
    for name in CHEXMASK_ID_COLUMNS:
        if name in header:
            return name
    return header[0]


def iter_chexmask_rows(path: str | Path, id_column: str | None = None) -> Iterator[tuple[str, dict]]:
    """Yield ``(image id, row)`` of a CheXmask table without loading it all (tables reach gigabytes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CheXmask table {path} not found (download it from PhysioNet 'chexmask-cxr-segmentation-data').")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in (*CHEXMASK_MASK_COLUMNS.values(), "Height", "Width") if c not in header]
        if missing:
            raise ValueError(f"{path}: not a CheXmask table, columns {missing} are missing (has {header}).")
        key = find_id_column(header, id_column)
        for row in reader:
            yield str(row[key]), row


def decode_row(row: dict) -> dict[str, np.ndarray]:
    """Right lung, left lung and heart masks (bool, CheXmask's Height x Width) of one table row."""
    height, width = int(float(row["Height"])), int(float(row["Width"]))
    return {label: rle_decode(row[column], height, width) for label, column in CHEXMASK_MASK_COLUMNS.items()}


def parse_landmarks(text: str) -> np.ndarray:
    """The ``Landmarks`` cell as a float ``[120, 2]`` array of (x, y) points."""
    cleaned = str(text).replace("[", " ").replace("]", " ").replace(",", " ")
    values = np.asarray(cleaned.split(), dtype=np.float64)
    if values.size != 240:
        raise ValueError(f"Landmarks cell has {values.size} numbers; expected 240 (120 x/y points).")
    return values.reshape(120, 2)
