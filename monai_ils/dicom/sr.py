"""TID 1500 Measurement Report (Comprehensive SR) of one study: one measurement group per finding
(finding type, reported sites, presence, certainty, the report sentence as a (121106, DCM, "Comment") TEXT
item, the grounded locations, a reference to its SEG segment and its area in mm2), plus the
cardiothoracic ratio with its severity band."""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataset import Dataset

from monai_ils import __version__, codes, vocab
from monai_ils.dicom.geometry import pixel_spacing_mm
from monai_ils.dicom.seg import MANUFACTURER, Segment
from monai_ils.dicom.uids import derived_uid
from monai_ils.generation.findings import GroundedFinding

SR_SERIES_NUMBER = 902
MAX_TEXT = 1024  # UT allows more; a sentence never needs it


def _text(name, value: str):
    from highdicom.sr import RelationshipTypeValues, TextContentItem

    return TextContentItem(name=name, value=str(value)[:MAX_TEXT], relationship_type=RelationshipTypeValues.CONTAINS)


def _finding_sites(labels: Sequence[str]):
    import highdicom as hd

    sites = []
    for label in labels:
        anatomy = codes.anatomy_code(label)
        sites.append(hd.sr.FindingSite(anatomic_location=anatomy.structure, laterality=anatomy.laterality))
    return sites


def _evaluations(finding: GroundedFinding):
    import highdicom as hd

    return [
        hd.sr.QualitativeEvaluation(codes.PRESENCE, codes.PRESENCE_VALUES[finding.presence]),
        hd.sr.QualitativeEvaluation(codes.CERTAINTY, codes.CERTAINTY_VALUES[finding.certainty]),
    ]


def sentence_of(finding: GroundedFinding, sentences: Sequence[str] | None) -> str | None:
    index = finding.sentence_index
    if not sentences or index is None or not 1 <= index <= len(sentences):
        return None
    return sentences[index - 1]


def lesion_area_mm2(finding: GroundedFinding, source: Dataset) -> float | None:
    spacing = pixel_spacing_mm(source)
    if spacing is None or finding.mask is None:
        return None
    return float(finding.mask.sum()) * spacing[0] * spacing[1]


def _cite_segment_not_frame(item) -> None:
    """Reference the SEG by segment number only, and the single-frame source without a frame number.

    highdicom 0.22 writes both ReferencedFrameNumber and ReferencedSegmentNumber (which DICOM's image
    reference macro forbids together) and gives the single-frame source the SEG's frame number.
    """
    for child in item.ContentSequence:
        if child.ValueType == "IMAGE":
            for ref in child.ReferencedSOPSequence:
                if "ReferencedFrameNumber" in ref:
                    del ref.ReferencedFrameNumber
        if "ContentSequence" in child:
            _cite_segment_not_frame(child)


def finding_group(index: int, finding: GroundedFinding, study_key: str, source: Dataset, seg=None,
                  segment: Segment | None = None, sentences: Sequence[str] | None = None):
    """TID 1410 (with a segment) or TID 1501 (without) for one finding."""
    import highdicom as hd

    lesion = finding.effective_lesion_type
    tracking = hd.sr.TrackingIdentifier(uid=derived_uid("finding", study_key, index),
                                        identifier=f"finding {index + 1}: {lesion or finding.entity or 'other'}"[:64])
    common = dict(
        tracking_identifier=tracking,
        finding_type=codes.lesion_code(lesion) if lesion else None,
        finding_sites=_finding_sites(finding.reported_location) or None,
        qualitative_evaluations=_evaluations(finding),
    )
    if segment is not None:
        reference = hd.sr.ReferencedSegmentationFrame.from_segmentation(seg, segment_number=segment.number)
        area = lesion_area_mm2(finding, source)
        measurements = None
        if area is not None:
            measurements = [hd.sr.Measurement(name=codes.AREA, value=round(area, 2), unit=codes.SQUARE_MILLIMETER)]
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=reference, measurements=measurements, **common)
        _cite_segment_not_frame(group[0])
    else:
        group = hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    content = group[0].ContentSequence
    sentence = sentence_of(finding, sentences)
    if sentence:
        content.append(_text(codes.COMMENT, sentence))
    for label in finding.grounded_location if segment is not None else ():
        content.append(_text(codes.GROUNDED_LOCATION, label))
    return group


def ctr_group(ctr: float, study_key: str, bands=vocab.CTR_SEVERITY_BANDS):
    import highdicom as hd

    band = vocab.ctr_severity(ctr, bands)
    if band not in codes.SEVERITY_VALUES:
        raise ValueError(f"CTR band {band!r} has no code; use band names {list(codes.SEVERITY_VALUES)}.")
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=derived_uid("ctr", study_key), identifier="cardiothoracic ratio"),
        finding_sites=_finding_sites([vocab.HEART]),
        measurements=[hd.sr.Measurement(name=codes.CARDIOTHORACIC_RATIO, value=round(float(ctr), 4), unit=codes.RATIO_UNIT)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.SEVERITY, codes.SEVERITY_VALUES[band])],
    )


def build_measurement_report(source: Dataset, findings: Sequence[GroundedFinding], study_key: str, seg=None,
                             segments: Sequence[Segment] = (), sentences: Sequence[str] | None = None,
                             ctr: float | None = None, ctr_bands=vocab.CTR_SEVERITY_BANDS, notes: Sequence[str] = ()):
    """A ``highdicom.sr.ComprehensiveSR`` holding the TID 1500 report of the study's findings."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dcm_codes

    by_finding = {s.finding_index: s for s in segments}
    groups = [finding_group(i, f, study_key, source, seg, by_finding.get(i), sentences) for i, f in enumerate(findings)]
    if ctr is not None:
        groups.append(ctr_group(ctr, study_key, ctr_bands))
    observer = hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", "monai-ils"), name="monai-ils", manufacturer_name=MANUFACTURER,
            model_name=f"monai-ils {__version__}"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.CHEST_XRAY_PROCEDURE,
        imaging_measurements=groups or None,
    )
    evidence = [source] + ([seg] if seg is not None else [])
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=derived_uid("sr-series", source.SOPInstanceUID),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=derived_uid("sr", source.SOPInstanceUID),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description="monai-ils report grounding" + (" (no original DICOM)" if notes else ""),
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    sr.CodingSchemeIdentificationSequence = [codes.private_scheme_item()]
    return sr
