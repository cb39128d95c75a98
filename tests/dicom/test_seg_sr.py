"""SEG and TID 1500 SR of a study on the real CR RG1_UNCR.dcm, checked by dciodvfy and read back with
highdicom and pydicom; PNG input gives a new study; the SEG geometry passes OHIF's orientation rule."""

from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from monai_ils import __version__, codes
from monai_ils.dicom import OHIF_CR_ORIENTATION, export_study_dicom, ohif_orientation_verdict
from monai_ils.dicom.source import NO_ORIGINAL_NOTE
from tests.dicom.conftest import SENTENCES, dciodvfy_errors, grounding, study_masks


def _code(item):
    return (item.CodeValue, item.CodingSchemeDesignator)


def _rg1_with_spacing(rg1, tmp_path, spacing=(0.2, 0.25)):
    ds = copy.deepcopy(rg1)
    ds.PixelSpacing = list(spacing)
    path = tmp_path / "rg1_spaced.dcm"
    ds.save_as(str(path))
    return path


@pytest.fixture(scope="module")
def exported(rg1_path, rg1, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom_rg1")
    files = export_study_dicom(grounding(rg1_path, (rg1.Rows, rg1.Columns)), folder, backends={"anatomy": "classical"})
    return folder, files


def test_seg_and_sr_pass_dciodvfy(exported):
    folder, files = exported
    assert files == {"seg": "seg.dcm", "sr": "sr.dcm"}
    for name in files.values():
        assert dciodvfy_errors(folder / name) == [], name


def test_seg_segments_codes_references_and_pixels(exported, rg1):
    folder, _ = exported
    seg = hd.seg.segread(str(folder / "seg.dcm"))
    assert seg.SegmentationType == "BINARY" and seg.get_segment_numbers() == [1, 2]
    opacity, heart = seg.get_segment_description(1), seg.get_segment_description(2)
    assert _code(opacity.segmented_property_category) == ("49755003", "SCT")
    assert _code(opacity.segmented_property_type) == ("112001", "DCM")
    [region] = opacity.AnatomicRegionSequence
    assert _code(region) == ("281394001", "SCT") and _code(region.AnatomicRegionModifierSequence[0]) == ("24028007", "SCT")
    assert _code(heart.segmented_property_type) == ("80891009", "SCT") and heart.SegmentLabel == "heart (cardiomegaly)"
    algorithm = opacity.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "monai-ils" and algorithm.AlgorithmVersion == __version__
    assert "anatomy=classical" in algorithm.AlgorithmParameters
    assert seg.StudyInstanceUID == rg1.StudyInstanceUID
    assert seg.get_source_image_uids() == [(rg1.StudyInstanceUID, rg1.SeriesInstanceUID, rg1.SOPInstanceUID)]
    pixels = seg.get_pixels_by_source_instance([rg1.SOPInstanceUID], segment_numbers=[1, 2])
    expected_opacity, expected_heart = study_masks((rg1.Rows, rg1.Columns))
    assert pixels.shape == (1, rg1.Rows, rg1.Columns, 2)
    assert np.array_equal(pixels[0, ..., 0] > 0, expected_opacity) and np.array_equal(pixels[0, ..., 1] > 0, expected_heart)


def test_seg_geometry_is_what_ohif_overlays_on_a_cr(exported, rg1):
    folder, _ = exported
    seg = pydicom.dcmread(str(folder / "seg.dcm"))
    assert "ImageOrientationPatient" not in rg1  # the CR has no geometry: OHIF assumes its default
    iop = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    assert [float(v) for v in iop] == list(OHIF_CR_ORIENTATION)
    assert ohif_orientation_verdict(iop, None) == "planar"
    assert "new frame of reference" in seg.ImageComments
    # the rule itself: a typical default orientation is orthogonal to OHIF's CR plane, a rotated one is in plane
    assert ohif_orientation_verdict([1, 0, 0, 0, 1, 0], None) == "perpendicular"
    assert ohif_orientation_verdict([0, 0, -1, 0, 1, 0], None) == "planar"
    assert ohif_orientation_verdict([0.7071, 0.7071, 0, 0, 0, -1], None) == "oblique"
    assert rg1.PixelSpacing == [0, 0]  # building the SEG left the source untouched


def _groups(sr_path):
    sr = hd.sr.ComprehensiveSR.from_dataset(pydicom.dcmread(str(sr_path)))
    return hd.sr.MeasurementReport.from_sequence([sr])


def _texts(group, code):
    return [item.TextValue for item in group[0].ContentSequence if item.ValueType == "TEXT"
            and _code(item.ConceptNameCodeSequence[0]) == (code.value, code.scheme_designator)]


def _evaluation(group, name):
    return [_code(e.value) for e in group.get_qualitative_evaluations(name=name)]


def test_sr_measurement_groups(exported, rg1):
    folder, _ = exported
    sr = pydicom.dcmread(str(folder / "sr.dcm"))
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.StudyInstanceUID == rg1.StudyInstanceUID
    report = _groups(folder / "sr.dcm")
    planar = report.get_planar_roi_measurement_groups()
    assert [_code(g.finding_type) for g in planar] == [("112001", "DCM"), ("287272002", "SCT")]
    opacity = planar[0]
    assert _texts(opacity, codes.COMMENT) == [SENTENCES[0]]
    assert _texts(opacity, codes.GROUNDED_LOCATION) == ["right lung base"]
    sites = [(_code(s.value), _code(s.get_laterality() if hasattr(s, "get_laterality") else s.ContentSequence[0].ConceptCodeSequence[0]))
             for s in opacity.finding_sites]
    assert sites == [(("281394001", "SCT"), ("24028007", "SCT")), (("281393007", "SCT"), ("24028007", "SCT"))]
    assert _evaluation(opacity, codes.PRESENCE) == [("52101004", "SCT")]
    assert _evaluation(opacity, codes.CERTAINTY) == [("ILS004", "99MONAIILS")]
    seg_ref = opacity.referenced_segmentation_frame
    seg = pydicom.dcmread(str(folder / "seg.dcm"))
    image_items = [i for i in opacity[0].ContentSequence if i.ValueType == "IMAGE"]
    refs = {i.ConceptNameCodeSequence[0].CodeMeaning: i.ReferencedSOPSequence[0] for i in image_items}
    assert refs["Referenced Segmentation Frame"].ReferencedSOPInstanceUID == seg.SOPInstanceUID
    assert refs["Referenced Segmentation Frame"].ReferencedSegmentNumber == 1
    assert refs["Source Image for Segmentation"].ReferencedSOPInstanceUID == rg1.SOPInstanceUID
    assert seg_ref is not None
    assert opacity.get_measurements() == []  # RG1's PixelSpacing is 0\0: no area in mm2
    others = report.get_image_measurement_groups()
    effusion = [g for g in others if g.finding_type is not None and _code(g.finding_type) == ("60046008", "SCT")]
    assert len(effusion) == 1 and _evaluation(effusion[0], codes.PRESENCE) == [("272519000", "SCT")]
    assert _texts(effusion[0], codes.COMMENT) == [SENTENCES[2]]
    [ctr] = [g for g in others if g.get_measurements(name=codes.CARDIOTHORACIC_RATIO)]
    assert ctr.get_measurements(name=codes.CARDIOTHORACIC_RATIO)[0].value == pytest.approx(0.57)
    assert _evaluation(ctr, codes.SEVERITY) == [("6736007", "SCT")]  # 0.57: moderate


def test_area_in_mm2_where_the_source_has_pixel_spacing(rg1, tmp_path):
    path = _rg1_with_spacing(rg1, tmp_path)
    files = export_study_dicom(grounding(path, (rg1.Rows, rg1.Columns)), tmp_path / "out")
    assert dciodvfy_errors(tmp_path / "out" / files["sr"]) == []
    planar = _groups(tmp_path / "out" / "sr.dcm").get_planar_roi_measurement_groups()
    [area] = planar[0].get_measurements(name=codes.AREA)
    assert area.value == pytest.approx(100 * 150 * 0.2 * 0.25) and area.unit.value == "mm2"
    seg = pydicom.dcmread(str(tmp_path / "out" / "seg.dcm"))
    assert [float(v) for v in seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing] == [0.2, 0.25]


def test_png_input_makes_a_new_study_with_a_note(rg1, tmp_path):
    shape = (64, 48)
    image = (np.arange(shape[0] * shape[1]) % 251).astype(np.uint8).reshape(shape)
    png = tmp_path / "cxr.png"
    Image.fromarray(image).save(png)
    study = grounding(png, shape, ctr=0.48, image=image)
    opacity = np.zeros(shape, bool)
    opacity[40:50, 5:15] = True
    heart = np.zeros(shape, bool)
    heart[20:40, 15:35] = True
    study.findings[0].mask, study.findings[1].mask = opacity, heart
    files = export_study_dicom(study, tmp_path / "out")
    assert files == {"image": "image.dcm", "seg": "seg.dcm", "sr": "sr.dcm"}
    datasets = {k: pydicom.dcmread(str(tmp_path / "out" / v)) for k, v in files.items()}
    for name in files.values():
        assert dciodvfy_errors(tmp_path / "out" / name) == [], name
    assert len({ds.StudyInstanceUID for ds in datasets.values()}) == 1
    assert datasets["image"].SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert NO_ORIGINAL_NOTE in datasets["image"].ImageComments and NO_ORIGINAL_NOTE in datasets["seg"].ImageComments
    assert "no original DICOM" in datasets["sr"].SeriesDescription
    assert np.array_equal(datasets["image"].pixel_array, image)
    seg = hd.seg.segread(str(tmp_path / "out" / "seg.dcm"))
    pixels = seg.get_pixels_by_source_instance([datasets["image"].SOPInstanceUID], segment_numbers=[1, 2])
    assert np.array_equal(pixels[0, ..., 0] > 0, opacity)
    report = _groups(tmp_path / "out" / "sr.dcm")
    [ctr] = [g for g in report.get_image_measurement_groups() if g.get_measurements(name=codes.CARDIOTHORACIC_RATIO)]
    assert _evaluation(ctr, codes.SEVERITY) == [("17621005", "SCT")]  # 0.48: normal


def test_rerun_gives_identical_uids_and_drops_a_stale_seg(rg1_path, rg1, tmp_path):
    study = grounding(rg1_path, (rg1.Rows, rg1.Columns))
    export_study_dicom(study, tmp_path)
    first = pydicom.dcmread(str(tmp_path / "seg.dcm")).SOPInstanceUID
    export_study_dicom(study, tmp_path)
    assert pydicom.dcmread(str(tmp_path / "seg.dcm")).SOPInstanceUID == first
    for finding in study.findings:
        finding.mask = None
    assert export_study_dicom(study, tmp_path) == {"sr": "sr.dcm"}
    assert not (tmp_path / "seg.dcm").exists()
    assert dciodvfy_errors(tmp_path / "sr.dcm") == []


def test_mask_of_another_size_is_refused_with_the_finding_named(rg1_path, rg1, tmp_path):
    study = grounding(rg1_path, (rg1.Rows, rg1.Columns))
    study.findings[0].mask = np.ones((10, 10), bool)
    with pytest.raises(ValueError, match=r"finding 0 \(opacity\) is \(10, 10\)"):
        export_study_dicom(study, tmp_path)


def test_processor_reports_a_failed_export_as_stage_dicom(tmp_path):
    from monai_ils.data.mimic_cxr import StudyRecord
    from monai_ils.dicom import DicomExporter
    from monai_ils.generation.processor import PairsProcessor
    from monai_ils.generation.results import StageError

    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    study = grounding(png, (8, 8))  # a PNG, and the grounding carries no image to make a Secondary Capture from
    processor = PairsProcessor(lambda record: study, dicom_exporter=DicomExporter(tmp_path / "dicom"))
    record = StudyRecord(key="s1", image_path=str(png), view_position="PA", report_text="x")
    with pytest.raises(StageError, match="carries no image") as caught:
        processor(record)
    assert caught.value.stage == "dicom"
    with pytest.raises(ValueError, match="increasing order"):
        DicomExporter(tmp_path, ctr_bands=(("mild", 0.6), ("normal", 0.5)))
