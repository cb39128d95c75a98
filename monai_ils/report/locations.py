"""Two-step location mapping (paper Fig. 10): location term -> category -> anatomical labels.

Step 1 puts a report's location phrase into one of ``vocab.LOCATION_CATEGORIES`` (lung, pleura, heart,
mediastinum, ..., lateral view location). Step 2 turns lung and pleura terms into the 15 lung labels
of ``vocab.LUNG_LABELS`` (eight zones, five lobes, right and left lung); cardiac findings get "heart".
The rule table below covers common radiology phrasing; ``LocationMapper`` sends the terms it cannot
parse to an LLM (``llm.LLMLocationMapper``) when one is configured.

Mapping decisions, written down because later steps ground masks in these labels:

* "lower lung(s)", "base(s)", "basilar", "bibasilar", "costophrenic angle" -> the lung base(s).
* "mid lung/zone", "hilar", "perihilar" -> the mid zone(s) (the hila project over the mid zones).
* "upper lung/zone" -> the upper zone(s); "apex", "apical" -> the apical zone(s).
* "upper/middle/lower lobe" -> the lobe; "lingula" -> the left upper lobe (the lingula belongs to it);
  "middle lobe" is always right.
* "left", "right", "bilateral" alone, "lung(s)", "hemithorax" -> "lung" -> right/left lung (both when
  bilateral or plural without a side).
* "retrocardiac", "retrosternal", "posterior costophrenic sulcus", "middle mediastinum" -> "lateral view
  location": no frontal lung label.
* entity-aware step 2 (the paper's "use the entity" rule): a pleural effusion on a side, in the pleura
  or with no location collects at the lung base(s); pulmonary edema with no lung location is bilateral
  (both lungs); cardiomegaly is always the heart.
* a whole lung on a side subsumes that side's zones and lobes (no overlapping labels).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from monai_ils.vocab import HEART, LEFT_LUNG, LOCATION_CATEGORIES, LUNG_LABELS, LUNG_LOBES, LUNG_ZONES, RIGHT_LUNG

__all__ = ["LocationTerm", "find_location_terms", "parse_location_term", "parse_location_terms", "labels_for_terms", "dedupe_labels", "LocationMapper", "RIGHT", "LEFT"]

RIGHT, LEFT = "right", "left"
_SIDE_WORD = r"(?:right|left|bilateral|both)(?:[-\s]sided)?"
_SIDES = rf"{_SIDE_WORD}(?:\s*(?:and|or|/|,|>|greater\s+than|more\s+than|worse\s+than|than)\s*{_SIDE_WORD})*"
_ZONE = r"(?:upper|middle|mid|lower)"
_ZONES = rf"{_ZONE}(?:\s*(?:and|/|,|or|to|and\s+the)\s*{_ZONE})*"
_OF_SIDE = rf"(?:\s+of\s+(?:the\s+)?(?:{_SIDES})\s+(?:lungs?|hemithora(?:x|ces)))?"
_PRE = rf"(?:(?:{_SIDES})\s+)?"

# (regex, kind) in priority order; kind drives both categories and labels.
_TERM_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"(?:left\s+|right\s+)?retrocardiac(?:\s+(?:space|region|area))?|retrosternal(?:\s+(?:space|clear\s+space))?|"
     r"posterior\s+(?:costophrenic\s+)?(?:sulc(?:us|i)|angles?)|middle\s+mediastinum|on\s+the\s+lateral\s+(?:view|radiograph|image)", "lateral"),
    (rf"{_PRE}{_ZONES}[-\s]+lobes?{_OF_SIDE}", "lobe"),
    (rf"{_PRE}lingula(?:r)?(?:\s+segment)?", "lingula"),
    (rf"{_PRE}(?:{_ZONES})[-\s]+(?:lungs?|lung\s+zones?|zones?|lung\s+fields?|hemithora(?:x|ces)|chest){_OF_SIDE}|{_PRE}mid-?lungs?", "zone"),
    (rf"{_PRE}(?:lung\s+)?(?:bases?|basilar|basal|basally|basilarly){_OF_SIDE}|bibasilar(?:ly)?|bibasal(?:ly)?", "base"),
    (rf"{_PRE}(?:lung\s+)?(?:ap(?:ex|ices)|apical(?:ly)?){_OF_SIDE}|biapical(?:ly)?", "apex"),
    (rf"{_PRE}(?:peri)?hil(?:ar|um|a)|biperihilar", "hilar"),
    (rf"{_PRE}(?<!posterior\s)costophrenic\s+(?:angles?|sulc(?:us|i)|recess(?:es)?)", "base"),
    (rf"{_PRE}(?:pleural?(?:\s+spaces?)?|(?:minor|major|horizontal|oblique)\s+fissures?|fissural)", "pleura"),
    (rf"(?:{_SIDES})\s+(?:lungs?|hemithora(?:x|ces)|lung\s+fields?|chest)|lungs|both\s+lungs|diffuse(?:ly)?|widespread", "lung"),
    (r"(?:right\s+|left\s+)?(?:hemi)?diaphragms?|(?:right\s+|left\s+)?hemidiaphragms?|diaphragmatic", "diaphragm"),
    (r"heart|cardiac|pericardial|cardiophrenic", "heart"),
    (r"(?:superior|anterior|posterior|upper|lower)?\s*mediastin(?:um|al)|paratracheal|subcarinal|aortopulmonary\s+window|cardiomediastinal", "mediastinum"),
    (r"aort(?:a|ic)(?:\s+(?:arch|knob|knuckle))?|pulmonary\s+(?:arter(?:y|ies)|vessels|vasculature)|vasculature|(?:superior|inferior)\s+vena\s+cava|svc|ivc", "vessels"),
    (r"trachea|tracheal|carina", "trachea"),
    (r"(?:upper\s+)?abdomen|abdominal|stomach|bowel|liver|(?:right|left)\s+upper\s+quadrant|subdiaphragmatic|colon|spleen|kidneys?", "abdomen"),
    (r"(?:right\s+|left\s+)?(?:anterior\s+|posterior\s+|lateral\s+)?(?:\d+(?:st|nd|rd|th)\s+)?ribs?", "rib"),
    (r"(?:right\s+|left\s+)?clavic(?:le|les|ular)", "clavicle"),
    (r"(?:right\s+|left\s+)?scapula(?:e|r)?", "scapula"),
    (r"stern(?:um|al)", "sternum"),
    (r"thoracic\s+spine|(?:thoracic\s+)?vertebra(?:e|l)?(?:\s+bod(?:y|ies))?|spine", "thoracic spine"),
    (r"cervical\s+spine", "cervical spine"),
    (r"lumbar\s+spine", "lumbar spine"),
    (r"(?:right\s+|left\s+)?breasts?", "breast"),
    (rf"{_SIDES}|bilaterally", "side"),
)

_KIND_CATEGORY = {
    "lateral": "lateral view location",
    "lobe": "lung",
    "lingula": "lung",
    "zone": "lung",
    "base": "lung",
    "apex": "lung",
    "hilar": "lung",
    "lung": "lung",
    "side": "lung",
    "pleura": "pleura",
}

_TERM_RE = re.compile("|".join(rf"(?P<k{i}>\b(?:{p})\b)" for i, (p, _) in enumerate(_TERM_PATTERNS)), re.IGNORECASE)
_KINDS = [k for _, k in _TERM_PATTERNS]
# Every term starts with one of these words (prefixes): trying the big pattern only there is ~3x faster
# than letting the regex engine try all its alternatives at every character.
_START_RE = re.compile(
    r"\b(?:right|left|bilateral|both|upper|middle|mid|lower|lingula|lung|bas|bibas|ap|biap|hil|perihil|biperihil|"
    r"costophrenic|pleura|minor|major|horizontal|oblique|fissur|diffuse|widespread|retrocardiac|retrosternal|posterior|on|"
    r"hemidiaphragm|diaphragm|heart|cardi|pericardial|superior|anterior|inferior|mediastin|paratracheal|subcarinal|aort|"
    r"pulmonary|vasculature|svc|ivc|trache|carina|abdom|stomach|bowel|liver|subdiaphragmatic|colon|spleen|kidney|lateral|"
    r"\d|rib|clavic|scapula|stern|thoracic|vertebra|spine|cervical|lumbar|breast)",
    re.IGNORECASE,
)


def _iter_terms(text: str):
    """Same matches as ``_TERM_RE.finditer(text)``, tried only where a term can start."""
    pos = 0
    for s in _START_RE.finditer(text):
        if s.start() < pos:
            continue
        m = _TERM_RE.match(text, s.start())
        if m is not None and m.end() > m.start():
            yield m
            pos = m.end()
_PLURAL_RE = re.compile(r"\b(?:lungs|lobes|bases|apices|hila|angles|zones|hemithoraces|fields|sulci|bilateral(?:ly)?|both|bi\w+|diffuse(?:ly)?|widespread)\b", re.IGNORECASE)


@dataclass
class LocationTerm:
    """One location phrase found in (or given for) a sentence."""

    text: str
    kind: str
    category: str | None
    sides: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    start: int = -1
    end: int = -1
    labels: tuple[str, ...] | None = None  # explicit step-2 labels (from the LLM mapper); None: derive them


def _sides_of(text: str, kind: str) -> tuple[str, ...]:
    low = text.lower()
    sides = []
    if re.search(r"\bright\b", low):
        sides.append(RIGHT)
    if re.search(r"\bleft\b", low):
        sides.append(LEFT)
    if re.search(r"\bbilateral|\bboth\b|\bbi(?:basilar|basal|apical|perihilar)|\bdiffuse|\bwidespread|\blungs\b", low):
        return (RIGHT, LEFT)
    if not sides:
        if kind == "lingula":
            return (LEFT,)
        if kind == "lobe" and re.search(r"\bmiddle\b", low) and not re.search(r"\b(?:upper|lower)\b", low):
            return (RIGHT,)
        if kind == "pleura" and re.search(r"\b(?:minor|horizontal)\b", low):
            return (RIGHT,)
        # no side written: plural heads are bilateral, a singular one is of unknown side, so both sides
        return (RIGHT, LEFT)
    return tuple(sides)


def _zones_of(text: str) -> tuple[str, ...]:
    low = text.lower()
    zones = []
    for word, zone in (("upper", "upper"), ("middle", "middle"), ("mid", "middle"), ("lower", "lower")):
        if re.search(rf"\b{word}\b|\b{word}-?lung", low) and zone not in zones:
            zones.append(zone)
    return tuple(zones)


def _make_term(text: str, kind: str, start: int = -1, end: int = -1) -> LocationTerm:
    category = _KIND_CATEGORY.get(kind, kind)
    sides = _sides_of(text, kind) if category in ("lung", "pleura") else ()
    zones = _zones_of(text) if kind in ("lobe", "zone") else ()
    if kind == "zone" and re.search(r"\bmid-?lungs?\b", text, re.IGNORECASE) and "middle" not in zones:
        zones = (*zones, "middle")
    return LocationTerm(" ".join(text.lower().split()), kind, category, sides, zones, start, end)


def find_location_terms(text: str, blocked: list[tuple[int, int]] | None = None) -> list[LocationTerm]:
    """Every location phrase in ``text`` that does not overlap a ``blocked`` (entity/device) span."""
    blocked = blocked or []
    out = []
    for m in _iter_terms(text):
        start, end = m.span()
        if any(s < end and start < e for s, e in blocked):
            # retry the part before the blocked span ("left pleural" of "left pleural effusion")
            head_end = min((s for s, e in blocked if start < s < end), default=None)
            if head_end is None:
                continue
            sub = text[start:head_end].rstrip()
            sm = _TERM_RE.fullmatch(sub) if sub else None
            if not sm:
                sm2 = re.match(rf"{_SIDES}", sub, re.IGNORECASE)
                if sm2 and sm2.group(0).strip():
                    out.append(_make_term(sm2.group(0), "side", start, start + sm2.end()))
                continue
            m, (start, end) = sm, (start, start + len(sub))
        kind = _KINDS[int(m.lastgroup[1:])]
        term = _make_term(m.group(0), kind, start, end)
        prev = out[-1] if out else None
        if kind == "side" and prev is not None and prev.category in ("lung", "pleura") and not text[prev.end:start].strip(" ,"):
            # "upper lungs bilaterally": the side refines the term before it
            out[-1] = _make_term(f"{prev.text} {term.text}", prev.kind, prev.start, end)
            continue
        out.append(term)
    return out


def parse_location_term(term: str) -> LocationTerm | None:
    """Step 1 for one free-text term (e.g. from an LLM): the rule table's reading, or None if unknown."""
    text = " ".join(str(term).split()).strip(" ,.;:")
    text = re.sub(r"^(?:the|in\s+the|at\s+the|of\s+the)\s+", "", text, flags=re.IGNORECASE)
    if not text:
        return None
    m = _TERM_RE.fullmatch(text)
    if m is None:
        return None
    return _make_term(m.group(0), _KINDS[int(m.lastgroup[1:])])


