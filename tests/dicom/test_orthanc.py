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
