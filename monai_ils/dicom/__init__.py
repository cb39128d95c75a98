"""Evidence-linked DICOM outputs: a DICOM SEG of the grounded masks and a TID 1500 SR that ties each
report sentence to its segment (built with highdicom). See docs/dicom.md."""

from monai_ils.dicom.export import DicomExporter, export_study_dicom
from monai_ils.dicom.geometry import OHIF_CR_ORIENTATION, ohif_orientation_verdict
from monai_ils.dicom.seg import build_segmentation
from monai_ils.dicom.source import read_source, secondary_capture
from monai_ils.dicom.sr import build_measurement_report

__all__ = [
    "DicomExporter",
    "export_study_dicom",
    "OHIF_CR_ORIENTATION",
    "ohif_orientation_verdict",
    "build_segmentation",
    "read_source",
    "secondary_capture",
    "build_measurement_report",
]
