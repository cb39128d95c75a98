"""The image a SEG/SR refers to: the study's own DICOM, or (PNG/JPG input) a new Secondary Capture."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.misc import is_dicom

from monai_ils import __version__
from monai_ils.dicom.uids import derived_uid

NO_ORIGINAL_NOTE = "monai-ils: no original DICOM; new study made from a non-DICOM image, references no original"


def read_source(path) -> Dataset | None:
    """The DICOM dataset at ``path``; None when the file is not DICOM (PNG, JPG ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"source image not found: {path.name}")
    if not is_dicom(str(path)):
        return None
    return pydicom.dcmread(str(path))


def secondary_capture(image: np.ndarray, study_key: str, spacing_mm: tuple[float, float] | None = None) -> Dataset:
    """A Secondary Capture of an 8-bit grey image in a new study (deterministic UIDs from ``study_key``).

    The patient is unknown: PatientID is the study key, the name empty; SeriesDescription and ImageComments
    say that it references no original DICOM.
    """
    import highdicom as hd

    array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"secondary_capture: expected a 2-D grey image for study {study_key!r}, got shape {array.shape}.")
    if array.dtype != np.uint8:
        from monai_ils.generation.overlay import to_display

        array = to_display(array)
    today = datetime.date.today()
    sc = hd.sc.SCImage(
        pixel_array=array.astype(np.uint8),
        photometric_interpretation="MONOCHROME2",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=derived_uid("study", study_key),
        series_instance_uid=derived_uid("sc-series", study_key),
        series_number=900,
        sop_instance_uid=derived_uid("sc", study_key),
        instance_number=1,
        manufacturer="MONAI",
        patient_id=str(study_key)[:64],
        patient_name="",
        study_id=str(study_key)[:16],
        study_date=today,
        study_time=datetime.time(0, 0),
        accession_number="",
        pixel_spacing=spacing_mm,
        patient_orientation=("L", "F"),
        series_description="monai-ils image (no original DICOM)",
        software_versions=f"monai-ils {__version__}",
    )
    sc.ImageComments = NO_ORIGINAL_NOTE
    sc.BodyPartExamined = "CHEST"  # an unpaired body part: dciodvfy then wants no Laterality
    sc.Modality = "OT"
    return sc
