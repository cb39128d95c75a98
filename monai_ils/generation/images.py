"""The image a dataset points at: the input file itself, or an 8-bit PNG export of it.

ROSALIA's training code (and any OpenCV-based reader) reads ``image_path`` with ``cv2.imread``: a DICOM, or a
12/16-bit PNG (which OpenCV shifts down to 8 bits, nearly black for 12-bit data), cannot be read with full
contrast. ``export_images="auto"`` (the default) therefore writes ``images/<study>.png`` for every input that
is not already an 8-bit PNG or JPEG, through the project's one image path: `LoadCXR` (MONOCHROME1 inverted) then
`ScaleCXRIntensity` (min-max over the full dynamic range to 0..255), so the PNG holds exactly the pixels that
training and serving feed the model from the original file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monai_ils.generation.findings import StudyGrounding

EXPORT_MODES = ("auto", True, False)
IN_PLACE_FORMATS = ("PNG", "JPEG")
IN_PLACE_MODES = ("L", "RGB")


def export_mode(value, key: str = "export_images"):
    """``"auto"``, True or False from a config value (``true/false/1/0/auto`` in any case); raises naming ``key``."""
    from monai_ils.utils.config import as_bool_or_auto

    return as_bool_or_auto(value, key)


def readable_in_place(path) -> bool:
    """True for an existing 8-bit grey or RGB PNG/JPEG (what OpenCV reads with full contrast), from its header;
    a missing file is kept in place too (the grounder's image is then not a file we can judge)."""
    path = Path(path)
    if not path.is_file():
        return True
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # header only
            return image.format in IN_PLACE_FORMATS and image.mode in IN_PLACE_MODES
    except (UnidentifiedImageError, OSError):
        return False  # DICOM and other formats PIL does not open


def should_export(mode, image_path) -> bool:
    """Whether a study's image is exported under ``mode`` (see :func:`export_mode`)."""
    if mode == "auto":
        return not readable_in_place(image_path)
    return bool(mode)


def export_image(grounding: StudyGrounding) -> np.ndarray:
    """The 8-bit [H, W] export of the study's image: ``ScaleCXRIntensity`` of what `LoadCXR` read (the grounding's
    image when it carries it, else the file read again)."""
    from monai_ils.transforms.intensity import ScaleCXRIntensity, cxr_image_path

    if grounding.image is not None:
        return np.asarray(ScaleCXRIntensity(np.uint8)(np.asarray(grounding.image)))
    return np.asarray(cxr_image_path(frontal_check="ignore")(grounding.image_path))[0]
