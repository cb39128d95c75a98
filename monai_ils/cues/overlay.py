"""Draw the classical cues on a chest X-ray as a PNG, for a person to check them at a glance.

    python -m monai_ils.cues.overlay --output_dir outputs/cues [--image path.dcm] [--size 768]

Without ``--image`` the real PA chest CR ``RG1_UNCR.dcm`` of ``pydicom-data`` is used. The PNG shows
the right lung (red), left lung (blue), heart (green), zone borders (thin yellow lines), anomaly pixels
(x_ano >= 0.10, magenta) and boxes (orange, with their score); a JSON file beside it lists the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from monai_ils import vocab
from monai_ils.cues.base import max_intensity_of, to_numpy_image

COLOURS = {vocab.RIGHT_LUNG: (230, 50, 50), vocab.LEFT_LUNG: (50, 90, 230), vocab.HEART: (40, 200, 70)}


def run_classical_cues(image) -> dict:
    """Anatomy, counterfactual and boxes of the classical backends, with their timings in seconds."""
    from monai_ils.cues.classical_anatomy import ClassicalAnatomy
    from monai_ils.cues.classical_boxes import ClassicalBoxes
    from monai_ils.cues.classical_counterfactual import ClassicalCounterfactual
    from monai_ils.cues.base import union_mask

    i_max = max_intensity_of(image)
    array = to_numpy_image(image)
    times = {}
    start = time.perf_counter()
    anatomy = ClassicalAnatomy()(array)
    times["anatomy"] = time.perf_counter() - start
    start = time.perf_counter()
    backend = ClassicalCounterfactual()
    region = union_mask(anatomy, backend.region_labels, array.shape)
    counterfactual = backend(array, region, i_max)
    times["counterfactual"] = time.perf_counter() - start
    start = time.perf_counter()
    boxes = ClassicalBoxes()(array, i_max, counterfactual=counterfactual)
    times["boxes"] = time.perf_counter() - start
    return {"anatomy": anatomy, "counterfactual": counterfactual, "boxes": boxes, "max_intensity": i_max, "seconds": times}


def render_overlay(image, anatomy, counterfactual, boxes, max_intensity: float, size: int = 768, threshold: float = 0.10) -> Image.Image:
    """An RGB picture of the cues at ``size`` pixels on the long side."""
    array = to_numpy_image(image)
    lo, hi = np.percentile(array, [0.5, 99.5])
    grey = np.clip((array - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for name, colour in COLOURS.items():
        mask = np.asarray(anatomy[name])[0].astype(bool)
        rgb[mask] = 0.65 * rgb[mask] + 0.35 * np.asarray(colour) / 255
    score = np.clip((array - to_numpy_image(counterfactual, "counterfactual")) / max_intensity, 0, 1)
    rgb[score >= threshold] = (0.9, 0.1, 0.9)
    for side in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG):
        for zone in vocab.LUNG_ZONES[side][1:]:
            rows = np.flatnonzero(np.asarray(anatomy[zone])[0].any(1))
            if len(rows):
                cols = np.flatnonzero(np.asarray(anatomy[side])[0][rows[0]])
                rgb[max(0, rows[0] - 2) : rows[0] + 2, cols[0] : cols[-1] + 1] = (1.0, 0.9, 0.1)
    scale = size / max(array.shape)
    picture = Image.fromarray((rgb * 255).astype(np.uint8)).resize((round(array.shape[1] * scale), round(array.shape[0] * scale)), Image.BILINEAR)
    draw = ImageDraw.Draw(picture)
    for (x0, y0, x1, y1), s, c in zip(boxes.boxes, boxes.scores, boxes.classes):
        draw.rectangle([x0 * scale, y0 * scale, x1 * scale, y1 * scale], outline=(255, 150, 0), width=2)
        draw.text((x0 * scale + 2, y0 * scale + 1), f"{s:.2f} {vocab.VINBIG_CLASSES[c]}", fill=(255, 150, 0))
    return picture


def write_overlay(output_dir: str | Path, image_path: str | Path | None = None, size: int = 768) -> dict:
    """Load the image, run the classical cues, write ``cues_overlay.png`` and ``cues_summary.json``."""
    from monai_ils.data.sample import sample_cxr_path
    from monai_ils.transforms import LoadCXR

    path = Path(image_path) if image_path else sample_cxr_path()
    image = LoadCXR()(path)
    cues = run_classical_cues(image)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    picture = render_overlay(image, cues["anatomy"], cues["counterfactual"], cues["boxes"], cues["max_intensity"], size)
    picture.save(out / "cues_overlay.png")
    summary = {
        "image": str(path),
        "shape": list(image.shape[1:]),
        "max_intensity": cues["max_intensity"],
        "seconds": cues["seconds"],
        "mask_pixels": {name: int(np.asarray(mask).sum()) for name, mask in cues["anatomy"].items()},
        "boxes": cues["boxes"].boxes.round(1).tolist(),
        "box_scores": cues["boxes"].scores.round(3).tolist(),
        "box_classes": [vocab.VINBIG_CLASSES[c] for c in cues["boxes"].classes],
    }
    (out / "cues_summary.json").write_text(json.dumps(summary, indent=2))
    return {"png": out / "cues_overlay.png", "json": out / "cues_summary.json", "image": image, **cues}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--image", default=None, help="DICOM/PNG/JPG chest X-ray (default: RG1_UNCR.dcm of pydicom-data)")
    parser.add_argument("--size", type=int, default=768, help="long side of the PNG in pixels")
    args = parser.parse_args(argv)
    result = write_overlay(args.output_dir, args.image, args.size)
    seconds = ", ".join(f"{k} {v:.2f} s" for k, v in result["seconds"].items())
    print(f"wrote {result['png']} ({len(result['boxes'])} boxes; {seconds})")


if __name__ == "__main__":
    main()
