"""Coded concepts for DICOM outputs: one table per vocabulary of ``monai_ils.vocab``.

Every lesion type and anatomical label of ``vocab.py`` has one code here; the DICOM writers
(``monai_ils.dicom``) read nothing else. Sources, in order of preference:

* DICOM's own context groups as shipped in ``pydicom.sr.codedict`` (CID 645, 3700, 6102, 6124/6126,
  7150/7151, 12248, 244, 241, 6130 and the SNOMED CT / DCM concepts they hold);
* SNOMED CT concepts that DICOM's groups lack (pneumonia, atelectasis, lung consolidation), marked
  "SNOMED CT" below;
* a private scheme ``99MONAIILS`` (DICOM's rule: designators starting with "99" are private) for the
  few concept *names* of our own tool (presence, certainty, cardiothoracic ratio, grounded location).

Anatomy is coded as a structure plus a laterality modifier (e.g. "Lower zone of lung" + "Right" for
``right lung base``), the form DICOM's segmentation property types and TID 1500 finding sites use.

| monai-ils name | code (scheme, value, meaning) | modifier |
|---|---|---|
| cardiomegaly | SCT 287272002 Cardiomegaly (CID 12248) | |
| pneumonia | SCT 233604007 Pneumonia (SNOMED CT) | |
| atelectasis | SCT 46621007 Atelectasis (SNOMED CT) | |
| opacity | DCM 112001 Opacity (CID 6102) | |
| consolidation | SCT 95436008 Lung consolidation (SNOMED CT) | |
| edema | SCT 19242006 Pulmonary edema (CID 3700) | |
| effusion | SCT 60046008 Pleural effusion (CID 645) | |
| heart | SCT 80891009 Heart | |
| lung | SCT 39607008 Lung | |
| right / left lung | SCT 39607008 Lung | SCT 24028007 Right / 7771000 Left |
| * apical zone lung | SCT 86598002 Apex of Lung | Right / Left |
| * upper zone lung | SCT 281392002 Upper zone of lung (CID 6126) | Right / Left |
| * mid zone lung | SCT 281393007 Middle zone of lung (CID 6126) | Right / Left |
| * lung base | SCT 281394001 Lower zone of lung (CID 6126) | Right / Left |
| lung upper lobe right / left | SCT 45653009 Upper lobe of lung | Right / Left |
| lung middle lobe right | SCT 72481006 Middle lobe of right lung | |
| lung lower lobe right / left | SCT 90572001 Lower lobe of lung | Right / Left |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pydicom.sr.coding import Code

from monai_ils import vocab

PRIVATE_SCHEME = "99MONAIILS"
PRIVATE_SCHEME_NAME = "monai-ils private concepts"
PRIVATE_SCHEME_VERSION = "1"

# --- generic concepts (DICOM / SNOMED CT) -------------------------------------------------------
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically Abnormal Structure")
ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
RIGHT = Code("24028007", "SCT", "Right")
LEFT = Code("7771000", "SCT", "Left")
PRESENT = Code("52101004", "SCT", "Present")
ABSENT = Code("272519000", "SCT", "Absent")
SEVERITY = Code("246112005", "SCT", "Severity")
AREA = Code("42798000", "SCT", "Area")
COMMENT = Code("121106", "DCM", "Comment")
FINDING = Code("121071", "DCM", "Finding")
SQUARE_MILLIMETER = Code("mm2", "UCUM", "square millimeter")
RATIO_UNIT = Code("1", "UCUM", "no units")
CHEST_XRAY_PROCEDURE = Code("399208008", "SCT", "Plain chest X-ray")

SEVERITY_VALUES: Mapping[str, Code] = MappingProxyType({
    "normal": Code("17621005", "SCT", "Normal"),
    "mild": Code("255604002", "SCT", "Mild"),
    "moderate": Code("6736007", "SCT", "Moderate"),
    "severe": Code("24484000", "SCT", "Severe"),
})
"""Values of the cardiothoracic-ratio severity band (CID 6130 plus 'Normal')."""

# --- our own concept names (private scheme) -----------------------------------------------------
PRESENCE = Code("ILS001", PRIVATE_SCHEME, "Presence of finding")
CERTAINTY = Code("ILS002", PRIVATE_SCHEME, "Certainty of finding in report")
CERTAINTY_VALUES: Mapping[str, Code] = MappingProxyType({
    "definitive": Code("ILS003", PRIVATE_SCHEME, "Definitive"),
    "tentative": Code("ILS004", PRIVATE_SCHEME, "Tentative"),
})
CARDIOTHORACIC_RATIO = Code("ILS005", PRIVATE_SCHEME, "Cardiothoracic ratio")
GROUNDED_LOCATION = Code("ILS006", PRIVATE_SCHEME, "Grounded location")
PRESENCE_VALUES: Mapping[str, Code] = MappingProxyType({"positive": PRESENT, "negative": ABSENT})

# --- lesions -------------------------------------------------------------------------------------
LESION_CODES: Mapping[str, Code] = MappingProxyType({
    "cardiomegaly": Code("287272002", "SCT", "Cardiomegaly"),
    "pneumonia": Code("233604007", "SCT", "Pneumonia"),
    "atelectasis": Code("46621007", "SCT", "Atelectasis"),
    "opacity": Code("112001", "DCM", "Opacity"),
    "consolidation": Code("95436008", "SCT", "Lung consolidation"),
    "edema": Code("19242006", "SCT", "Pulmonary edema"),
    "effusion": Code("60046008", "SCT", "Pleural effusion"),
})


# --- anatomy -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnatomyCode:
    """A structure code and its laterality (None when the code is already sided or unpaired)."""

    structure: Code
    laterality: Code | None = None


_LUNG = Code("39607008", "SCT", "Lung")
_APEX = Code("86598002", "SCT", "Apex of Lung")
_UPPER_ZONE = Code("281392002", "SCT", "Upper zone of lung")
_MID_ZONE = Code("281393007", "SCT", "Middle zone of lung")
_LOWER_ZONE = Code("281394001", "SCT", "Lower zone of lung")
_UPPER_LOBE = Code("45653009", "SCT", "Upper lobe of lung")
_LOWER_LOBE = Code("90572001", "SCT", "Lower lobe of lung")

ANATOMY_CODES: Mapping[str, AnatomyCode] = MappingProxyType({
    "heart": AnatomyCode(Code("80891009", "SCT", "Heart")),
    "lung": AnatomyCode(_LUNG),
    "right lung": AnatomyCode(_LUNG, RIGHT),
    "left lung": AnatomyCode(_LUNG, LEFT),
    "right apical zone lung": AnatomyCode(_APEX, RIGHT),
    "right upper zone lung": AnatomyCode(_UPPER_ZONE, RIGHT),
    "right mid zone lung": AnatomyCode(_MID_ZONE, RIGHT),
    "right lung base": AnatomyCode(_LOWER_ZONE, RIGHT),
    "left apical zone lung": AnatomyCode(_APEX, LEFT),
    "left upper zone lung": AnatomyCode(_UPPER_ZONE, LEFT),
    "left mid zone lung": AnatomyCode(_MID_ZONE, LEFT),
    "left lung base": AnatomyCode(_LOWER_ZONE, LEFT),
    "lung upper lobe right": AnatomyCode(_UPPER_LOBE, RIGHT),
    "lung middle lobe right": AnatomyCode(Code("72481006", "SCT", "Middle lobe of right lung")),
    "lung lower lobe right": AnatomyCode(_LOWER_LOBE, RIGHT),
    "lung upper lobe left": AnatomyCode(_UPPER_LOBE, LEFT),
    "lung lower lobe left": AnatomyCode(_LOWER_LOBE, LEFT),
})


def lesion_code(lesion_type: str) -> Code:
    return LESION_CODES[vocab.check_lesion_type(lesion_type)]


def anatomy_code(label: str) -> AnatomyCode:
    return ANATOMY_CODES[vocab.check_anatomy_label(label)]


def private_scheme_item():
    """The CodingSchemeIdentificationSequence item that declares ``99MONAIILS`` in a file using it."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeVersion = PRIVATE_SCHEME_VERSION
    item.CodingSchemeResponsibleOrganization = "monai-ils"
    return item
