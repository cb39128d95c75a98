"""Studies for the label-app tests: the real MONOCHROME1 radiograph, a small MONOCHROME1 copy of it, and a
synthetic radiograph with precomputed cues whose grounded lesion mask is known by construction."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from monai_ils.data.sample import sample_cxr_path

# Synthetic study (128 x 128, 8-bit): lungs at 50, a bright square lesion at 200 in the right lung base
# (image left = patient right). The counterfactual is the image without the square, the detector box
# surrounds it, so the grounded consolidation mask is exactly the square.
SYNTH_SHAPE = (128, 128)
RIGHT_LUNG = (20, 110, 10, 60)  # rows y0:y1, columns x0:x1
LEFT_LUNG = (20, 110, 68, 118)
ZONES = {"apical zone lung": (20, 35), "upper zone lung": (35, 55), "mid zone lung": (55, 75), "lung base": (75, 110)}
HEART = (60, 105, 45, 85)
LESION = (80, 100, 20, 40)
LESION_BOX = (18, 78, 42, 102)  # x_min, y_min, x_max, y_max
SYNTH_REPORT = "FINDINGS: Consolidation in the right lung base. No pleural effusion."


def box_mask(region, shape=SYNTH_SHAPE) -> np.ndarray:
    y0, y1, x0, x1 = region
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def expected_lesion_mask() -> np.ndarray:
    return box_mask(LESION)


def write_small_monochrome1(path: Path, factor: int = 8) -> np.ndarray:
    """RG1_UNCR.dcm subsampled by ``factor`` (still MONOCHROME1); returns its stored pixels."""
    import pydicom

    ds = pydicom.dcmread(str(sample_cxr_path()))
    pixels = np.ascontiguousarray(ds.pixel_array[::factor, ::factor])
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".8"
    ds.save_as(str(path))
    return pixels


def write_synthetic_study(studies: Path, cues: Path) -> Path:
    """``studies/synth.png`` plus precomputed cues under ``cues``; returns the grounding config JSON path."""
    background = np.zeros(SYNTH_SHAPE, dtype=np.uint8)
    for lung in (RIGHT_LUNG, LEFT_LUNG):
        background[box_mask(lung)] = 50
    image = background.copy()
    image[box_mask(LESION)] = 200
    Image.fromarray(image).save(studies / "synth.png")

    anatomy = cues / "anatomy" / "synth"
    anatomy.mkdir(parents=True)
    regions = {"right lung": RIGHT_LUNG, "left lung": LEFT_LUNG, "heart": HEART}
    for side, (_, _, x0, x1) in (("right", RIGHT_LUNG), ("left", LEFT_LUNG)):
        for zone, (y0, y1) in ZONES.items():
            regions[f"{side} {zone}"] = (y0, y1, x0, x1)
    for name, region in regions.items():
        Image.fromarray(box_mask(region).astype(np.uint8) * 255).save(anatomy / f"{name}.png")
    (cues / "counterfactual").mkdir()
    np.save(cues / "counterfactual" / "synth.npy", background.astype(np.float32))
    with open(cues / "boxes.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["image_id", "x_min", "y_min", "x_max", "y_max", "score", "class_id"])
        writer.writerow(["synth", *LESION_BOX, 0.9, 4])
    config = {  # a generation-bundle config merged over generation.json: the precomputed cue backends
        "anatomy_backend": "png_folder",
        "anatomy_kwargs": {"root": str(cues / "anatomy")},
        "counterfactual_backend": "folder",
        "counterfactual_kwargs": {"root": str(cues / "counterfactual")},
        "boxes_backend": "csv",
        "boxes_kwargs": {"path": str(cues / "boxes.csv")},
    }
    path = cues / "grounding.json"
    path.write_text(json.dumps(config))
    return path


def make_studies(root: Path) -> dict:
    """The studies folder and the grounding bundle override (a config merged over generation.json) the tests share."""
    studies = root / "studies"
    studies.mkdir(parents=True)
    shutil.copy(sample_cxr_path(), studies / "RG1_UNCR.dcm")
    small = write_small_monochrome1(studies / "small_m1.dcm")
    config = write_synthetic_study(studies, root / "cues")
    return {"studies": studies, "grounding_bundle": config, "small_pixels": small}
