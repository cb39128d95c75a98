"""Classical spatial cues per image on one core: ``python -m monai_ils.bench cues [--repeats 5]``.

Runs the no-weights anatomy, counterfactual and box backends on the real 1955x1841 PA chest CR
``RG1_UNCR.dcm`` (pydicom-data) ``--repeats`` times, pinned to one core with single-threaded OpenCV and
torch, and prints the median seconds of each cue and of the three together. Target: < 1.5 s per image
(the generation benchmark runs 200 studies).
"""

from __future__ import annotations

import argparse
import statistics
import time

from monai_ils.bench.common import machine, peak_rss_mib, pin_to_one_core


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    pin_to_one_core()
    from monai_ils.cues.base import union_mask
    from monai_ils.cues.classical_anatomy import ClassicalAnatomy
    from monai_ils.cues.classical_boxes import ClassicalBoxes
    from monai_ils.cues.classical_counterfactual import ClassicalCounterfactual
    from monai_ils.data.sample import sample_cxr_path
    from monai_ils.transforms import LoadCXR

    image = LoadCXR()(sample_cxr_path())
    i_max = float(image.meta["max_intensity"])
    anatomy_backend, cf_backend, box_backend = ClassicalAnatomy(), ClassicalCounterfactual(), ClassicalBoxes()
    times: dict[str, list[float]] = {"anatomy": [], "counterfactual": [], "boxes": [], "total": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        anatomy = anatomy_backend(image)
        t1 = time.perf_counter()
        x_hat = cf_backend(image, union_mask(anatomy, cf_backend.region_labels, tuple(image.shape[1:])), i_max)
        t2 = time.perf_counter()
        boxes = box_backend(image, i_max, counterfactual=x_hat)
        t3 = time.perf_counter()
        for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            times[key].append(value)
    print(f"classical cues on RG1_UNCR.dcm ({image.shape[2]}x{image.shape[1]} px), one core, {machine()}")
    for key, values in times.items():
        print(f"  {key:>14}: {statistics.median(values):.3f} s median of {len(values)}")
    print(f"  boxes found: {len(boxes)}; peak RSS {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
