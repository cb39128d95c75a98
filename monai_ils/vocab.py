"""The vocabulary of monai-ils: one source of truth for names, label ids and thresholds.

Everything that names a lesion, a location, a detector class or a threshold imports it from
here, so a bundle config that overrides a value changes it everywhere at once.

Sources: MIMIC-ILS / ROSALIA paper (Sec. 3, Tables 2, 7, 8; Appendix A.3, A.4, B, C, D) and the
CXAS label map (PAX-Ray++ classes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# --------------------------------------------------------------------------------------------
# Lesions and question types
# --------------------------------------------------------------------------------------------
LESION_TYPES: tuple[str, ...] = (
    "cardiomegaly",
    "pneumonia",
    "atelectasis",
    "opacity",
    "consolidation",
    "edema",
    "effusion",
)
"""The seven lesion types of MIMIC-ILS (paper Sec. 3.2, Appendix B)."""

LESION_ABBREVIATIONS: Mapping[str, str] = MappingProxyType(
    {"cardiomegaly": "CA", "pneumonia": "PN", "atelectasis": "AT", "opacity": "OP", "consolidation": "CO", "edema": "ED", "effusion": "EF"}
)

INFERABLE_LESION_TYPES: tuple[str, ...] = ("pneumonia", "atelectasis", "edema")
"""Lesions that reports usually reach by inference from an opacity; they get lesion-inference questions."""

ORGAN_LEVEL_LESION_TYPES: tuple[str, ...] = ("cardiomegaly",)
"""Lesions whose mask is an organ (the heart) rather than a grounded anomaly."""

GENERIC_LESION_TYPE = "opacity"
"""Tentative findings and lesion-inference questions use this broader term (Appendix C.1)."""

LESION_LABEL_IDS: Mapping[str, int] = MappingProxyType({lesion: i + 1 for i, lesion in enumerate(LESION_TYPES)})
"""Label value of each lesion type in multi-label masks (0 is background), e.g. MONAI Label results."""

QUESTION_TYPES: tuple[str, ...] = ("basic", "global", "lesion_inference")

PRESENCE_VALUES: tuple[str, ...] = ("positive", "negative")
CERTAINTY_VALUES: tuple[str, ...] = ("definitive", "tentative")

# --------------------------------------------------------------------------------------------
# Anatomy: CXAS labels used by the pipeline
# --------------------------------------------------------------------------------------------
CXAS_LABEL_IDS: Mapping[str, int] = MappingProxyType(
    {
        "heart": 121,
        "lung": 134,
        "right lung": 135,
        "left lung": 136,
        "right upper zone lung": 141,
        "right mid zone lung": 142,
        "right lung base": 143,
        "right apical zone lung": 144,
        "left upper zone lung": 145,
        "left mid zone lung": 146,
        "left lung base": 147,
        "left apical zone lung": 148,
        "lung lower lobe left": 149,
        "lung upper lobe left": 150,
        "lung lower lobe right": 151,
        "lung middle lobe right": 152,
        "lung upper lobe right": 153,
    }
)
"""CXAS channel index of every anatomical label the pipeline uses (159-class PAX-Ray++ model)."""

CXAS_NUM_CLASSES = 159

RIGHT_LUNG = "right lung"
LEFT_LUNG = "left lung"
HEART = "heart"

LUNG_ZONES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        RIGHT_LUNG: ("right apical zone lung", "right upper zone lung", "right mid zone lung", "right lung base"),
        LEFT_LUNG: ("left apical zone lung", "left upper zone lung", "left mid zone lung", "left lung base"),
    }
)
"""The eight lung zones, per side, from apex to base."""

LUNG_LOBES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        RIGHT_LUNG: ("lung upper lobe right", "lung middle lobe right", "lung lower lobe right"),
        LEFT_LUNG: ("lung upper lobe left", "lung lower lobe left"),
    }
)

LUNG_LABELS: tuple[str, ...] = (
    *LUNG_ZONES[RIGHT_LUNG],
    *LUNG_ZONES[LEFT_LUNG],
    *LUNG_LOBES[LEFT_LUNG],
    *LUNG_LOBES[RIGHT_LUNG],
    RIGHT_LUNG,
    LEFT_LUNG,
)
"""The 15 lung categories that location mapping step 2 may produce (paper Fig. 10)."""

ANATOMY_LABELS: tuple[str, ...] = (*LUNG_LABELS, HEART)
"""Every anatomical label a reported location can be mapped to."""

LUNG_BASES: tuple[str, ...] = ("right lung base", "left lung base")

INSTRUCTION_LOCATIONS: Mapping[str, str] = MappingProxyType(
    {
        RIGHT_LUNG: "right lung",
        LEFT_LUNG: "left lung",
        "right apical zone lung": "right apical zone",
        "right upper zone lung": "right upper zone lung",
        "right mid zone lung": "right mid zone lung",
        "right lung base": "right lung base",
        "left apical zone lung": "left apical zone",
        "left upper zone lung": "left upper zone lung",
        "left mid zone lung": "left mid zone lung",
        "left lung base": "left lung base",
    }
)
"""Valid target locations of basic instructions (Table 8): anatomical label -> phrase in the instruction."""

LOCATION_CATEGORIES: tuple[str, ...] = (
    "thoracic spine",
    "cervical spine",
    "lumbar spine",
    "clavicle",
    "scapula",
    "rib",
    "sternum",
    "diaphragm",
    "mediastinum",
    "abdomen",
    "heart",
    "breast",
    "trachea",
    "vessels",
    "lung",
    "pleura",
    "lateral view location",
)
"""Location mapping step 1: a report's location term is first mapped to one of these (paper Fig. 10)."""