_CONNECTORS_RE = re.compile(r"^(?:\s|,|;|/|&|\band\b|\bor\b|\bthe\b|\bof\b|\bin\b|\bat\b|\bboth\b)*$", re.IGNORECASE)


def parse_location_terms(term: str) -> list[LocationTerm] | None:
    """Like ``parse_location_term`` but also reads joined phrases ("right lower lobe and lingula").

    Returns None unless the whole text is covered by known terms and connecting words.
    """
    single = parse_location_term(term)
    if single is not None:
        return [single]
    text = " ".join(str(term).split())
    found = find_location_terms(text)
    if not found:
        return None
    pos = 0
    for t in found:
        if not _CONNECTORS_RE.match(text[pos:t.start]):
            return None
        pos = t.end
    return found if _CONNECTORS_RE.match(text[pos:]) else None


def _lung_labels(term: LocationTerm, lesion_type: str | None) -> list[str]:
    labels: list[str] = []
    for side in term.sides:
        whole = RIGHT_LUNG if side == RIGHT else LEFT_LUNG
        zones = LUNG_ZONES[whole]  # apical, upper, mid, base
        lobes = {lobe.split()[1]: lobe for lobe in LUNG_LOBES[whole]}  # upper/middle/lower -> label
        kind = term.kind
        if kind == "lobe":
            for z in term.zones or ("lower",):
                if z in lobes:
                    labels.append(lobes[z])
        elif kind == "lingula":
            labels.append(lobes["upper"])
        elif kind == "zone":
            for z in term.zones:
                labels.append({"upper": zones[1], "middle": zones[2], "lower": zones[3]}[z])
        elif kind == "base":
            labels.append(zones[3])
        elif kind == "apex":
            labels.append(zones[0])
        elif kind == "hilar":
            labels.append(zones[2])
        elif kind in ("lung", "side", "pleura"):
            labels.append(zones[3] if lesion_type == "effusion" else whole)
    return labels


