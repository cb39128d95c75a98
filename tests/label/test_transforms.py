"""The app's own transforms: URI resolution (series folders, DICOMweb NIfTI), header size checks, label maps."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from tests.label.conftest import APP_DIR

if str(APP_DIR) not in sys.path:
    sys.path.append(str(APP_DIR))

from lib.errors import BadRequest, NotFound, PayloadTooLarge, Unprocessable  # noqa: E402
from lib.transforms import CheckCXRSize, LabelMap, LabelMapd, RequireTextd, ResolveCXR  # noqa: E402


def test_resolve_series_folder_and_converted_nifti(label_data, tmp_path):
    dicom = label_data["studies"] / "small_m1.dcm"
    series = tmp_path / "1.2.3"
    series.mkdir()
    shutil.copy(dicom, series / "instance.dcm")
    resolve = ResolveCXR()
    assert resolve(str(series)) == str(series / "instance.dcm")
    (tmp_path / "1.2.3.nii.gz").write_bytes(b"converted")  # DICOMweb cache: <uid>.nii.gz beside <uid>/
    assert resolve(str(tmp_path / "1.2.3.nii.gz")) == str(series / "instance.dcm")
    (tmp_path / "lone.nii.gz").write_bytes(b"x")
    with pytest.raises(BadRequest, match="NIfTI input is not supported"):
        resolve(str(tmp_path / "lone.nii.gz"))
    shutil.copy(dicom, series / "second.dcm")
    with pytest.raises(Unprocessable, match="holds 2 DICOM instances"):
        resolve(str(series))
    with pytest.raises(NotFound):
        resolve(str(tmp_path / "missing.dcm"))


def test_size_check_reads_only_the_header(label_data):
    rows, cols = label_data["small_pixels"].shape
    assert CheckCXRSize(max_pixels=rows * cols, max_bytes=2**30)(label_data["studies"] / "small_m1.dcm") == (rows, cols)
    with pytest.raises(PayloadTooLarge, match=f"{cols} x {rows}"):
        CheckCXRSize(max_pixels=rows * cols - 1, max_bytes=2**30)(label_data["studies"] / "small_m1.dcm")
    with pytest.raises(PayloadTooLarge, match="MiB"):
        CheckCXRSize(max_pixels=10**9, max_bytes=1000)(label_data["studies"] / "small_m1.dcm")


def test_label_map_smaller_mask_wins_and_layout():
    big = np.zeros((4, 6), bool)
    big[:, :4] = True
    small = np.zeros((4, 6), bool)
    small[1:3, 2:5] = True
    label = LabelMap(transpose=False)({4: big, 7: small})
    expected = np.zeros((4, 6), np.uint8)
    expected[:, :4] = 4
    expected[1:3, 2:5] = 7
    np.testing.assert_array_equal(label, expected)
    np.testing.assert_array_equal(LabelMapd("pred")({"pred": small})["pred"], small.T.astype(np.uint8))  # (x, y) for MONAI Label's Writer


def test_require_text():
    assert RequireTextd("instruction")({"instruction": "  Segment the edema. "})["instruction"] == "Segment the edema."
    with pytest.raises(BadRequest, match="Missing parameter 'instruction'"):
        RequireTextd("instruction")({"instruction": ""})
    with pytest.raises(BadRequest, match="must be a string"):
        RequireTextd("instruction")({"instruction": 3})
    with pytest.raises(BadRequest, match="limit is 5"):
        RequireTextd("instruction", max_length=5)({"instruction": "Segment the edema."})