# --------------------------------------------------------------------------------------------
# Lesion detector (YOLO trained on VinBigData)
# --------------------------------------------------------------------------------------------
VINBIG_CLASSES: tuple[str, ...] = (
    "aortic enlargement",
    "atelectasis",
    "calcification",
    "cardiomegaly",
    "consolidation",
    "ILD",
    "infiltration",
    "lung opacity",
    "nodule/mass",
    "other lesion",
    "pleural effusion",
    "pleural thickening",
    "pneumothorax",
    "pulmonary fibrosis",
)
VINBIG_EXCLUDED_CLASS_IDS: frozenset[int] = frozenset({0, 9, 12})
"""Aortic enlargement, other lesion and pneumothorax are not hyperintense lung lesions (Appendix A.3)."""
VINBIG_HYPERINTENSE_CLASS_IDS: tuple[int, ...] = tuple(
    i for i in range(len(VINBIG_CLASSES)) if i not in VINBIG_EXCLUDED_CLASS_IDS
)

# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
FRONTAL_VIEWS: tuple[str, ...] = ("PA", "AP")


# --------------------------------------------------------------------------------------------
# Thresholds (Table 7) and quality control (Appendix D)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroundingThresholds:
    """Thresholds of Eq. 1 and Algorithm 1 for one lesion type.

    ano: anomaly pixel threshold on x_ano in [0, 1].
    anatomy: IoU of a box with the union of the reported anatomy masks (c1).
    conf: detector confidence (c2).
    signal: share of box pixels inside the anomaly map (c3).
    size: IoU of a box with the right or the left lung (c4).
    """

    ano: float = 0.10
    anatomy: float = 0.25
    conf: float = 0.20
    signal: float = 0.20
    size: float = 0.10

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"GroundingThresholds.{field.name} must be a number in [0, 1], got {value!r}.")

    def replace(self, **changes: float) -> GroundingThresholds:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ThresholdTable:
    """Table 7: one set of thresholds for edema, which spreads widely, and one for every other lesion.

    A bundle config overrides it with, e.g.,
    ``{"_target_": "monai_ils.vocab.ThresholdTable.from_dict", "config": {"edema": {"ano": 0.02}}}``.
    """

    general: GroundingThresholds = GroundingThresholds()
    edema: GroundingThresholds = GroundingThresholds(ano=0.01, anatomy=0.25, conf=0.01, signal=0.20, size=0.10)

    def for_lesion(self, lesion_type: str) -> GroundingThresholds:
        return self.edema if check_lesion_type(lesion_type) == "edema" else self.general

    @classmethod
    def from_dict(cls, config: Mapping[str, Mapping[str, float]] | None = None) -> ThresholdTable:
        """Defaults of Table 7 with the given per-group overrides (keys ``general`` and ``edema``)."""
        config = dict(config or {})
        unknown = set(config) - {"general", "edema"}
        if unknown:
            raise ValueError(f"ThresholdTable: unknown group(s) {sorted(unknown)}; expected 'general' and/or 'edema'.")
        base = cls()
        return cls(
            general=base.general.replace(**config.get("general", {})),
            edema=base.edema.replace(**config.get("edema", {})),
        )


DEFAULT_THRESHOLDS = ThresholdTable()

