"""The classical (no-weights) cues on the real PA chest CR RG1_UNCR.dcm: coarse geometric facts.

Lesion centres below were read by eye from the image (x = column, y = row, full resolution): four of
its rounded opacities, two per lung.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from monai_ils import vocab

LESIONS = {"left mid": (1360, 740), "left lower": (1470, 1170), "right lower": (490, 1120), "right mid": (420, 730)}


def _centroid(mask):
    rows, cols = np.nonzero(np.asarray(mask)[0])
    return rows.mean(), cols.mean()


def test_lungs_and_heart_in_place(rg1_overlay):
    anatomy, image = rg1_overlay["anatomy"], rg1_overlay["image"]
    h, w = image.shape[1:]
    assert (h, w) == (1955, 1841)
    for name in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART, *vocab.LUNG_ZONES[vocab.RIGHT_LUNG], *vocab.LUNG_ZONES[vocab.LEFT_LUNG]):
        assert anatomy[name].shape == (1, h, w) and anatomy[name].dtype == np.uint8
    ry, rx = _centroid(anatomy[vocab.RIGHT_LUNG])
    ly, lx = _centroid(anatomy[vocab.LEFT_LUNG])
    hy, hx = _centroid(anatomy[vocab.HEART])
    assert 0.1 * w < rx < 0.45 * w and 0.55 * w < lx < 0.9 * w  # patient's right on the image left
    assert 0.2 * h < ry < 0.6 * h and 0.2 * h < ly < 0.6 * h
    assert rx < hx < lx and hy > max(ry, ly)  # heart between the lungs, below their centres
    for side in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG):
        lung = np.asarray(anatomy[side])[0].astype(bool)
        assert 0.06 < lung.mean() < 0.25
        assert not (lung & np.asarray(anatomy[vocab.HEART])[0].astype(bool)).any()
        # The lung fields are darker than the image as a whole.
        assert float(image[0][lung].mean()) < float(image[0].mean())


def test_zones_partition_each_lung_from_apex_to_base(rg1_overlay):
    anatomy = rg1_overlay["anatomy"]
    for side, zones in vocab.LUNG_ZONES.items():
        lung = np.asarray(anatomy[side])[0].astype(bool)
        stack = np.stack([np.asarray(anatomy[z])[0].astype(bool) for z in zones])
        assert (stack.sum(0) == lung).all()  # disjoint and covering
        centres = [np.nonzero(z)[0].mean() for z in stack]
        assert centres == sorted(centres)  # apical above upper above mid above base


def test_counterfactual_highlights_opacities_only(rg1_overlay):
    image, x_hat, i_max = rg1_overlay["image"], rg1_overlay["counterfactual"], rg1_overlay["max_intensity"]
    assert i_max == 2**15 - 1
    assert x_hat.shape == tuple(image.shape) and x_hat.dtype == np.float32
    diff = np.asarray(image[0]) - x_hat[0]
    lungs = np.asarray(rg1_overlay["anatomy"]["lung"])[0].astype(bool)
    assert diff.min() >= -1e-3 and np.abs(diff[~lungs]).max() == 0  # only brightness removed, only inside the lungs
    x_ano = np.clip(diff / i_max, 0, 1)
    flagged = x_ano >= vocab.DEFAULT_THRESHOLDS.general.ano
    assert 0.005 < flagged[lungs].mean() < 0.15  # a few opacities, not the ribs
    for x, y in LESIONS.values():
        assert x_ano[y - 40 : y + 40, x - 40 : x + 40].max() >= 0.1


def test_boxes_find_the_rounded_opacities(rg1_overlay):
    boxes = rg1_overlay["boxes"]
    assert boxes.boxes.dtype == np.float32 and boxes.scores.dtype == np.float32 and boxes.classes.dtype == np.int64
    assert 3 <= len(boxes) <= 20
    assert ((boxes.scores >= 0) & (boxes.scores <= 1)).all()
    assert set(boxes.classes.tolist()) <= {7, 8}
    found = [name for name, (x, y) in LESIONS.items()
             if ((boxes.boxes[:, 0] <= x) & (x <= boxes.boxes[:, 2]) & (boxes.boxes[:, 1] <= y) & (y <= boxes.boxes[:, 3])).any()]
    assert len(found) >= 3, found


def test_overlay_png_written(rg1_overlay):
    picture = np.asarray(Image.open(rg1_overlay["png"]).convert("RGB")).astype(int)
    assert picture.shape == (768, round(1841 * 768 / 1955), 3)
    w = picture.shape[1]
    red = (picture[..., 0] - picture[..., 2] > 40)
    blue = (picture[..., 2] - picture[..., 0] > 40)
    assert red[:, : w // 2].sum() > 10 * red[:, w // 2 :].sum()  # right lung tinted on the image left
    assert blue[:, w // 2 :].sum() > 10 * blue[:, : w // 2].sum()
    assert rg1_overlay["json"].is_file()
