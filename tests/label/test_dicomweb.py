"""DICOMweb datastore: a MONOCHROME1 CR fetched by SeriesInstanceUID is segmented from its DICOM file."""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
from PIL import Image

from tests.label.conftest import INSTRUCTION, app_conf, make_client
from tests.label.dicomweb_fake import FakeDICOMweb


def test_rosalia_on_dicomweb_series(label_data, expected_prediction, tmp_path):
    from monailabel.config import settings
    from monailabel.interfaces.utils.app import clear_cache

    path = label_data["studies"] / "small_m1.dcm"
    series = str(pydicom.dcmread(str(path), stop_before_pixels=True).SeriesInstanceUID)
    saved = settings.MONAI_LABEL_DICOMWEB_CACHE_PATH, settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER
    settings.MONAI_LABEL_DICOMWEB_CACHE_PATH = str(tmp_path / "cache")
    settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER = {"Modality": "CR"}
    try:
        with FakeDICOMweb([path]) as server:
            client = make_client(server.url, app_conf(label_data["rosalia"], label_data["grounding_bundle"]))
            response = client.post(f"/infer/rosalia?image={series}&output=image", data={"params": json.dumps({"instruction": INSTRUCTION})})
            assert response.status_code == 200, response.text
            label = np.asarray(Image.open(io.BytesIO(response.content)))
            np.testing.assert_array_equal(label, expected_prediction.mask.astype(np.uint8))
            params = {"params": json.dumps({"instruction": INSTRUCTION})}
            bad = client.post("/infer/rosalia?image=..%2F..%2Fx&output=image", data=params)
            assert bad.status_code == 400 and "not valid" in bad.json()["detail"]
            bad = client.post("/infer/rosalia?image=1.2.3abc&output=image", data=params)
            assert bad.status_code == 400 and "SeriesInstanceUID" in bad.json()["detail"]
    finally:
        settings.MONAI_LABEL_DICOMWEB_CACHE_PATH, settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER = saved
        clear_cache()
