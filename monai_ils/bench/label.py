"""Latency of the MONAI Label app (apps/ils_label) per request, in process (FastAPI TestClient, no network).

``python -m monai_ils.bench label [--rosalia_path DIR] [--requests 10]`` serves RG1_UNCR.dcm (1955 x 1841,
MONOCHROME1) and its 8x subsampled copy; without ``--rosalia_path`` a tiny random ROSALIA is built, so the
figures then measure the app (DICOM loading, checks, label writing) plus a negligible model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from monai_ils.bench.common import machine, peak_rss_mib

INSTRUCTION = "Segment the opacity in the right lung base."


def _studies(folder: Path) -> Path:
    import shutil

    import numpy as np
    import pydicom

    from monai_ils.data.sample import sample_cxr_path

    studies = folder / "studies"
    studies.mkdir()
    shutil.copy(sample_cxr_path(), studies / "full.dcm")
    ds = pydicom.dcmread(str(sample_cxr_path()))
    small = np.ascontiguousarray(ds.pixel_array[::8, ::8])
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.astype(np.uint16).tobytes()
    ds.save_as(str(studies / "small.dcm"))
    return studies


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_ils.bench label", description=__doc__)
    parser.add_argument("--rosalia_path", default=None, help="checkpoint folder (default: a tiny random model)")
    parser.add_argument("--requests", type=int, default=10, help="requests per case")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    app_dir = Path(__file__).resolve().parents[2] / "apps" / "ils_label"
    if not (app_dir / "main.py").exists():
        print(f"The label app is not at {app_dir}; run from a source checkout of monai-ils.", file=sys.stderr)
        return 2
    from fastapi.testclient import TestClient

    from monai_ils.data.sample_studies import SAMPLE_REPORT
    from monailabel.config import settings

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        studies = _studies(tmp)
        rosalia = args.rosalia_path
        if rosalia is None:
            from monai_ils.models.testing import build_tiny_rosalia

            rosalia = str(build_tiny_rosalia(tmp / "tiny")[2])
        settings.MONAI_LABEL_APP_DIR, settings.MONAI_LABEL_STUDIES = str(app_dir), str(studies)
        settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD = False
        settings.MONAI_LABEL_APP_CONF = {"rosalia_path": rosalia, "rosalia_device": args.device}
        sys.path.append(str(app_dir))
        from monailabel.app import app

        client = TestClient(app)
        cases = [
            ("rosalia generate", "rosalia", "small", {"instruction": INSTRUCTION}),
            ("rosalia segment", "rosalia", "small", {"instruction": INSTRUCTION, "mode": "segment"}),
            ("rosalia generate", "rosalia", "full", {"instruction": INSTRUCTION}),
            ("rosalia segment, .nrrd", "rosalia", "full", {"instruction": INSTRUCTION, "mode": "segment", "result_extension": ".nrrd"}),
            ("grounding (classical)", "grounding", "full", {"report": SAMPLE_REPORT.read_text()}),
        ]
        print(f"machine: {machine()}; model: {'tiny random ROSALIA' if args.rosalia_path is None else rosalia}")
        print(f"{'case':28s} {'image':18s} {'median s':>9s} {'p90 s':>7s}")
        for name, model, image, params in cases:
            url = f"/infer/{model}?image={image}&output=image"
            response = client.post(url, data={"params": json.dumps(params)})  # warm-up: model load, caches
            if response.status_code != 200:
                print(f"{name}: HTTP {response.status_code} {response.text}", file=sys.stderr)
                return 1
            times = []
            for _ in range(args.requests):
                start = time.perf_counter()
                client.post(url, data={"params": json.dumps(params)}).raise_for_status()
                times.append(time.perf_counter() - start)
            size = "1955x1841" if image == "full" else "245x231"
            p90 = sorted(times)[max(0, int(round(0.9 * len(times))) - 1)]
            print(f"{name:28s} {size + ' MONO1':18s} {statistics.median(times):9.3f} {p90:7.3f}")
        print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
