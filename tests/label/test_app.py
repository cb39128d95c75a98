"""The app under FastAPI's TestClient: /info, /infer of both tasks with hand-checked masks, bad requests."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.label.conftest import INSTRUCTION, MAX_PIXELS, app_conf, dump, make_client
from tests.label.label_data import SYNTH_REPORT, expected_lesion_mask

CONSOLIDATION = 5  # vocab.LESION_TYPES.index("consolidation") + 1


@pytest.fixture(scope="module")
def client(label_data):
    return make_client(label_data["studies"], app_conf(label_data["rosalia"], label_data["grounding_bundle"]))


def infer(client, model, image, params=None, output="image", **kwargs):
    import json

    url = f"/infer/{model}?image={image}" + (f"&output={output}" if output else "")
    return client.post(url, data={"params": json.dumps(params or {})}, **kwargs)


def png(response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_info_lists_tasks_with_instruction_field(client):
    info = client.get("/info/").json()
    assert set(info["models"]) == {"rosalia", "grounding"}, dump(info)
    rosalia = info["models"]["rosalia"]
    assert rosalia["config"]["instruction"] == ""  # a string key: OHIF shows a text field
    assert rosalia["dimension"] == 2 and rosalia["labels"] == {"lesion": 1}
    grounding = info["models"]["grounding"]
    assert grounding["config"]["report"] == ""
    assert grounding["labels"]["cardiomegaly"] == 1 and grounding["labels"]["consolidation"] == CONSOLIDATION
    assert info["unavailable"] == {}
    assert {"RG1_UNCR", "small_m1", "synth"} <= set(client.get("/datastore/?output=all").json()["objects"])


def test_rosalia_mask_and_answer_on_monochrome1_dicom(client, label_data, expected_prediction, tiny_predictor):
    response = infer(client, "rosalia", "small_m1", {"instruction": INSTRUCTION})
    assert response.status_code == 200, response.text
    label = png(response)
    assert label.shape == expected_prediction.mask.shape  # rows x columns of the DICOM
    assert 0 < expected_prediction.mask.mean() < 1  # a mask with both classes, so the layout is checked
    np.testing.assert_array_equal(label, expected_prediction.mask.astype(np.uint8))
    # the stored MONOCHROME1 pixels, not inverted, give another mask: the app did invert them
    raw = tiny_predictor.predict(label_data["small_pixels"].astype(np.float32), INSTRUCTION)
    assert not np.array_equal(raw.mask, expected_prediction.mask)
    result = infer(client, "rosalia", "small_m1", {"instruction": INSTRUCTION}, output="json").json()
    assert result["answer"] == expected_prediction.text and result["instruction"] == INSTRUCTION
    assert result["image"]["photometric_interpretation"] == "MONOCHROME1"
    assert result["foreground_pixels"] == int(expected_prediction.mask.sum())
    assert result["label_names"] == {"lesion": 1}


def test_rosalia_nrrd_as_ohif_requests_it(client, expected_prediction, tmp_path):
    """OHIF asks for .nrrd/uint8 and copies the raw data row by row into its labelmap."""
    import nrrd

    params = {"instruction": INSTRUCTION, "result_extension": ".nrrd", "result_dtype": "uint8", "mode": ["generate", "segment"]}
    response = infer(client, "rosalia", "small_m1", params)
    assert response.status_code == 200, response.text
    path = tmp_path / "label.nrrd"
    path.write_bytes(response.content)
    data, header = nrrd.read(str(path), index_order="C")  # C order: [row][column], as OHIF reads the buffer
    assert data.dtype == np.uint8
    np.testing.assert_array_equal(data, expected_prediction.mask.astype(np.uint8))


def test_grounding_returns_the_generated_mask(client):
    response = infer(client, "grounding", "synth", {"report": SYNTH_REPORT})
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(png(response), expected_lesion_mask().astype(np.uint8) * CONSOLIDATION)
    result = infer(client, "grounding", "synth", {"report": SYNTH_REPORT}, output="json").json()
    assert result["labels_present"] == ["consolidation"]
    finding = next(f for f in result["findings"] if f["lesion"] == "consolidation")
    assert finding["grounded_location"] == ["right lung base"] and finding["label"] == CONSOLIDATION
    assert finding["pixels"] == int(expected_lesion_mask().sum())
    assert any(p["positive"] and "consolidation" in p["instruction"] for p in result["pairs"])


def _corrupt_dicom(tmp_path):
    path = tmp_path / "corrupt.dcm"
    path.write_bytes(b"this is not a DICOM file" * 100)
    return path


def _oversized_png(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((2100, 2100), np.uint8)).save(path)  # 4.41 M pixels > MAX_PIXELS
    return path


@pytest.mark.parametrize(
    "model, image, params, upload, status, words",
    [
        ("nosuchmodel", "small_m1", {"instruction": INSTRUCTION}, None, 404, ["nosuchmodel", "rosalia"]),
        ("rosalia", "small_m1", {}, None, 400, ["instruction", "Segment the"]),
        ("rosalia", "small_m1", {"instruction": "   "}, None, 400, ["instruction"]),
        ("grounding", "synth", {}, None, 400, ["report"]),
        ("rosalia", "../../etc/passwd", {"instruction": INSTRUCTION}, None, 400, ["not valid"]),
        ("rosalia", "/etc/passwd", {"instruction": INSTRUCTION}, None, 400, ["server path"]),
        ("rosalia", "..", {"instruction": INSTRUCTION}, None, 400, ["not valid"]),
        ("rosalia", "no_such_image", {"instruction": INSTRUCTION}, None, 404, ["no_such_image", "datastore"]),
        ("rosalia", "small_m1", {"instruction": INSTRUCTION, "result_extension": ".dcm"}, None, 400, ["result_extension"]),
        ("rosalia", "small_m1", {"instruction": INSTRUCTION, "mode": "chat"}, None, 400, ["mode"]),
        ("rosalia", "x", {"instruction": INSTRUCTION}, _corrupt_dicom, 400, ["not a readable DICOM"]),
        ("rosalia", "x", {"instruction": INSTRUCTION}, _oversized_png, 413, ["4410000 pixels", str(MAX_PIXELS), "max_image_pixels"]),
    ],
    ids=["unknown-model", "missing-instruction", "blank-instruction", "missing-report", "traversal", "absolute-path",
         "dotdot", "unknown-image", "bad-extension", "bad-mode", "corrupt-image", "oversized-image"],
)
def test_bad_requests_get_4xx_and_server_keeps_serving(client, tmp_path, model, image, params, upload, status, words, expected_prediction):
    files = None
    if upload is not None:
        path = upload(tmp_path)
        files = {"file": (path.name, path.read_bytes())}
    response = infer(client, model, image, params, files=files)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail
    ok = infer(client, "rosalia", "small_m1", {"instruction": INSTRUCTION, "mode": "segment"})
    assert ok.status_code == 200, ok.text


def test_uploaded_png_is_segmented(client, label_data, tmp_path):
    """An uploaded file (no datastore id) goes through the same loader; the label has the upload's size."""
    path = tmp_path / "upload.png"
    Image.fromarray(np.asarray(Image.open(label_data["studies"] / "synth.png"))).save(path)
    files = {"file": (path.name, path.read_bytes())}
    response = infer(client, "rosalia", "ignored", {"instruction": INSTRUCTION}, files=files)
    assert response.status_code == 200, response.text
    assert png(response).shape == (128, 128)
    # precomputed cues are found by image id, which an upload does not have: a 422 that says so
    response = infer(client, "grounding", "ignored", {"report": SYNTH_REPORT}, files=files)
    assert response.status_code == 422 and "no anatomy masks" in response.json()["detail"], response.text


def test_unconfigured_rosalia_is_reported_not_fatal(label_data):
    client = make_client(label_data["studies"], app_conf(None, label_data["grounding_bundle"]))
    try:
        info = client.get("/info/").json()
        assert "rosalia" not in info["models"] and "grounding" in info["models"]
        assert "rosalia_path" in info["unavailable"]["rosalia"]
        response = infer(client, "rosalia", "small_m1", {"instruction": INSTRUCTION})
        assert response.status_code == 503
        assert "rosalia_path" in response.json()["detail"]
        assert infer(client, "grounding", "synth", {"report": SYNTH_REPORT}).status_code == 200
    finally:
        from monailabel.interfaces.utils.app import clear_cache

        clear_cache()
