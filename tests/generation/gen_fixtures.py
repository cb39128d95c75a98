"""Hand-built inputs shared by the generation tests: small masks and a toy grounder for the runner."""

from __future__ import annotations

import numpy as np

from monai_ils.generation.findings import GroundedFinding, StudyGrounding

SHAPE = (32, 32)


def box(y0, y1, x0, x1, shape=SHAPE):
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


# regions of a 32x32 "image": right lung = left half of the image (radiological convention)
REGION_BOXES = {
    "right lung base": (22, 30, 2, 14),
    "left lung base": (22, 30, 18, 30),
    "right upper zone lung": (6, 12, 2, 14),
    "left upper zone lung": (6, 12, 18, 30),
    "heart": (16, 26, 10, 22),
}


def toy_grounder(record):
    """Report lines ``lesion|presence|certainty|reported;...|grounded;...`` -> a StudyGrounding.

    A report "FAIL" raises, "QCFAIL" fails quality control; masks are boxes over the grounded regions.
    """
    text = record.read_report().strip()
    if text == "FAIL":
        raise ValueError(f"cannot ground study {record.key}")
    if not text:
        raise ValueError("empty report")
    findings = []
    reported_all = set()
    for line in text.splitlines():
        if line.strip() in ("", "QCFAIL"):
            continue
        lesion, presence, certainty, reported, grounded = (part.strip() for part in line.split("|"))
        reported = [x for x in reported.split(";") if x]
        grounded = [x for x in grounded.split(";") if x]
        reported_all.update(reported)
        mask = None
        if lesion == "cardiomegaly" and presence == "positive":
            mask = box(*REGION_BOXES["heart"])
        elif grounded:
            mask = np.logical_or.reduce([box(*REGION_BOXES[g]) for g in grounded])
        findings.append(GroundedFinding(lesion, presence, certainty, reported, grounded, mask))
    table8_free = [r for r in ("right upper zone lung", "left upper zone lung", "right lung base", "left lung base") if r not in reported_all]
    image = np.arange(SHAPE[0] * SHAPE[1], dtype=np.float32).reshape(SHAPE)
    return StudyGrounding(
        study_key=record.key,
        image_path=record.image_path,
        split=record.split,
        findings=findings,
        empty_locations=table8_free,
        ctr=0.4,
        qc_passed="QCFAIL" not in text,
        qc_reasons=["anatomy models disagree"] if "QCFAIL" in text else [],
        image=image,
    )


REPORTS = [
    "pneumonia|positive|definitive|right lung base|right lung base",
    "effusion|positive|definitive|left lung base|left lung base\ncardiomegaly|positive|definitive||",
    "atelectasis|positive|tentative|right lung base;left lung base|right lung base",
    "edema|negative|definitive||",
    "FAIL",
    "opacity|positive|definitive|right upper zone lung|right upper zone lung",
    "QCFAIL",
    "consolidation|positive|definitive|left upper zone lung|",
]


def write_study_csv(folder, n, reports=REPORTS, bad_rows=()):
    """A CSVStudyIndex input of n studies cycling through ``reports``; returns the CSV path."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "studies.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["image", "report", "split", "study_id", "view_position"])
        for i in range(n):
            split = ("train", "validate", "test")[i % 3]
            writer.writerow([f"images/img{i:04d}.png", reports[i % len(reports)], split, f"st{i:04d}", "PA" if i % 11 != 10 else "LATERAL"])
    return path


class SlowProcessor:
    """A picklable processor that sleeps on every study: keeps worker processes busy for the kill test."""

    def __init__(self, seconds: float = 120.0):
        self.seconds = seconds

    def __call__(self, record):
        import time

        time.sleep(self.seconds)
        raise RuntimeError("not reached in the test")
