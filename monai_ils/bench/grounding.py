"""Time the grounding chain anomaly -> filter -> components -> refine -> verify per (study, lesion type).

Synthetic 1024x1024 case: 20 candidate boxes, 14 anatomy masks, a few bright opacities.
Target: <= 30 ms median on one core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_ils import vocab
from monai_ils.bench.common import machine, pin_to_one_core
from monai_ils.transforms import AnomalyMapd, FilterLesionBoxesd, IntersectingComponentsd, RefineLesionMaskd, VerifyLocationsd


def synthetic_case(size: int = 1024, n_boxes: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    s = size / 1024
    image = rng.normal(9000, 300, (size, size)).astype(np.float32)
    healthy = np.full((size, size), 9000, np.float32)
    anatomy = {}
    for side, (c0, c1) in {"right": (100, 470), "left": (554, 924)}.items():
        c0, c1 = int(c0 * s), int(c1 * s)
        lung = np.zeros((size, size), bool)
        lung[int(150 * s):int(900 * s), c0:c1] = True
        anatomy[f"{side} lung"] = lung[None]
        for zone, (r0, r1) in zip(vocab.LUNG_ZONES[f"{side} lung"], ((150, 300), (300, 500), (500, 700), (700, 900))):
            mask = np.zeros((size, size), bool)
            mask[int(r0 * s):int(r1 * s), c0:c1] = True
            anatomy[zone] = mask[None]
    for name, (r0, r1) in zip(vocab.LUNG_LOBES["right lung"], ((150, 450), (450, 650), (650, 900))):
        mask = np.zeros((size, size), bool)
        mask[int(r0 * s):int(r1 * s), int(100 * s):int(470 * s)] = True
        anatomy[name] = mask[None]
    heart = np.zeros((size, size), bool)
    heart[int(500 * s):int(850 * s), int(400 * s):int(700 * s)] = True
    anatomy["heart"] = heart[None]
    yy, xx = np.mgrid[:size, :size]
    # a basal consolidation (large enough for Algorithm 1 to keep its box) and two small nodular opacities
    image[((yy - 790 * s) / (90 * s)) ** 2 + ((xx - 285 * s) / (155 * s)) ** 2 < 1] += 6000
    for cy, cx, r in ((600, 700, 45), (350, 300, 40)):
        image[(yy - cy * s) ** 2 + (xx - cx * s) ** 2 < (r * s) ** 2] += 6000
    centres = rng.uniform([120, 180], [900, 850], (n_boxes, 2)) * s
    half = rng.uniform(60, 160, (n_boxes, 2)) * s
    boxes = np.concatenate([centres - half, centres + half], axis=1).clip(0, size - 1)
    boxes[0] = np.array([130, 700, 440, 880]) * s  # xyxy around the consolidation
    meta = {"max_intensity": 32767.0, "study_id": "bench"}
    return {
        "image": MetaTensor(torch.from_numpy(image)[None], meta=meta),
        "counterfactual": MetaTensor(torch.from_numpy(healthy)[None], meta=meta),
        "anatomy": anatomy,
        "boxes": boxes,
        "box_scores": np.r_[0.8, rng.uniform(0.1, 0.9, n_boxes - 1)],
        "lesion_type": "pneumonia",
        "reported_locations": ["right lung base", "lung lower lobe right"],
        "all_reported_locations": ["right lung base", "right mid zone lung", "lung lower lobe right", "left mid zone lung"],
    }


def grounding_chain() -> Compose:
    return Compose([AnomalyMapd(), FilterLesionBoxesd(), IntersectingComponentsd(), RefineLesionMaskd(), VerifyLocationsd()])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--boxes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    pin_to_one_core()
    data = synthetic_case(args.size, args.boxes)
    chain = grounding_chain()
    out = chain(data)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = chain(data)
        times.append((time.perf_counter() - start) * 1000)
    print(f"grounding chain {args.size}x{args.size}, {args.boxes} boxes, {len(data['anatomy'])} anatomy masks, one core")
    print(f"  kept boxes: {len(out['kept_boxes'])}, lesion pixels: {int(out['lesion_mask'].sum())}, grounded: {out['grounded_locations']}")
    print(f"  median {np.median(times):.1f} ms, p90 {np.percentile(times, 90):.1f} ms per (study, lesion type)  [target <= 30 ms]")
    print(f"  machine: {machine()}")
    return 0
