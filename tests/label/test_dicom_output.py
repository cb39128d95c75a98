"""output=dicom_seg for both tasks (highdicom SEG read back with highdicom/pydicom, checked by dciodvfy, OHIF's
CR geometry rule) and a final save with a DICOMweb datastore storing SEG (+SR) on Orthanc (QIDO-RS)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image

from monai_ils import codes
from monai_ils.dicom import ohif_orientation_verdict
from tests.dicom.conftest import dciodvfy_errors
from tests.label.conftest import INSTRUCTION, app_conf, make_client
from tests.label.label_data import SYNTH_REPORT, expected_lesion_mask

hd = pytest.importorskip("highdicom")
CONSOLIDATION = 5


def synthetic_cr(label_data, folder):
    """The synthetic study as a MONOCHROME2 CR (no patient geometry) in ``folder``, with its cues copied
    under its SOPInstanceUID (the id grounding looks cues up by); returns (path, grounding config path)."""
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(str(label_data["studies"] / "small_m1.dcm"))
    pixels = np.asarray(Image.open(label_data["studies"] / "synth.png")).astype(np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.PhotometricInterpretation, ds.BitsStored, ds.HighBit = "MONOCHROME2", 8, 7
    for keyword in ("WindowCenter", "WindowWidth", "VOILUTSequence", "PixelSpacing", "ImagerPixelSpacing"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = pixels.tobytes()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "synthcr.dcm"
    ds.save_as(str(path))
    key = str(ds.SOPInstanceUID)
    cues = label_data["grounding_bundle"].parent
    config = json.loads(label_data["grounding_bundle"].read_text())
    new = folder / "cues"
    shutil.copytree(cues / "anatomy" / "synth", new / "anatomy" / key)
    (new / "counterfactual").mkdir()
    shutil.copy(cues / "counterfactual" / "synth.npy", new / "counterfactual" / f"{key}.npy")
    rows = (cues / "boxes.csv").read_text().splitlines()
    (new / "boxes.csv").write_text("\n".join([rows[0], rows[1].replace("synth", key, 1)]) + "\n")
    config["anatomy_kwargs"]["root"] = str(new / "anatomy")
    config["counterfactual_kwargs"]["root"] = str(new / "counterfactual")
    config["boxes_kwargs"]["path"] = str(new / "boxes.csv")
    config_path = folder / "grounding.json"
    config_path.write_text(json.dumps(config))
    return path, config_path


@pytest.fixture(scope="module")
def dicom_studies(label_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_studies")
    studies = root / "studies"
    studies.mkdir()
    shutil.copy(label_data["studies"] / "small_m1.dcm", studies)
    shutil.copy(label_data["studies"] / "synth.png", studies)
    path, config = synthetic_cr(label_data, root)
    shutil.move(str(path), studies / path.name)
    return {"studies": studies, "config": config, "synth": studies / path.name}


@pytest.fixture(scope="module")
def client(label_data, dicom_studies):
    # entered, so the app starts as under `monailabel start_server` (its routes are in place before any request)
    with make_client(dicom_studies["studies"], app_conf(label_data["rosalia"], dicom_studies["config"])) as client:
        yield client


def infer_seg(client, model, image, params):
    return client.post(f"/infer/{model}?image={image}&output=dicom_seg", data={"params": json.dumps(params)})


def check_seg(content, tmp_path, source):
    """The SEG as a user reads it: dciodvfy clean, highdicom parse, references and OHIF geometry of the source."""
    path = tmp_path / "seg.dcm"
    path.write_bytes(content)
    assert dciodvfy_errors(path) == []
    seg = hd.seg.segread(str(path))
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert referenced.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    iop = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    assert ohif_orientation_verdict(iop, getattr(source, "ImageOrientationPatient", None)) == "planar"
    assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns)
    return seg


def test_rosalia_dicom_seg(client, dicom_studies, expected_prediction, tmp_path):
    response = infer_seg(client, "rosalia", "small_m1", {"instruction": INSTRUCTION})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    source = pydicom.dcmread(str(dicom_studies["studies"] / "small_m1.dcm"), stop_before_pixels=True)
    seg = check_seg(response.content, tmp_path, source)
    assert len(seg.SegmentSequence) == 1
    segment = seg.SegmentSequence[0]
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.lesion_code("opacity").value
    assert segment.AnatomicRegionSequence[0].CodeValue == codes.anatomy_code("right lung base").structure.value
    mask = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])[0, :, :, 0]
    assert expected_prediction.mask.any()
    np.testing.assert_array_equal(mask.astype(bool), expected_prediction.mask.astype(bool))


def test_rosalia_dicom_seg_of_an_upload(client, dicom_studies, expected_prediction, tmp_path):
    path = dicom_studies["studies"] / "small_m1.dcm"
    response = client.post("/infer/rosalia?output=dicom_seg", data={"params": json.dumps({"instruction": INSTRUCTION})},
                           files={"file": ("small_m1.dcm", path.read_bytes(), "application/dicom")})
    assert response.status_code == 200, response.text
    seg = check_seg(response.content, tmp_path, pydicom.dcmread(str(path), stop_before_pixels=True))
    mask = seg.get_pixels_by_source_instance([seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID],
                                             segment_numbers=[1])[0, :, :, 0]
    np.testing.assert_array_equal(mask.astype(bool), expected_prediction.mask.astype(bool))


def test_rosalia_dicom_seg_needs_a_lesion_type(client):
    response = infer_seg(client, "rosalia", "small_m1", {"instruction": "Segment the lesion."})
    assert response.status_code == 422 and "lesion type" in response.json()["detail"]


def test_grounding_dicom_seg(client, dicom_studies, tmp_path):
    response = infer_seg(client, "grounding", "synthcr", {"report": SYNTH_REPORT})
    assert response.status_code == 200, response.text
    source = pydicom.dcmread(str(dicom_studies["synth"]), stop_before_pixels=True)
    seg = check_seg(response.content, tmp_path, source)
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels == ["consolidation"]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.lesion_code("consolidation").value
    mask = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])[0, :, :, 0]
    np.testing.assert_array_equal(mask.astype(bool), expected_lesion_mask())


def test_dicom_seg_of_a_png_is_refused(client):
    response = infer_seg(client, "grounding", "synth", {"report": SYNTH_REPORT})
    assert response.status_code == 400 and "not DICOM" in response.json()["detail"]


@pytest.fixture
def own_orthanc(tmp_path):
    """An Orthanc of this test's own: QIDO-RS listings must hold only what this test stored."""
    from tests.support.orthanc import OrthancServer, orthanc_unavailable_reason

    reason = orthanc_unavailable_reason()
    if reason:
        pytest.skip(reason)
    (tmp_path / "orthanc").mkdir()
    with OrthancServer(workdir=str(tmp_path / "orthanc")) as server:
        yield server


