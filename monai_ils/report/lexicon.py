"""Lexicon of the rule-based structurer: findings and their synonyms, devices, hedges and link phrases.

Synonym decisions (why a phrase maps where it does):

* opacity: "opacity/opacities/opacification", "airspace disease/process", "infiltrate", "haziness",
  "density", "ground-glass", "reticular/interstitial opacities". They all describe a hyperintense
  region without naming its cause, which is what the paper calls opacity.
* consolidation: "consolidation", "consolidative opacity", "airspace consolidation".
* pneumonia: "pneumonia", "pneumonitis", "infection"/"infectious process", "aspiration"; in CXR reports
  these name an infectious/inflammatory airspace process, which the dataset calls pneumonia.
* atelectasis: "atelectasis/atelectatic", "collapse" (lobar collapse is complete atelectasis).
* edema: "edema" when pulmonary ("pulmonary/interstitial/alveolar edema", "edema" alone).
  "vascular congestion", "venous congestion", "fluid overload" and "CHF" are NOT edema: congestion is
  vessel engorgement without fluid in the interstitium/airspaces, so it has no hyperintense lesion to
  ground; they are kept as other findings. "Soft tissue/subcutaneous edema" is not pulmonary either.
* effusion: "pleural effusion", "effusion", "pleural fluid", "hydrothorax". "Pericardial effusion" is
  kept apart (not pleural). "Blunting of the costophrenic angle" stays an other finding (it suggests
  but does not state an effusion).
* cardiomegaly: "cardiomegaly", "enlarged heart / cardiac silhouette", "cardiac / heart enlargement",
  "heart (size) is (mildly) enlarged / large", "heart size mildly enlarged", "increase in heart size" (but
  "no (interval) increase in heart size" is a comparison that claims neither an enlarged nor a normal heart);
  hedged (tentative): "borderline heart size", "heart is borderline in size", "upper limits of normal or
  mildly enlarged". "Enlarged cardiomediastinal silhouette" stays an other finding: the silhouette
  includes the mediastinum, so its enlargement may be mediastinal (vessels, nodes) rather than cardiac.
* not lesions: shadows of the breasts or nipples, piercings and artifacts are recognised only to be
  dropped, and an opacity a report explains as one of them, or as a hiatal hernia, granuloma or
  calcification ("retrocardiac density representing a hiatal hernia"), is not an opacity.

Everything else a report names as a disease or finding (pneumothorax, nodule, emphysema, ...) is kept
with ``lesion_type=None``: its location still counts when empty locations are computed. Devices are
never findings; their spans are masked so that no finding or location is read inside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LexiconEntry", "FINDING_LEXICON", "DEVICE_PATTERNS", "NONSPECIFIC_LESIONS", "compile_lexicon"]


@dataclass(frozen=True)
class LexiconEntry:
    pattern: str  # regex, matched case-insensitively on word boundaries
    lesion_type: str | None  # one of vocab.LESION_TYPES, or None for other findings
    name: str  # canonical entity name
    anchors: tuple[str, ...] = ()  # lower-case substrings, one of which every match contains (a fast pre-filter)
    finding: bool = True  # False: recognised only to explain an opacity away (a nipple shadow), never output


_ADV = r"(?:(?:mildly|moderately|markedly|severely|slightly|minimally|massively|substantially|significantly|somewhat|again|still|now|persistently|borderline|at\s+least)\s+)?"
_HEART = r"(?:heart(?:\s+size)?|cardiac\s+(?:silhouette|size|contours?|shadow)|size\s+of\s+the\s+(?:heart|cardiac\s+silhouette))"
_VERB = r"(?:\s+(?:is|are|remains?|appears?|seems?|looks?|has\s+become|is\s+again|is\s+now)){1,2}\s+"
# fixed-width look-behinds (Python's re needs them): the comparison phrases that precede "increase in ..."
_NO_COMPARISON = "".join(rf"(?<!\b{p} )" for p in ("no", "no interval", "no significant", "no further", "no significant interval"))

FINDING_LEXICON: tuple[LexiconEntry, ...] = (
    # --- cardiomegaly
    LexiconEntry(r"cardiomegaly", "cardiomegaly", "cardiomegaly", anchors=("cardiomegaly",)),
    LexiconEntry(r"cardiac\s+enlargement|enlargement\s+of\s+the\s+(?:heart|cardiac\s+silhouette)", "cardiomegaly", "cardiomegaly", anchors=("enlargement",)),
    LexiconEntry(rf"enlarged\s+(?:heart|cardiac\s+silhouette)|{_ADV}enlarged\s+{_HEART}", "cardiomegaly", "cardiomegaly", anchors=("enlarged",)),
    LexiconEntry(rf"{_HEART}{_VERB}(?:not\s+)?{_ADV}(?:top[-\s]normal\s+to\s+{_ADV})?enlarged", "cardiomegaly", "cardiomegaly", anchors=("enlarged",)),
    # "heart size mildly enlarged" (no verb), "the heart is mildly large", "mild heart enlargement"
    LexiconEntry(rf"{_HEART}\s+{_ADV}enlarged", "cardiomegaly", "cardiomegaly", anchors=("enlarged",)),
    LexiconEntry(rf"{_HEART}{_VERB}(?:not\s+)?{_ADV}large\b(?!\s+(?:lungs?|volumes?))", "cardiomegaly", "cardiomegaly", anchors=("large",)),
    LexiconEntry(r"heart\s+enlargement", "cardiomegaly", "cardiomegaly", anchors=("enlargement",)),
    # hedged: "borderline heart size", "heart is borderline in size", "upper limits of normal or mildly enlarged"
    LexiconEntry(rf"borderline\s+(?:enlarged\s+)?(?:heart|cardiac)\s+(?:size|silhouette)|{_HEART}{_VERB}borderline(?:\s+in\s+size|\s+enlarged|\s+large)?",
                 "cardiomegaly", "cardiomegaly", anchors=("borderline",)),
    LexiconEntry(rf"upper\s+limits?\s+of\s+normal\s+(?:to|or)\s+{_ADV}(?:enlarged|large)", "cardiomegaly", "cardiomegaly", anchors=("upper",)),
    # "no (interval) increase in heart size" compares with a prior study: it says nothing of the size itself
    LexiconEntry(rf"{_NO_COMPARISON}increase(?:d)?\s+in\s+(?:the\s+)?(?:heart|cardiac)\s+(?:size|silhouette)|increased\s+(?:heart|cardiac)\s+size",
                 "cardiomegaly", "cardiomegaly", anchors=("increase",)),
    # --- effusion (pericardial first so that it does not count as pleural)
    LexiconEntry(r"pericardial\s+effusions?", None, "pericardial effusion", anchors=("pericardial",)),
    LexiconEntry(r"(?:pleural\s+)?effusions?|pleural\s+fluid|hydrothora(?:x|ces)|hydropneumothorax", "effusion", "pleural effusion", anchors=("effusion", "fluid", "hydro")),
    # --- edema (non-pulmonary edema first)
    LexiconEntry(r"(?:soft[-\s]tissue|subcutaneous|chest\s+wall|peripheral)\s+edema", None, "soft tissue edema", anchors=("edema",)),
    LexiconEntry(r"(?:(?:pulmonary|interstitial|alveolar|airspace)\s+)*edema", "edema", "pulmonary edema", anchors=("edema",)),
    # --- consolidation (before opacity: "consolidative opacity" is consolidation)
    LexiconEntry(r"consolidations?|consolidative\s+(?:opacit(?:y|ies)|changes?|process)|consolidated", "consolidation", "consolidation", anchors=("consolidat",)),
    # --- pneumonia
    LexiconEntry(r"granulomatous\s+(?:infection|disease|exposure)|histoplasmosis|tuberculosis", None, "granulomatous disease",
                 anchors=("granulomatous", "histoplasm", "tubercul"), finding=False),  # a cause, not an image finding
    LexiconEntry(r"(?:aspiration\s+|multifocal\s+|lobar\s+)?pneumonias?|pneumonitis|infectious\s+process|infection|aspiration", "pneumonia", "pneumonia", anchors=("pneumon", "infect", "aspiration")),
    # --- atelectasis
    LexiconEntry(r"atelectas[ei]s|atelectatic(?:\s+changes?)?|collapse", "atelectasis", "atelectasis", anchors=("atelecta", "collapse")),
    # --- opacity
    LexiconEntry(
        r"(?:ground[-\s]glass\s+|reticular\s+|reticulonodular\s+|interstitial\s+|airspace\s+|nodular\s+)?opacit(?:y|ies)|opacification|opacified"
        r"|air[-\s]?space\s+(?:disease|process|opacit(?:y|ies))|infiltrates?|infiltration|haziness|hazy\s+opacit(?:y|ies)|densit(?:y|ies)|opaque",
        "opacity",
        "opacity",
        anchors=("opaci", "airspace", "air space", "air-space", "infiltrat", "hazi", "densit", "opaque"),
    ),
    # --- not lesions: shadows of the breasts, nipples and piercings, artifacts (they explain an opacity away)
    LexiconEntry(r"(?:densit(?:y|ies)|opacit(?:y|ies)|shadows?)\s+(?:over|overlying|projecting\s+over|projected\s+over|from)\s+"
                 r"(?:the\s+)?(?:(?:right|left|both|bilateral)\s+)?(?:breasts?|nipples?|breast\s+tissue)"
                 r"|(?:overlying\s+)?(?:breast|nipple)\s+(?:shadows?|tissue|densit(?:y|ies))|nipple\s+markers?|(?:nipple\s+|body\s+)?piercings?",
                 None, "soft tissue shadow", anchors=("breast", "nipple", "piercing"), finding=False),
    LexiconEntry(r"artifacts?|artifactual|artefacts?|artefactual", None, "artifact", anchors=("artifact", "artefact"), finding=False),
    # --- other findings (lesion_type None)
    LexiconEntry(r"pneumothora(?:x|ces)", None, "pneumothorax", anchors=("pneumothora",)),
    LexiconEntry(r"pneumomediastinum", None, "pneumomediastinum", anchors=("pneumomediastinum",)),
    LexiconEntry(r"pneumoperitoneum|free\s+(?:intraperitoneal\s+)?air", None, "pneumoperitoneum", anchors=("pneumoperitoneum", "free")),
    LexiconEntry(r"subcutaneous\s+(?:emphysema|air|gas)", None, "subcutaneous emphysema", anchors=("subcutaneous",)),
    LexiconEntry(r"emphysema(?:tous\s+changes?)?|hyperinflat(?:ion|ed)|copd", None, "emphysema", anchors=("emphysema", "hyperinflat", "copd")),
    LexiconEntry(r"(?:pulmonary\s+)?nodules?|nodularity", None, "nodule", anchors=("nodul",)),
    LexiconEntry(r"masse?s?|lesions?|neoplasm|malignancy|metasta(?:sis|ses|tic\s+disease)", None, "mass", anchors=("mass", "lesion", "neoplasm", "malignan", "metasta")),
    LexiconEntry(r"granulomas?|calcified\s+granulomas?", None, "granuloma", anchors=("granuloma",)),
    LexiconEntry(r"pleural\s+thickening|pleural\s+plaques?|pleural\s+calcifications?", None, "pleural thickening", anchors=("pleural",)),
    LexiconEntry(r"(?:pulmonary\s+)?(?:vascular|venous)\s+(?:congestion|engorgement|redistribution)|congestion|fluid\s+overload|chf|congestive\s+heart\s+failure",
                 None, "vascular congestion", anchors=("congestion", "engorgement", "redistribution", "overload", "chf", "congestive")),
    LexiconEntry(r"enlarged\s+cardiomediastinal\s+silhouette|cardiomediastinal\s+silhouette\s+is\s+(?:mildly\s+)?enlarged|mediastinal\s+widening|widened\s+mediastinum",
                 None, "mediastinal widening", anchors=("cardiomediastinal", "mediastin")),
    LexiconEntry(r"(?:lymph)?adenopathy|lymph\s+node\s+enlargement", None, "adenopathy", anchors=("adenopathy", "lymph")),
    LexiconEntry(r"scar(?:ring)?|fibro(?:sis|tic\s+changes?)|interstitial\s+(?:lung\s+)?disease|ild", None, "fibrosis", anchors=("scar", "fibro", "interstitial", "ild")),
    LexiconEntry(r"bronchiectasis", None, "bronchiectasis", anchors=("bronchiectasis",)),
    LexiconEntry(r"fractures?", None, "fracture", anchors=("fracture",)),
    LexiconEntry(r"(?:hiatal\s+)?hernia", None, "hernia", anchors=("hernia",)),
    LexiconEntry(r"blunting", None, "blunting", anchors=("blunting",)),
    LexiconEntry(r"cavitation|cavitary\s+lesion|cavity", None, "cavitation", anchors=("cavit",)),
    LexiconEntry(r"(?:bronchial\s+wall|peribronchial)\s+thickening|peribronchial\s+cuffing", None, "bronchial wall thickening", anchors=("thickening", "cuffing")),
    LexiconEntry(r"ards|acute\s+respiratory\s+distress(?:\s+syndrome)?", None, "ARDS", anchors=("ards", "respiratory")),
    LexiconEntry(r"calcifications?", None, "calcification", anchors=("calcification",)),
)
"""Findings in priority order; longer/more specific patterns win over shorter overlapping ones."""

NONSPECIFIC_LESIONS: tuple[str, ...] = ("opacity", "consolidation")
"""Lesion types whose cause a report may name ("opacity ... reflecting atelectasis")."""

EXPLAINING_FINDINGS: frozenset[str] = frozenset({"soft tissue shadow", "artifact", "hernia", "granuloma", "calcification"})
"""Entity names that, when a report says an opacity is one of them, make the opacity no lung lesion."""

PREDICTABLE_LESIONS: tuple[str, ...] = ("pneumonia", "atelectasis", "edema", "consolidation", "effusion")
"""Lesion types that can be the predicted type of a non-specific finding."""

DEVICE_PATTERNS: tuple[str, ...] = (
    r"(?:endotracheal|et|tracheostomy|trach|nasogastric|ng|orogastric|og|feeding|dobhoff|dobbhoff|enteric|chest|"
    r"mediastinal|pigtail|drainage|gastric|esophageal|temperature)\s+(?:tubes?|catheters?|probe)",
    r"(?:right|left|r|l)?\s*(?:internal\s+jugular|ij|subclavian|picc|central\s+venous|cvc|swan[-\s]ganz|pa|hemodialysis|dialysis|"
    r"port-a-cath|portacath|midline)\s*(?:lines?|catheters?|ports?|sheath)?",
    r"(?:dual|single|triple)[-\s]lead\s+(?:pacemaker|pacer|icd|aicd)|(?:pacemaker|pacer|icd|aicd|defibrillator|loop\s+recorder)"
    r"(?:\s+(?:leads?|wires?|generator|device))?|(?:transvenous\s+)?(?:pacing\s+)?leads?",
    r"(?:median\s+)?sternotomy(?:\s+wires?)?|sternal\s+(?:wires?|sutures?)|(?:surgical|vascular|cholecystectomy)\s+clips?|"
    r"(?:prosthetic|mechanical|replaced)\s+(?:aortic|mitral)?\s*valves?|(?:aortic|mitral)\s+valve\s+(?:replacement|prosthesis)|"
    r"stents?|coils?|(?:support|monitoring)\s+devices?|lines\s+and\s+tubes|tubes\s+and\s+lines|drains?|"
    r"impella|lvad|iabp|intra-?aortic\s+balloon\s+pump|ecmo\s+cannulas?|cannulas?|electrodes?|ekg\s+leads|"
    r"pleurx(?:\s+catheter)?|spinal\s+(?:hardware|rods?|fusion)|hardware|staples?|(?:surgical\s+)?sutures?|"
    r"(?:nipple|ecg)\s+markers?|expanders?|(?:breast\s+)?implants?",
)
"""Medical devices: never findings (paper Fig. 9 rule 2); their text is masked before matching."""


def compile_lexicon(entries=FINDING_LEXICON) -> list[tuple[re.Pattern, LexiconEntry]]:
    return [(re.compile(rf"\b(?:{e.pattern})\b", re.IGNORECASE), e) for e in entries]


DEVICE_RE = re.compile(
    r"\b(?:(?:right|left|bilateral)(?:[-\s]sided)?\s+)?(?:" + "|".join(DEVICE_PATTERNS) + r")\b", re.IGNORECASE
)
