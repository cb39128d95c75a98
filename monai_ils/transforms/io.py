"""Load chest X-rays (DICOM, PNG, JPG, TIFF) as [1, H, W] MetaTensors in a known intensity convention.

The format is read from the file's first bytes, not its name: a DICOM saved as ``x.png`` is still read as
DICOM (MONOCHROME1 inverted), a TIFF is read as a bitmap. Each bitmap mode is handled explicitly: grey (8 or
16 bit) as is, grey+alpha and RGBA without their alpha, RGB by the mean of its channels, a greyscale palette
through its palette; a binary, float, colour-palette, CMYK or multi-frame image is refused by name.

Convention: bright = dense (bones and opacities bright, lung fields dark), so MONOCHROME1 DICOMs are
inverted; intensities stay in stored units (16-bit data is kept) and ``max_intensity`` (I_max) records the
largest possible value, which the anomaly map divides by. The first spatial axis is the image row.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, PydicomReader
from monai.transforms import LoadImage, MapTransform, Transform
from monai.utils import TransformBackends

from monai_ils import vocab

BITMAP_SIGNATURES = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"BM": "BMP"}
GREY_16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
FRONTAL_CHECKS = ("raise", "flag", "ignore")


class CXRLoadError(ValueError):
    """A chest X-ray that cannot be loaded; the message names the file and the reason."""


class FrontalViewError(CXRLoadError):
    """The image is not a frontal (PA/AP) view and the loader was configured to reject it."""


def _tag(meta: Mapping, tag: str):
    entry = meta.get(tag)
    if isinstance(entry, Mapping):
        values = entry.get("Value")
        if not values:
            return None
        return values if len(values) > 1 else values[0]
    return entry


def _first_line(err: BaseException) -> str:
    """``Type: first line`` of an exception: MONAI's reader errors carry every fallback reader's traceback."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _load_failure(path: Path, err: BaseException, dicom: bool) -> str:
    """Why a file did not load: the format library's own complaint about it (pydicom reading the header, PIL
    identifying the bitmap) when it has one, else the first line of MONAI's error."""
    try:
        if dicom:
            import pydicom

            pydicom.dcmread(str(path), stop_before_pixels=True)
        else:
            from PIL import Image

            with Image.open(path) as image:
                image.verify()
    except Exception as probe_err:  # noqa: BLE001 - any failure here is the reason worth reporting
        return _first_line(probe_err)
    return _first_line(err)


def bitmap_format(path: Path) -> str | None:
    """"PNG", "JPEG", "TIFF" or "BMP" from the file's signature; None for anything else (read as DICOM)."""
    with open(path, "rb") as stream:
        head = stream.read(132)
    if head[128:132] == b"DICM":  # a DICOM preamble may itself look like a TIFF header (dual-personality files)
        return None
    return next((name for magic, name in BITMAP_SIGNATURES.items() if head.startswith(magic)), None)


def _bitmap_pixels(pil, path: Path) -> tuple[np.ndarray, int]:
    """(grey pixels, bits) of an opened PIL image, by mode; modes with no faithful grey reading are refused."""
    mode = pil.mode
    if mode == "L":
        return np.asarray(pil), 8
    if mode in ("LA", "La"):
        return np.asarray(pil.getchannel("L")), 8  # the alpha channel is transparency, not intensity
    if mode in GREY_16_MODES:
        return np.asarray(pil).astype(np.uint16), 16
    if mode == "I":  # 32-bit integer container (16-bit PNG/TIFF in some PIL versions)
        pixels = np.asarray(pil)
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise CXRLoadError(f"{path}: 32-bit integer image with values {pixels.min()}..{pixels.max()}; expected 8 or 16-bit grey.")
        return pixels.astype(np.uint16), 16
    if mode in ("RGB", "RGBA"):
        rgb = np.asarray(pil)[..., :3]  # an RGB(A) export of a greyscale radiograph; alpha dropped
        return rgb.mean(axis=-1), 8
    if mode == "P":
        palette = np.asarray(pil.convert("RGB"))
        if not (np.array_equal(palette[..., 0], palette[..., 1]) and np.array_equal(palette[..., 1], palette[..., 2])):
            raise CXRLoadError(f"{path}: colour palette image; expected a greyscale radiograph.")
        return palette[..., 0], 8
    reasons = {"1": "a 1-bit (black and white) image", "F": "a 32-bit float image (no known I_max)", "CMYK": "a CMYK image"}
    raise CXRLoadError(f"{path}: {reasons.get(mode, f'PIL mode {mode!r}')} is not a greyscale radiograph; save it as 8 or 16-bit grey.")