def dedupe_labels(labels: list[str]) -> list[str]:
    out = []
    for label in labels:
        if label not in out:
            out.append(label)
    for whole in (RIGHT_LUNG, LEFT_LUNG):
        if whole in out:
            parts = set(LUNG_ZONES[whole]) | set(LUNG_LOBES[whole])
            out = [x for x in out if x not in parts]
    order = {name: i for i, name in enumerate((*LUNG_LABELS, HEART))}
    return sorted(out, key=order.__getitem__)


def labels_for_terms(terms: list[LocationTerm], lesion_type: str | None) -> list[str]:
    """Step 2: anatomical labels of a finding from its (step-1 categorised) terms and its lesion type."""
    if lesion_type == "cardiomegaly":
        return [HEART]
    labels: list[str] = []
    for term in terms:
        if term.labels is not None:
            labels.extend(term.labels)
        elif term.category in ("lung", "pleura"):
            labels.extend(_lung_labels(term, lesion_type))
    if not labels:
        if lesion_type == "effusion":
            labels = [LUNG_ZONES[RIGHT_LUNG][3], LUNG_ZONES[LEFT_LUNG][3]]
        elif lesion_type == "edema" and not terms:
            labels = [RIGHT_LUNG, LEFT_LUNG]
    return dedupe_labels(labels)


