"""Geometry of a SEG over a single-frame CR/DX so that OHIF's stock segmentation mode overlays it.

OHIF treats an image without ImageOrientationPatient as if it had ``[0, 1, 0, 0, 0, -1]`` and accepts a
SEG only when the SEG's orientation lies in that image's plane (the orientation itself or one of its
in-plane flips and 90-degree rotations); an orientation whose normal is orthogonal to the image's is
refused ("Segmentations orthogonal to the acquisition plane ... not yet supported"), and any other one is
treated as oblique. :func:`ohif_orientation_verdict` applies that rule; :func:`with_display_geometry`
gives a source without a frame of reference the geometry OHIF assumes, so highdicom can write it into
the SEG.
"""

from __future__ import annotations

import copy

import numpy as np
from pydicom.dataset import Dataset

from monai_ils.dicom.uids import derived_uid

OHIF_CR_ORIENTATION = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
NOMINAL_SPACING_MM = 1.0


def pixel_spacing_mm(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm from PixelSpacing, else ImagerPixelSpacing; None when absent or not > 0."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(ds, keyword, None)
        if value is not None and len(value) == 2:
            spacing = (float(value[0]), float(value[1]))
            if min(spacing) > 0:
                return spacing
    return None


def _valid_orientations(iop) -> list[np.ndarray]:
    """The eight in-plane variants OHIF accepts: flips of the row or column and rotations by 90/180/270."""
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    out = []
    for r, c in ((row, col), (col, row)):
        for sr in (1, -1):
            for sc in (1, -1):
                out.append(np.concatenate([sr * r, sc * c]))
    return out


def ohif_orientation_verdict(seg_iop, image_iop=None, tolerance: float = 1e-3) -> str:
    """``"planar"`` (OHIF overlays it), ``"perpendicular"`` (refused) or ``"oblique"`` (refused).

    ``image_iop`` None means an image without ImageOrientationPatient (OHIF's CR default is assumed).
    """
    if seg_iop is None:
        return "missing"
    seg = np.asarray([float(v) for v in seg_iop])
    image = np.asarray([float(v) for v in (image_iop if image_iop is not None else OHIF_CR_ORIENTATION)])
    if any(np.allclose(seg, variant, atol=tolerance) for variant in _valid_orientations(image)):
        return "planar"
    normal_seg = np.cross(seg[:3], seg[3:])
    normal_image = np.cross(image[:3], image[3:])
    if abs(float(np.dot(normal_seg, normal_image))) < tolerance:
        return "perpendicular"
    return "oblique"


def has_patient_geometry(ds: Dataset) -> bool:
    return all(hasattr(ds, k) for k in ("FrameOfReferenceUID", "ImageOrientationPatient", "ImagePositionPatient"))


def with_display_geometry(ds: Dataset) -> tuple[Dataset, list[str]]:
    """The source as highdicom should see it: unchanged when it has patient geometry, else a copy (pixel
    data left out) with a new frame of reference, OHIF's CR orientation, origin 0 and the pixel spacing
    (nominal 1 mm when unknown). Returns the dataset and notes saying what was assumed."""
    if has_patient_geometry(ds):
        return ds, []
    view = Dataset()
    for element in ds:
        if element.keyword != "PixelData":
            view.add(copy.deepcopy(element))  # setting a value changes the element in place: never share it
    view.file_meta = copy.deepcopy(getattr(ds, "file_meta", Dataset()))
    notes = ["source has no patient geometry: the SEG uses a new frame of reference with the orientation "
             "OHIF assumes for a projection radiograph (0\\1\\0\\0\\0\\-1), aligned pixel for pixel"]
    view.FrameOfReferenceUID = derived_uid("frame-of-reference", ds.SOPInstanceUID)
    view.PositionReferenceIndicator = ""
    view.ImageOrientationPatient = list(OHIF_CR_ORIENTATION)
    view.ImagePositionPatient = [0.0, 0.0, 0.0]
    spacing = pixel_spacing_mm(ds)
    if spacing is None:
        spacing = (NOMINAL_SPACING_MM, NOMINAL_SPACING_MM)
        notes.append("source has no usable pixel spacing: nominal 1 mm spacing, no areas in mm2")
    view.PixelSpacing = list(spacing)
    view.SliceThickness = NOMINAL_SPACING_MM
    return view, notes
