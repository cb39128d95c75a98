"""Request inputs: find the chest X-ray file behind a datastore URI, refuse oversized or unreadable images,
and check the text parameters, before anything heavy runs.

MONAI Label hands a task an image URI: a file in a local datastore, an uploaded temporary file, or, for a
DICOMweb datastore, the cached series folder (or a NIfTI converted from it). Chest X-rays must be read from
the DICOM itself (``LoadCXR``: MONOCHROME1 inversion, bits stored, view position), so a series folder or a
converted NIfTI is traced back to its DICOM file.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path

from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from lib.errors import BadRequest, NotFound, PayloadTooLarge, Unprocessable

BITMAP_SUFFIXES = (".png", ".jpg", ".jpeg")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in (".dcm", ".dicom", ""))


class ResolveCXR(Transform):
    """Image URI -> the one file ``LoadCXR`` reads (DICOM, PNG or JPEG).

    A folder must hold exactly one DICOM instance (one radiograph per series); ``<name>.nii(.gz)`` is
    replaced by the DICOM in the folder ``<name>`` beside it (how MONAI Label's DICOMweb cache stores a
    series it converted). Any other NIfTI is refused: it has lost the DICOM header the loader needs.
    """

    def __call__(self, uri) -> str:
        if not isinstance(uri, (str, os.PathLike)) or not str(uri):
            raise BadRequest("No image given: pass a datastore image id (?image=<id>) or upload a file.")
        path = Path(uri)
        name = path.name.lower()
        if name.endswith(NIFTI_SUFFIXES):
            stem = path.name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.name[: -len(".nii")]
            series = path.with_name(stem)
            if series.is_dir():
                return self(series)
            raise BadRequest(
                f"Image {path.name}: NIfTI input is not supported for chest X-rays; send the DICOM (or a PNG/JPEG export). "
                "A NIfTI drops the DICOM header (photometric interpretation, bits stored, view position) the loader needs."
            )
        if path.is_dir():
            files = _dicom_files(path)
            if len(files) != 1:
                raise Unprocessable(
                    f"Series folder {path.name} holds {len(files)} DICOM instances; this app segments single-image "
                    "series (one chest X-ray per series)."
                )
            return str(files[0])
        if not path.is_file():
            raise NotFound(f"Image file {path.name} does not exist on the server.")
        return str(path)


class CheckCXRSize(Transform):
    """Refuse files above ``max_bytes`` and images above ``max_pixels`` (from the header, before decoding).

    Returns (rows, columns). Unreadable headers raise a 400 naming the file and the reader's complaint, so a
    corrupt upload never reaches the decoder.
    """

    def __init__(self, max_pixels: int, max_bytes: int):
        self.max_pixels = int(max_pixels)
        self.max_bytes = int(max_bytes)

    def __call__(self, path) -> tuple[int, int]:
        path = Path(path)
        size = path.stat().st_size
        if size > self.max_bytes:
            raise PayloadTooLarge(
                f"Image {path.name} is {size / 2**20:.1f} MiB; this server accepts at most {self.max_bytes / 2**20:.1f} MiB "
                "(app conf 'max_image_mb')."
            )
        if size == 0:
            raise BadRequest(f"Image {path.name} is empty (0 bytes).")
        rows, cols, frames = self._header_size(path)
        if frames != 1:
            raise Unprocessable(f"Image {path.name} has {frames} frames; a chest X-ray is one 2-D frame.")
        if rows * cols > self.max_pixels:
            raise PayloadTooLarge(
                f"Image {path.name} is {cols} x {rows} = {rows * cols} pixels; this server accepts at most "
                f"{self.max_pixels} pixels (app conf 'max_image_pixels')."
            )
        if min(rows, cols) < 1:
            raise BadRequest(f"Image {path.name} has no pixels ({cols} x {rows}).")
        return rows, cols

    @staticmethod
    def _header_size(path: Path) -> tuple[int, int, int]:
        if path.suffix.lower() in BITMAP_SUFFIXES:
            from PIL import Image

            try:
                with Image.open(path) as image:  # reads the header only
                    cols, rows = image.size
                    return rows, cols, int(getattr(image, "n_frames", 1))
            except Image.DecompressionBombError as err:
                raise PayloadTooLarge(f"Image {path.name}: {err}") from err
            except Exception as err:
                raise BadRequest(f"Image {path.name} is not a readable PNG/JPEG ({type(err).__name__}: {err}).") from err
        import pydicom

        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
            rows, cols = int(ds.Rows), int(ds.Columns)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except Exception as err:
            raise BadRequest(
                f"Image {path.name} is not a readable DICOM image ({type(err).__name__}: {err}); "
                "send a DICOM, PNG or JPEG chest X-ray."
            ) from err
        return rows, cols, frames


class ResolveCXRd(MapTransform):
    """Dictionary form of :class:`ResolveCXR`; the original URI stays in ``image_path``."""

    def __init__(self, keys: KeysCollection = "image", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.resolver = ResolveCXR()

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resolver(d[key])
        return d


class CheckCXRSized(MapTransform):
    """Dictionary form of :class:`CheckCXRSize`; stores (rows, columns) under ``size_key``."""

    def __init__(self, keys: KeysCollection = "image", max_pixels: int = 36_000_000, max_bytes: int = 100 * 2**20,
                 size_key: Hashable = "image_size", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckCXRSize(max_pixels, max_bytes)
        self.size_key = size_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.size_key] = self.checker(d[key])
        return d


class RequireTextd(MapTransform):
    """Each key must hold a non-empty string of at most ``max_length`` characters (stored stripped).

    ``hint`` completes the error message, e.g. with an example instruction, so a user who left OHIF's text
    field empty learns what to type.
    """

    def __init__(self, keys: KeysCollection, max_length: int = 2000, hint: str = "", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys=True)
        self.required = not allow_missing_keys
        self.max_length = int(max_length)
        self.hint = hint

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.keys:
            value = d.get(key)
            if isinstance(value, (list, tuple)) and len(value) == 1:
                value = value[0]
            if value is None or (isinstance(value, str) and not value.strip()):
                if not self.required:
                    continue
                raise BadRequest(f"Missing parameter '{key}'. {self.hint}".strip())
            if not isinstance(value, str):
                raise BadRequest(f"Parameter '{key}' must be a string, got {type(value).__name__}. {self.hint}".strip())
            if len(value) > self.max_length:
                raise BadRequest(f"Parameter '{key}' is {len(value)} characters long; the limit is {self.max_length}.")
            d[key] = value.strip()
        return d