@dataclass
class LocationMapper:
    """Map raw location terms to (categories, labels): rule table first, then an optional LLM.

    ``llm`` is a callable ``(term, entity) -> LocationTerm | None`` (see ``llm.LLMLocationMapper``);
    terms neither can map keep category None and add no label (paper rule: unrelated -> None).
    """

    llm: Callable[[str, str], LocationTerm | None] | None = None
    unknown: list[str] = field(default_factory=list)

    def map_terms(self, terms: list[str], entity: str, lesion_type: str | None) -> tuple[list[str | None], list[str]]:
        parsed: list[LocationTerm] = []
        categories: list[str | None] = []
        for raw in terms:
            found = parse_location_terms(raw)
            if found is None and self.llm is not None:
                llm_term = self.llm(raw, entity)
                found = [llm_term] if llm_term is not None else None
            if found is None:
                self.unknown.append(raw)
                categories.append(None)
                continue
            for term in found:
                if term.category is not None and term.category not in LOCATION_CATEGORIES:
                    raise ValueError(f"location term {raw!r}: category {term.category!r} is not in vocab.LOCATION_CATEGORIES")
            parsed.extend(found)
            categories.append(found[0].category)  # one category per raw term (its first part's)
        return categories, labels_for_terms(parsed, lesion_type)