class LoadCXR(Transform):
    """Load one chest X-ray file into a float32 MetaTensor of shape [1, H, W].

    Args:
        frontal_check: what to do when the view position is known and is not PA/AP: ``"raise"`` a
            `FrontalViewError`, ``"flag"`` it in ``meta["is_frontal"]`` (default), or ``"ignore"``.
        default_spacing: (row, col) spacing in mm when the file gives none (PNG/JPG, or a zero PixelSpacing).

    Metadata set: filename_or_obj, spacing, view_position, is_frontal, study_id, image_id, patient_id,
    photometric_interpretation, bits_stored, max_intensity, modality.
    """

    backend = [TransformBackends.TORCH]  # a file in, a torch MetaTensor out

    def __init__(self, frontal_check: str = "flag", default_spacing: tuple[float, float] = (1.0, 1.0)):
        if frontal_check not in FRONTAL_CHECKS:
            raise ValueError(f"frontal_check must be one of {FRONTAL_CHECKS}, got {frontal_check!r}.")
        self.frontal_check = frontal_check
        self.default_spacing = tuple(float(s) for s in default_spacing)
        self._dicom = LoadImage(reader=PydicomReader(prune_metadata=False), image_only=True, dtype=None)

    def __call__(self, filename, view_position: str | None = None, study_id: str | None = None,
                 image_id: str | None = None) -> MetaTensor:
        path = Path(os.fspath(filename))
        if not path.is_file():
            raise CXRLoadError(f"{path}: file not found.")
        if bitmap_format(path) is not None:
            pixels, meta = self._load_bitmap(path)
        else:
            pixels, meta = self._load_dicom(path)
        if view_position:
            meta["view_position"] = str(view_position).upper()
        meta["study_id"] = str(study_id) if study_id else meta.get("study_id") or path.parent.name
        meta["image_id"] = str(image_id) if image_id else meta.get("image_id") or path.stem
        view = meta.get("view_position")
        meta["is_frontal"] = None if not view else view in vocab.FRONTAL_VIEWS
        if self.frontal_check == "raise" and meta["is_frontal"] is False:
            raise FrontalViewError(f"{path}: view position {view!r} is not frontal ({'/'.join(vocab.FRONTAL_VIEWS)}).")
        meta["filename_or_obj"] = str(path)
        spacing = meta["spacing"]
        affine = torch.diag(torch.tensor([spacing[0], spacing[1], 1.0, 1.0], dtype=torch.float64))
        return MetaTensor(torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None], affine=affine, meta=meta)

    def _load_dicom(self, path: Path):
        try:
            with warnings.catch_warnings():
                # Projection radiographs have no ImageOrientationPatient and most hosts no nvImageCodec;
                # neither matters here, so MONAI's warnings about them would only be noise.
                warnings.filterwarnings("ignore", message=".*(ImageOrientationPatient|nvImageCodec).*")
                image = self._dicom(str(path))
        except Exception as err:  # pydicom/MONAI raise many types for corrupt files
            raise CXRLoadError(f"{path}: not a readable DICOM image ({_load_failure(path, err, dicom=True)}).") from err
        meta = image.meta
        pixels = np.asarray(image).T  # MONAI's reader gives (columns, rows)
        if pixels.ndim != 2:
            raise CXRLoadError(f"{path}: expected a single-frame 2-D image, got shape {tuple(image.shape)}.")
        bits = int(_tag(meta, "00280101") or _tag(meta, "00280100") or 16)
        i_max = float(2**bits - 1)
        photometric = str(_tag(meta, "00280004") or "MONOCHROME2").upper()
        if photometric == "MONOCHROME1":
            pixels = i_max - pixels.astype(np.float32)
        elif photometric != "MONOCHROME2":
            raise CXRLoadError(f"{path}: photometric interpretation {photometric} is not a greyscale radiograph.")
        return pixels, {
            "spacing": self._spacing(_tag(meta, "00280030") or _tag(meta, "00181164")),
            "view_position": str(_tag(meta, "00185101") or "").upper() or None,
            "study_id": _tag(meta, "0020000D"),
            "image_id": _tag(meta, "00080018"),
            "patient_id": _tag(meta, "00100020"),
            "modality": _tag(meta, "00080060"),
            "photometric_interpretation": photometric,
            "bits_stored": bits,
            "max_intensity": i_max,
        }

    def _load_bitmap(self, path: Path):
        from PIL import Image

        try:
            with Image.open(path) as pil:
                frames = getattr(pil, "n_frames", 1)
                if frames > 1:
                    raise CXRLoadError(f"{path}: {frames} frames in one {pil.format} file; expected a single radiograph.")
                pil.load()
                image, bits = _bitmap_pixels(pil, path)
        except CXRLoadError:
            raise
        except Exception as err:
            raise CXRLoadError(f"{path}: not a readable image ({_load_failure(path, err, dicom=False)}).") from err
        return image, {
            "spacing": self.default_spacing,
            "view_position": None,
            "photometric_interpretation": "MONOCHROME2",
            "bits_stored": bits,
            "max_intensity": float(2**bits - 1),
            "modality": None,
        }

    def _spacing(self, value) -> tuple[float, float]:
        try:
            spacing = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            return self.default_spacing
        return spacing if len(spacing) == 2 and min(spacing) > 0 else self.default_spacing


class LoadCXRd(MapTransform):
    """Dictionary form of `LoadCXR`: each key of ``keys`` (a path) is replaced by its image; view, study and
    image ids found in the dictionary override the file's."""

    backend = LoadCXR.backend

    def __init__(self, keys: KeysCollection = "image", frontal_check: str = "flag",
                 default_spacing: tuple[float, float] = (1.0, 1.0), view_key: Hashable = "view_position",
                 study_key: Hashable = "study_id", image_id_key: Hashable = "image_id", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadCXR(frontal_check, default_spacing)
        self.view_key, self.study_key, self.image_id_key = view_key, study_key, image_id_key

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key], d.get(self.view_key), d.get(self.study_key), d.get(self.image_id_key))
        return d


LoadCXRD = LoadCXRDict = LoadCXRd
