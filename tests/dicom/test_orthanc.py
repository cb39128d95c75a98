"""A PACS check: Orthanc (Debian, DICOMweb plugin, loopback) receives the CR, the SEG and the SR through
STOW-RS from dicomweb-client, and QIDO-RS lists all three in the CR's study."""

from __future__ import annotations

import pydicom
import pytest

from monai_ils.dicom import export_study_dicom
from tests.dicom.conftest import grounding

dicomweb_client = pytest.importorskip("dicomweb_client")


def test_stow_rs_then_qido_rs_lists_image_seg_and_sr(orthanc_server, rg1_path, rg1, tmp_path):
    files = export_study_dicom(grounding(rg1_path, (rg1.Rows, rg1.Columns)), tmp_path)
    datasets = [pydicom.dcmread(rg1_path)] + [pydicom.dcmread(str(tmp_path / files[k])) for k in ("seg", "sr")]
    client = dicomweb_client.api.DICOMwebClient(url=orthanc_server.dicomweb_url)
    answer = client.store_instances(datasets=datasets)
    assert not answer.get("FailedSOPSequence"), answer.get("FailedSOPSequence")
    assert len(answer.ReferencedSOPSequence) == 3

    found = client.search_for_instances(study_instance_uid=rg1.StudyInstanceUID)
    by_modality = {pydicom.Dataset.from_json(item).Modality: pydicom.Dataset.from_json(item) for item in found}
    assert set(by_modality) == {"CR", "SEG", "SR"}
    assert by_modality["SEG"].SOPInstanceUID == datasets[1].SOPInstanceUID
    assert by_modality["SR"].SOPInstanceUID == datasets[2].SOPInstanceUID
    series = client.search_for_series(study_instance_uid=rg1.StudyInstanceUID)
    assert len(series) == 3
    # WADO-RS gives the SEG back byte-for-byte in content (segments intact)
    seg = client.retrieve_instance(rg1.StudyInstanceUID, datasets[1].SeriesInstanceUID, datasets[1].SOPInstanceUID)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["opacity", "heart (cardiomegaly)"]


def test_stow_command_stores_an_exported_png_study(orthanc_server, tmp_path, capsys):
    import numpy as np

    from monai_ils.dicom.stow import main

    shape = (32, 40)
    image = np.full(shape, 100, np.uint8)
    study = grounding(tmp_path / "x.png", shape, image=image)
    opacity = np.zeros(shape, bool)
    opacity[20:25, 5:10] = True
    study.findings[0].mask, study.findings[1].mask = opacity, opacity.copy()
    study.findings[1].mask[0:3, 0:3] = True
    study.study_key = "png_study"
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "x.png")
    export_study_dicom(study, tmp_path / "dicom" / "png_study")
    assert main([str(tmp_path / "dicom"), "--url", orthanc_server.dicomweb_url]) == 0
    assert capsys.readouterr().out.strip() == "png_study: 3 stored, 0 refused"
    uid = pydicom.dcmread(str(tmp_path / "dicom" / "png_study" / "image.dcm")).StudyInstanceUID
    client = dicomweb_client.api.DICOMwebClient(url=orthanc_server.dicomweb_url)
    found = client.search_for_instances(study_instance_uid=uid)
    assert sorted(pydicom.Dataset.from_json(i).Modality for i in found) == ["OT", "SEG", "SR"]