CARDIOMEGALY_NEGATIVE_MAX_CTR = 0.45
"""Cardiomegaly negatives are generated only when the cardiothoracic ratio is at most this (Appendix D.3)."""

CTR_SEVERITY_BANDS: tuple[tuple[str, float], ...] = (("normal", 0.51), ("mild", 0.55), ("moderate", 0.60), ("severe", float("inf")))
"""Cardiothoracic-ratio bands as (name, upper bound): normal < 0.51, mild 0.51-0.55, moderate 0.55-0.60,
severe > 0.60 (the band scheme of a chest X-ray multi-task model); the DICOM SR reports the band."""


def ctr_severity(ctr: float, bands=CTR_SEVERITY_BANDS) -> str:
    """The band of ``ctr``: the first whose upper bound is above it (a bound itself belongs to the next band)."""
    bands = tuple((str(name), float(upper)) for name, upper in bands)
    uppers = [upper for _, upper in bands]
    if not bands or uppers != sorted(uppers):
        raise ValueError(f"CTR severity bands must be (name, upper bound) pairs in increasing order, got {bands!r}.")
    for name, upper in bands:
        if float(ctr) < upper:
            return name
    raise ValueError(f"CTR {ctr} is above the last band's upper bound {uppers[-1]}; end the bands with inf.")


def thresholds_for(
    lesion_type: str, thresholds: ThresholdTable | GroundingThresholds | Mapping | None = None
) -> GroundingThresholds:
    """Resolve the thresholds a transform should use for ``lesion_type``.

    ``thresholds`` may be None (Table 7), a ThresholdTable, a GroundingThresholds (used as is) or a
    mapping accepted by ``ThresholdTable.from_dict``.
    """
    if isinstance(thresholds, GroundingThresholds):
        return thresholds
    if thresholds is None:
        table = DEFAULT_THRESHOLDS
    elif isinstance(thresholds, ThresholdTable):
        table = thresholds
    elif isinstance(thresholds, Mapping):
        table = ThresholdTable.from_dict(thresholds)
    else:
        raise TypeError(f"thresholds must be a ThresholdTable, GroundingThresholds or mapping, got {type(thresholds).__name__}.")
    return table.for_lesion(lesion_type)


# --------------------------------------------------------------------------------------------
# Instruction and answer templates (Table 2)
# --------------------------------------------------------------------------------------------
SEG_TOKEN = "[SEG]"

INSTRUCTION_TEMPLATES: Mapping[str, str] = MappingProxyType(
    {
        "basic": "Segment the {target} in the {location}.",
        "global": "Segment the {target}.",
        "lesion_inference": "Segment the opacity in the {location} and predict its type.",
    }
)

ANSWER_TEMPLATES: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("basic", "positive"): "[SEG]",
        ("basic", "negative"): "[SEG] There is no {target} in the {location}.",
        ("global", "positive"): "[SEG] It is located in the {location}.",
        ("global", "negative"): "[SEG] There is no {target}.",
        ("lesion_inference", "definitive"): "[SEG] It is highly suggestive of {lesion}.",
        ("lesion_inference", "tentative"): "[SEG] It possibly reflects {lesion}.",
        ("lesion_inference", "negative"): "[SEG] There is no opacity in the {location}.",
    }
)
"""Answer of each (question type, outcome); lesion-inference positives are keyed by certainty."""


def join_locations(locations: list[str] | tuple[str, ...]) -> str:
    """Phrase several instruction locations as the paper does: 'a, b and c'."""
    names = [INSTRUCTION_LOCATIONS.get(loc, loc) for loc in locations]
    if not names:
        raise ValueError("join_locations: at least one location is needed.")
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# --------------------------------------------------------------------------------------------
# Validation helpers shared by transforms, parsers and configs
# --------------------------------------------------------------------------------------------
def check_lesion_type(lesion_type: str) -> str:
    """Return the canonical lesion name or raise a ValueError that lists the valid ones."""
    name = str(lesion_type).strip().lower()
    if name not in LESION_TYPES:
        raise ValueError(f"Unknown lesion type {lesion_type!r}; expected one of {list(LESION_TYPES)}.")
    return name


def check_anatomy_label(label: str) -> str:
    """Return the canonical anatomical label or raise a ValueError that lists the valid ones."""
    name = str(label).strip().lower()
    if name not in CXAS_LABEL_IDS:
        raise ValueError(f"Unknown anatomical label {label!r}; expected one of {list(CXAS_LABEL_IDS)}.")
    return name
