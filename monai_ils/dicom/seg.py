"""DICOM Segmentation (BINARY) of one study: one segment per grounded finding mask (the heart for
cardiomegaly), coded with ``monai_ils.codes``, referencing the source image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from monai_ils import __version__, codes, vocab
from monai_ils.dicom.geometry import with_display_geometry
from monai_ils.dicom.uids import derived_uid
from monai_ils.generation.findings import GroundedFinding

MANUFACTURER = "MONAI"
MODEL_NAME = "monai-ils"
SEG_SERIES_NUMBER = 901


@dataclass
class Segment:
    """One finding's segment: its number in the SEG and the finding (index into the study's findings)."""

    number: int
    finding_index: int
    label: str


def segment_findings(findings: Sequence[GroundedFinding], require_location: bool = True) -> list[tuple[int, GroundedFinding]]:
    """The findings that get a segment: positive ones with a non-empty mask (grounded lung lesions, and
    cardiomegaly with its heart mask). ``require_location=False`` also takes lung lesions without a
    grounded location (a model's answer to an instruction that names none)."""
    out = []
    for index, finding in enumerate(findings):
        lesion = finding.effective_lesion_type
        if not finding.is_positive or lesion is None or finding.mask is None or not finding.mask.any():
            continue
        if lesion in vocab.ORGAN_LEVEL_LESION_TYPES or finding.grounded_location or not require_location:
            out.append((index, finding))
    return out


def _coded(code):
    from highdicom.sr import CodedConcept

    return CodedConcept(code.value, code.scheme_designator, code.meaning)


def algorithm_identification(backends: Mapping[str, str] | None = None):
    """highdicom's AlgorithmIdentificationSequence naming monai-ils, its version and the backends used."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dcm_codes

    parameters = {str(k): str(v) for k, v in (backends or {}).items()} or None
    return hd.AlgorithmIdentificationSequence(
        name="monai-ils", family=dcm_codes.cid7162.ArtificialIntelligence, version=__version__, source="MONAI",
        parameters=parameters,
    )


def _anatomic_regions(labels: Sequence[str]):
    items = []
    for label in labels:
        anatomy = codes.anatomy_code(label)
        item = _coded(anatomy.structure)
        if anatomy.laterality is not None:
            item.AnatomicRegionModifierSequence = [_coded(anatomy.laterality)]
        items.append(item)
    return items


def segment_description(number: int, finding: GroundedFinding, study_key: str, backends=None):
    import highdicom as hd

    lesion = finding.effective_lesion_type
    if lesion in vocab.ORGAN_LEVEL_LESION_TYPES:
        category, kind, regions, label = codes.ANATOMICAL_STRUCTURE, codes.anatomy_code(vocab.HEART).structure, [], f"heart ({lesion})"
    else:
        category, kind, regions, label = codes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE, codes.lesion_code(lesion), list(finding.grounded_location), lesion
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label[:64],
        segmented_property_category=_coded(category),
        segmented_property_type=_coded(kind),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(backends),
        tracking_uid=derived_uid("segment", study_key, number),
        tracking_id=f"{label} {number}"[:64],
    )
    if regions:
        description.AnatomicRegionSequence = _anatomic_regions(regions)
    return description


def build_segmentation(source: Dataset, findings: Sequence[GroundedFinding], study_key: str,
                       backends: Mapping[str, str] | None = None, notes: Sequence[str] = (), require_location: bool = True):
    """``(Segmentation, [Segment])`` or ``(None, [])`` when no finding has a mask.

    Masks must have the source's size (Rows x Columns); a mismatch is an error naming the finding.
    """
    import highdicom as hd

    chosen = segment_findings(findings, require_location)
    if not chosen:
        return None, []
    shape = (int(source.Rows), int(source.Columns))
    masks, segments, descriptions = [], [], []
    for number, (index, finding) in enumerate(chosen, start=1):
        if finding.mask.shape != shape:
            raise ValueError(f"study {study_key!r}: the mask of finding {index} ({finding.effective_lesion_type}) is "
                             f"{finding.mask.shape}, the source image is {shape}.")
        descriptions.append(segment_description(number, finding, study_key, backends))
        segments.append(Segment(number, index, descriptions[-1].SegmentLabel))
        masks.append(finding.mask)
    view, geometry_notes = with_display_geometry(source)
    pixel_array = np.stack(masks, axis=-1)[None].astype(np.uint8)  # (frames=1, rows, cols, segments)
    all_notes = [*notes, *geometry_notes]
    seg = hd.seg.Segmentation(
        source_images=[view],
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=derived_uid("seg-series", source.SOPInstanceUID),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=derived_uid("seg", source.SOPInstanceUID),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=f"monai-ils {__version__}",
        device_serial_number="0",
        content_label="ILS",
        content_description="Grounded findings of the report (monai-ils)"[:64],
        series_description="monai-ils lesion segmentation",
        omit_empty_frames=False,
    )
    if all_notes:
        seg.ImageComments = "; ".join(all_notes)[:10240]
    return seg, segments
