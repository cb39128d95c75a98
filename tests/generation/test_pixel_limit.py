"""Issue 15.7: the runner refuses an image above the pixel limit, from its header, with a clear error record."""

import json

import numpy as np
from PIL import Image

from monai_ils.data.mimic_cxr import StudyRecord
from monai_ils.generation.pipeline import GroundingPipeline
from monai_ils.generation.processor import PairsProcessor
from monai_ils.generation.qc import StudyQC
from monai_ils.generation.runner import GenerationRunner

REPORT = "FINDINGS: Right lower lobe opacity. IMPRESSION: Pneumonia."


def test_image_above_the_pixel_limit_is_an_error_record_and_the_run_goes_on(tmp_path):
    rng = np.random.default_rng(0)
    for name, side in (("small", 40), ("large", 60)):
        Image.fromarray(rng.integers(0, 255, (side, side + 5), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    records = [StudyRecord(key=name, image_path=str(tmp_path / f"{name}.png"), report_text=REPORT, view_position="PA")
               for name in ("large", "small")]
    processor = PairsProcessor(GroundingPipeline(max_pixels=50 * 50), qc=StudyQC())
    summary = GenerationRunner(tmp_path / "out", processor, progress=False).run(records)
    assert summary.studies == 2
    errors = {e["key"]: e for e in map(json.loads, (tmp_path / "out" / "errors.jsonl").read_text().splitlines())}
    large = errors["large"]["error"]
    assert large["stage"] == "load"
    assert "image large.png is 65 x 60 = 3900 pixels, above the limit of 2500" in large["message"]
    assert "small" not in errors or "above the limit" not in json.dumps(errors["small"])  # under the limit: not refused for size