def test_save_stores_seg_and_sr_on_orthanc(own_orthanc, label_data, tmp_path):
    """A final save with the DICOMweb datastore STOW-RSes the SEG (+SR for grounding); QIDO-RS lists them."""
    from dicomweb_client.api import DICOMwebClient
    from monailabel.config import settings
    from monailabel.interfaces.utils.app import clear_cache
    from pydicom.uid import generate_uid

    synth, config = synthetic_cr(label_data, tmp_path / "cr")
    small = tmp_path / "small_m1.dcm"  # in a study of its own: the server is shared with tests/dicom
    ds = pydicom.dcmread(str(label_data["studies"] / "small_m1.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(str(small))
    for path in (synth, small):
        own_orthanc.upload(path)
    saved = settings.MONAI_LABEL_DICOMWEB_CACHE_PATH, settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER
    settings.MONAI_LABEL_DICOMWEB_CACHE_PATH = str(tmp_path / "cache")
    settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER = {"Modality": "CR"}
    web = DICOMwebClient(url=own_orthanc.dicomweb_url)
    try:
        client = make_client(own_orthanc.dicomweb_url, {**app_conf(label_data["rosalia"], config), "allow_datastore_writes": "true"}).__enter__()  # saving is a datastore write, off by default
        assert client.get("/info/").status_code == 200  # the app (and its endpoint guard) is built with this conf
        blank = io.BytesIO()
        Image.fromarray(np.zeros((128, 128), np.uint8)).save(blank, format="PNG")
        series = str(pydicom.dcmread(str(synth), stop_before_pixels=True).SeriesInstanceUID)
        response = client.put(f"/datastore/label?image={series}&tag=final", data={"params": "{}"},
                              files={"label": ("label.png", blank.getvalue(), "image/png")})
        assert response.status_code == 400 and "run a task on it" in response.json()["detail"], response.text
        for path, model, params, kinds in ((synth, "grounding", {"report": SYNTH_REPORT}, {"SEG", "SR"}),
                                           (small, "rosalia", {"instruction": INSTRUCTION}, {"SEG"})):
            source = pydicom.dcmread(str(path), stop_before_pixels=True)
            series = str(source.SeriesInstanceUID)
            response = client.post(f"/infer/{model}?image={series}&output=image", data={"params": json.dumps(params)})
            assert response.status_code == 200, response.text
            label = response.content
            response = client.put(f"/datastore/label?image={series}&tag=final", data={"params": "{}"},
                                  files={"label": ("label.png", io.BytesIO(label), "image/png")})
            assert response.status_code == 200, response.text
            found = web.search_for_instances(study_instance_uid=str(source.StudyInstanceUID))
            modalities = {pydicom.Dataset.from_json(f).Modality for f in found}
            assert kinds | {"CR"} <= modalities, modalities
            stored = {}
            for meta in (pydicom.Dataset.from_json(f) for f in found):
                if meta.Modality in ("SEG", "SR"):
                    ds = web.retrieve_instance(str(source.StudyInstanceUID), meta.SeriesInstanceUID, meta.SOPInstanceUID)
                    stored[meta.Modality] = tmp_path / f"{model}-{meta.Modality}.dcm"
                    ds.save_as(str(stored[meta.Modality]))
                    assert dciodvfy_errors(stored[meta.Modality]) == []
            seg = hd.seg.segread(str(stored["SEG"]))
            assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series
            assert response.json()["label"] == seg.SeriesInstanceUID  # the stored SEG series is the saved label
            mask = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])[0, :, :, 0].astype(bool)
            saved_label = np.asarray(Image.open(io.BytesIO(label))) > 0
            np.testing.assert_array_equal(mask, saved_label)
            if model == "grounding":
                np.testing.assert_array_equal(mask, expected_lesion_mask())
                report = hd.sr.srread(str(stored["SR"]))
                groups = report.content.get_planar_roi_measurement_groups()
                assert len(groups) == 1  # the consolidation; the negated effusion has no segment
                texts = [item.TextValue for item in groups[0][0].ContentSequence if item.ValueType == "TEXT"]
                assert "Consolidation in the right lung base." in texts
                cited = [ref.ReferencedSOPInstanceUID for item in groups[0][0].ContentSequence if item.ValueType == "IMAGE"
                         for ref in item.ReferencedSOPSequence]
                assert seg.SOPInstanceUID in cited  # TID 1410 cites the stored SEG
        # output=dicom_seg on a series fetched from the DICOMweb server
        source = pydicom.dcmread(str(small), stop_before_pixels=True)
        response = infer_seg(client, "rosalia", str(source.SeriesInstanceUID), {"instruction": INSTRUCTION})
        assert response.status_code == 200, response.text
        check_seg(response.content, tmp_path, source)
    finally:
        settings.MONAI_LABEL_DICOMWEB_CACHE_PATH, settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER = saved
        clear_cache()


def test_dicom_seg_from_a_started_server(label_server, label_data, expected_prediction, tmp_path):
    """`monailabel start_server`: the route is in place from start-up, answered by our SEG, not dcmqi."""
    import requests

    response = requests.post(f"{label_server}/infer/rosalia?image=small_m1&output=dicom_seg",
                             data={"params": json.dumps({"instruction": INSTRUCTION})}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    source = pydicom.dcmread(str(label_data["studies"] / "small_m1.dcm"), stop_before_pixels=True)
    seg = check_seg(response.content, tmp_path, source)
    assert seg.ManufacturerModelName == "monai-ils"
    mask = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])[0, :, :, 0]
    np.testing.assert_array_equal(mask.astype(bool), expected_prediction.mask.astype(bool))
