"""Precomputed cues: CheXmask RLE and tables, PNG mask folders, counterfactual folders, box CSVs."""

from __future__ import annotations

import csv
import gzip

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_ils import vocab
from monai_ils.cues import chexmask
from monai_ils.cues.base import CueError, get_backend
from monai_ils.cues.transforms import AnatomyMasksd, Counterfactuald, DetectLesionBoxesd


def _image(image_id="img1", h=40, w=50, i_max=4095.0):
    return MetaTensor(torch.full((1, h, w), 1000.0), meta={"image_id": image_id, "max_intensity": i_max})


def test_rle_decode_follows_chexmask_convention():
    # 1-based starts over the row-major flattened 3x4 mask: pixels 2,3 (row 0) and 6..8 (row 1 col 1..3).
    mask = chexmask.rle_decode("2 2 6 3", 3, 4)
    expected = np.array([[0, 1, 1, 0], [0, 1, 1, 1], [0, 0, 0, 0]], dtype=bool)
    assert (mask == expected).all()
    assert chexmask.rle_encode(expected) == "2 2 6 3"
    assert not chexmask.rle_decode(float("nan"), 3, 4).any()
    random = np.random.default_rng(0).random((17, 23)) > 0.6
    assert (chexmask.rle_decode(chexmask.rle_encode(random), 17, 23) == random).all()
    with pytest.raises(ValueError, match="outside"):
        chexmask.rle_decode("10 5", 3, 4)
    with pytest.raises(ValueError, match="odd number"):
        chexmask.rle_decode("1 2 3", 3, 4)


def _write_chexmask(path, rows):
    header = ["dicom_id", "Dice RCA (Max)", "Dice RCA (Mean)", "Landmarks", "Left Lung", "Right Lung", "Heart", "Height", "Width"]
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for image_id, masks, landmarks in rows:
            h, w = masks["right lung"].shape
            writer.writerow([image_id, 0.9, 0.8, landmarks, chexmask.rle_encode(masks["left lung"]), chexmask.rle_encode(masks["right lung"]),
                             chexmask.rle_encode(masks["heart"]), h, w])


def test_chexmask_table_backend(tmp_path):
    h, w = 80, 100
    masks = {k: np.zeros((h, w), bool) for k in ("right lung", "left lung", "heart")}
    masks["right lung"][10:70, 10:40] = True
    masks["left lung"][10:70, 60:90] = True
    masks["heart"][50:75, 40:65] = True
    landmarks = str(np.arange(240).reshape(120, 2).tolist())
    path = tmp_path / "MIMIC-CXR-JPG.csv.gz"
    _write_chexmask(path, [("img1", masks, landmarks), ("other", masks, landmarks)])
    rows = dict(chexmask.iter_chexmask_rows(path))
    assert set(rows) == {"img1", "other"}
    assert chexmask.parse_landmarks(rows["img1"]["Landmarks"])[119].tolist() == [238, 239]
    assert set(get_backend("anatomy", "chexmask", path=path, image_ids=["other"]).rows) == {"other"}
    backend = get_backend("anatomy", "chexmask", path=path)
    out = backend(_image("img1", 40, 50))  # half the CheXmask resolution: nearest resize
    assert out["right lung"].shape == (1, 40, 50) and out["right lung"].dtype == np.uint8
    assert out["right lung"][0, 5:35, 5:20].all() and out["right lung"].sum() == 30 * 15
    assert out["heart"][0, 25:37, 20:32].all()
    zones = sum(out[z].astype(int) for z in vocab.LUNG_ZONES["left lung"])
    assert (zones == out["left lung"]).all()
    data = AnatomyMasksd(backend=backend)({"image": _image("missing")})
    assert "no row for image 'missing'" in data["cue_errors"][0]["error"]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a CheXmask table"):
        get_backend("anatomy", "chexmask", path=bad)


def test_png_folder_anatomy(tmp_path):
    folder = tmp_path / "img1"
    folder.mkdir()
    for label, cols in (("right lung", slice(5, 20)), ("left lung", slice(30, 45)), ("heart", slice(20, 30))):
        mask = np.zeros((40, 50), np.uint8)
        mask[10:30, cols] = 255
        Image.fromarray(mask).save(folder / f"{label}.png")
    out = get_backend("anatomy", "png_folder", root=tmp_path)(_image())
    assert set(out) == {"right lung", "left lung", "heart"}
    assert out["heart"].sum() == 20 * 10
    (folder / "heart.png").unlink()
    with pytest.raises(CueError, match="'heart.png' is missing"):
        get_backend("anatomy", "png_folder", root=tmp_path)(_image())


def test_folder_counterfactual(tmp_path):
    x_hat = np.full((1, 40, 50), 900.0, np.float32)
    np.save(tmp_path / "img1.npy", x_hat)
    Image.fromarray(np.full((36, 45), 51, np.uint8)).save(tmp_path / "img2.png")  # 8-bit, smaller than the image
    data = Counterfactuald(backend="folder", root=tmp_path)({"image": _image("img1")})
    assert np.asarray(data["counterfactual"]).tolist() == x_hat.tolist()
    data = Counterfactuald(backend="folder", root=tmp_path)({"image": _image("img2")})
    assert data["counterfactual"].shape == (1, 40, 50)
    assert np.allclose(np.asarray(data["counterfactual"]), 51 / 255 * 4095, atol=1e-2)  # rescaled to the image's I_max
    data = Counterfactuald(backend="folder", root=tmp_path)({"image": _image("img3")})
    assert "no counterfactual for image 'img3'" in data["cue_errors"][0]["error"]


def test_csv_boxes(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text(
        "image_id,class_name,class_id,x_min,y_min,x_max,y_max,score\n"
        "img1,nodule/mass,8,5,6,20,30,0.7\n"
        "img1,aortic enlargement,0,1,1,10,10,0.9\n"
        "img1,lung opacity,,2,3,80,90,\n"
        "img2,No finding,14,,,,,\n"
    )
    d = DetectLesionBoxesd(backend="csv", path=path)({"image": _image("img1")})
    assert d["boxes"].tolist() == [[5, 6, 20, 30], [2, 3, 50, 40]]  # excluded class dropped, clipped to 50x40
    assert d["box_scores"].tolist() == pytest.approx([0.7, 1.0]) and d["box_classes"].tolist() == [8, 7]
    d = DetectLesionBoxesd(backend="csv", path=path)({"image": _image("img2")})
    assert d["boxes"].shape == (0, 4) and d["box_classes"].dtype == np.int64
