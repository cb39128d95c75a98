"""A real ``monailabel start_server`` on 127.0.0.1, called with MONAI Label's own Python client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.label.conftest import INSTRUCTION
from tests.label.label_data import SYNTH_REPORT, expected_lesion_mask


@pytest.fixture(scope="module")
def ml_client(label_server, tmp_path_factory):
    from monailabel.client import MONAILabelClient

    return MONAILabelClient(label_server, tmpdir=str(tmp_path_factory.mktemp("client")))


def _mask(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_client_infers_with_an_instruction(ml_client, expected_prediction):
    info = ml_client.info()
    assert info["models"]["rosalia"]["config"]["instruction"] == ""
    label, params = ml_client.infer("rosalia", "small_m1", {"instruction": INSTRUCTION})
    assert str(label).endswith(".png")
    np.testing.assert_array_equal(_mask(label), expected_prediction.mask.astype(np.uint8))
    assert params["answer"] == expected_prediction.text
    assert params["image"]["photometric_interpretation"] == "MONOCHROME1"


def test_client_reviews_grounding(ml_client):
    label, params = ml_client.infer("grounding", "synth", {"report": SYNTH_REPORT})
    np.testing.assert_array_equal(_mask(label), expected_lesion_mask().astype(np.uint8) * 5)
    assert params["labels_present"] == ["consolidation"]


def test_client_bad_request_then_server_still_serves(ml_client):
    from monailabel.client.client import MONAILabelClientException

    with pytest.raises(MONAILabelClientException) as error:
        ml_client.infer("rosalia", "small_m1", {})
    assert "Status: 400" in error.value.msg and "instruction" in error.value.msg
    with pytest.raises(MONAILabelClientException) as error:
        ml_client.infer("rosalia", "..%2F..%2Fetc%2Fpasswd", {"instruction": INSTRUCTION})
    assert "Status: 4" in error.value.msg
    label, _ = ml_client.infer("rosalia", "small_m1", {"instruction": INSTRUCTION, "mode": "segment"})
    assert _mask(label).shape == (245, 231)


def test_twenty_concurrent_requests_all_answered(ml_client, expected_prediction):
    instructions = [INSTRUCTION if i % 2 == 0 else "Segment the effusion." for i in range(20)]

    def call(text):
        label, params = ml_client.infer("rosalia", "small_m1", {"instruction": text, "mode": "segment"})
        return _mask(label), params

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(call, instructions))
    assert len(results) == 20
    for text, (mask, params) in zip(instructions, results):
        assert params["instruction"] == text and params["mode"] == "segment"
        assert mask.shape == expected_prediction.mask.shape
    # the same instruction gives the same mask whatever the interleaving
    np.testing.assert_array_equal(results[0][0], results[2][0])
    np.testing.assert_array_equal(results[1][0], results[3][0])
