"""Rule-based report structurer: the embedded default (offline, deterministic, no weights).

Per section: split sentences; find findings with the lexicon (devices masked first); read presence and
certainty with medspaCy ConText on a blank English pipeline (plus our hedges, see ``context_rules``);
link a non-specific finding to the lesion it is said to reflect, in the same sentence ("opacity likely
reflecting atelectasis") or the next one ("... opacity. This may represent pneumonia."); attach location
phrases written before ("right lower lobe opacity") or after ("opacity in the right lower lobe") each
finding; map them to anatomical labels (``locations``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import spacy

from monai_ils.report.context_rules import DROPPING_CATEGORIES, TENTATIVE_CATEGORIES, build_context
from monai_ils.report.finding import Finding, StructuredReport
from monai_ils.report.lexicon import (
    DEVICE_RE,
    EXPLAINING_FINDINGS,
    FINDING_LEXICON,
    NONSPECIFIC_LESIONS,
    PREDICTABLE_LESIONS,
    LexiconEntry,
    compile_lexicon,
)
from monai_ils.report.locations import LocationTerm, find_location_terms, labels_for_terms
from monai_ils.report.sections import split_sentences

__all__ = ["RuleBasedStructurer"]

_WORD_RE = re.compile(r"[a-z]+(?:/[a-z]+)?|[,;:()?]")
_IN_SPAN_NEGATION = re.compile(r"\bnot\b|\bno\s+longer\b", re.IGNORECASE)
_IN_SPAN_HEDGE = re.compile(r"\b(?:borderline|top[-\s]normal|upper\s+limits?\s+of\s+normal|possibly|probably|likely|may\s+be)\b", re.IGNORECASE)
_ANAPHOR_RE = re.compile(
    r"^\s*(?:(?:this|these|the)\s+(?:findings?|opacit(?:y|ies)|consolidations?|abnormalit(?:y|ies)|densit(?:y|ies)|areas?|process)|"
    r"the\s+(?:latter|former)|this|these|it|they|which|findings?)\b",
    re.IGNORECASE,
)
_STRONG_TRIGGERS = frozenset(
    "is are was were consistent compatible suggestive suggesting suggests suggest concerning concern suspicious worrisome "
    "reflect reflects reflecting reflective represent represents representing due related secondary attributable caused "
    "may might could versus vs favored favor favoring indicative thought felt keeping indicate indicates indicating".split()
)
_LINK_TRIGGERS = frozenset(
    "is are was were likely probably possibly consistent compatible suggestive suggesting suggests suggest concerning "
    "concern suspicious worrisome reflect reflects reflecting reflective represent represents representing due related "
    "secondary attributable caused may might could versus vs favored favor favoring indicative from presumably possible "
    "probable thought felt suspected keeping indicate indicates indicating".split()
)
# "In the appropriate clinical setting, this is compatible with pneumonia": the whole sentence is hedged
_CLINICAL_SETTING_RE = re.compile(r"\b(?:in|given)\s+the\s+(?:appropriate|proper|right|correct)\s+clinical\s+(?:setting|context)\b",
                                  re.IGNORECASE)
_LINK_FILLERS = frozenset(
    ", ( ) be being been which that with of to for by in on an a the most more either setting superimposed also again "
    "still component components areas area evidence such as question raises possibility differential includes including "
    "considered mild small focal patchy minor subsegmental linear plate discoid compressive passive early developing "
    "postobstructive residual new infectious acute some partial partly at least and/or or increasing worsening progressive "
    "progressing enlarging improving decreasing persistent persisting slightly layering loculated over within "
    "throughout involving at along projecting resolving would".split()
)
_UNCHANGED_RE = re.compile(r"\b(?:not|no)\s+(?:significantly\s+|substantially\s+|much\s+)?(?:changed?|improved|worse(?:ned)?)\b", re.IGNORECASE)
_LINK_BLOCKERS = frozenset("no not without but however although though and ; : ?".split())
_NEGATED_ASIDE_RE = re.compile(r"^\s*,\s*(?:without|with\s+no|no)\s*$", re.IGNORECASE)
_ALTERNATIVE_RE = re.compile(r"^[\s,]*(?:or|and/or|versus|vs\.?|,)(?:\s+(?:less\s+likely|possibly|possible|an?|early))*[\s,]*$", re.IGNORECASE)
_PREMOD_STOP = frozenset(
    "is are was were be been with without no not in at within on of there which that but seen noted has have had to "
    "from by as since for after likely may could versus vs also , ; : ( ) ?".split()
)
# "the left lower lobe is totally opaque": a finding written as a predicate takes its subject as the location
_PREDICATE_FINDINGS = frozenset({"opaque", "consolidated", "opacified", "collapsed"})
_PREDICATE_GAP = frozenset("is are was were now again totally completely entirely partially nearly almost mostly largely "
                           "partly densely".split())
_COORDINATORS = frozenset({"versus", "vs", "or", "and/or", ",", "and"})
_POSTMOD_OK = frozenset(
    "in at within of the both is are was were seen noted present identified again now still also involving projecting "
    "projects overlying over along throughout on and or predominantly particularly mainly mostly most greater than more "
    "extending into which appears appear located best visualized demonstrated there a an slightly mild mildly small "
    "persists persist persistent unchanged stable new increased decreased worse improved residual minimal especially "
    "primarily lies lie lying situated visible evident observed , ( ) bilaterally".split()
)


@dataclass
class _Mention:
    sent: int  # 0-based sentence index
    start: int  # offsets in the sentence
    end: int
    text: str
    entry: LexiconEntry
    negative: bool = False
    tentative: bool = False
    consumed_by: _Mention | None = None
    anaphoric: bool = False
    dropped: bool = False  # not a finding of this radiograph (historical, a limit of the exam, explained away)
    predicted: str | None = None
    predicted_sent: int | None = None
    terms: list[LocationTerm] = field(default_factory=list)
    post_start: int = -1  # where the post-modifier location scan starts (after consumed predictions)

    @property
    def lesion_type(self) -> str | None:
        return self.entry.lesion_type


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


_LOC_JOIN_RE = re.compile(r"\x00(?:\s*(?:,|and|or|/)\s*\x00)+")


def _strip_spans(text: str, spans: list[tuple[int, int]], offset: int) -> str:
    """Remove location phrases (and the "and"/"," joining them) from a gap between two findings."""
    out, pos = [], 0
    for s, e in sorted(spans):
        s, e = max(s - offset, 0), min(e - offset, len(text))
        if s >= e or s < pos:
            continue
        out.append(text[pos:s] + "\x00")
        pos = e
    out.append(text[pos:])
    return _LOC_JOIN_RE.sub("\x00", "".join(out)).replace("\x00", " ")


class RuleBasedStructurer:
    """Structure a report section into ``Finding`` records with rules only.

    Example::

        structurer = RuleBasedStructurer()
        report = structurer("Bibasilar opacities, likely atelectasis. No pleural effusion.")
        report.findings[0].predicted_lesion_type  # "atelectasis"
    """

    name = "rules"

    def __init__(self, lexicon: tuple[LexiconEntry, ...] = FINDING_LEXICON):
        self.lexicon = tuple(lexicon)
        self.nlp = spacy.blank("en")
        self.context = build_context(self.nlp)
        self._lexicon = compile_lexicon(lexicon)
        self._priority = {entry: i for i, (_, entry) in enumerate(self._lexicon)}
        anchors = sorted({a for _, e in self._lexicon for a in e.anchors}, key=len, reverse=True)
        self._anchor_re = re.compile("|".join(map(re.escape, anchors)))

    def __getstate__(self) -> dict:
        # spaCy's extension attributes (ConText's ``Span._.modifiers``) are registered by building the
        # pipeline, not by unpickling it: a copy sent to a worker process rebuilds it from the lexicon
        return {"lexicon": self.lexicon}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["lexicon"])

    # ----------------------------------------------------------------------------------------------
    def __call__(self, section_text: str, section_name: str | None = None) -> StructuredReport:
        return self.structure(section_text, section_name)

    def structure(self, section_text: str, section_name: str | None = None) -> StructuredReport:
        """Structure one (already selected) report section."""
        sentences = split_sentences(section_text)
        return StructuredReport(
            section_name=section_name,
            section_text=" ".join(sentences),
            sentences=sentences,
            findings=self.structure_sentences(sentences),
            structurer=self.name,
        )

    def structure_sentences(self, sentences: list[str]) -> list[Finding]:
        """Findings of a list of sentences (``Finding.sentence_index`` is 1-based into it)."""
        mentions, blocked = [], []
        for i, sentence in enumerate(sentences):
            found, spans = self._find_mentions(i, sentence)
            mentions.append(found)
            blocked.append(spans)
        flat = [m for sent in mentions for m in sent]
        if not flat:
            return []
        self._apply_context(sentences, flat)
        for found in mentions:
            if found:
                self._mark_alternatives(sentences[found[0].sent], found)
                if _CLINICAL_SETTING_RE.search(sentences[found[0].sent]):
                    for m in found:
                        m.tentative = m.tentative or not m.negative
        terms = [find_location_terms(s, blocked[i] + [(m.start, m.end) for m in mentions[i]]) if mentions[i] else []
                 for i, s in enumerate(sentences)]
        for i in range(len(sentences)):
            self._link_in_sentence(sentences[i], mentions[i], terms[i])
            if i > 0:
                self._link_across(sentences[i], mentions[i - 1], mentions[i], terms[i])
        for i, sentence in enumerate(sentences):
            self._attach_locations(sentence, mentions[i], terms[i])
        return [self._to_finding(m) for m in flat
                if m.consumed_by is None and not m.anaphoric and not m.dropped and m.entry.finding]

    # ----------------------------------------------------------------------------------------------
    def _find_mentions(self, index: int, sentence: str) -> tuple[list[_Mention], list[tuple[int, int]]]:
        devices = [m.span() for m in DEVICE_RE.finditer(sentence)]
        candidates = []
        present = set(self._anchor_re.findall(sentence.lower()))
        for regex, entry in self._lexicon:
            if entry.anchors and present.isdisjoint(entry.anchors):
                continue
            for m in regex.finditer(sentence):
                s, e = m.span()
                if not any(ds < e and s < de for ds, de in devices):
                    candidates.append((s, e, entry))
        candidates.sort(key=lambda c: (-(c[1] - c[0]), self._priority[c[2]], c[0]))
        chosen: list[_Mention] = []
        for s, e, entry in candidates:
            if any(c.start < e and s < c.end for c in chosen):
                continue
            text = sentence[s:e]
            mention = _Mention(index, s, e, text, entry)
            if entry.lesion_type == "cardiomegaly":
                mention.negative = bool(_IN_SPAN_NEGATION.search(text))
                mention.tentative = bool(_IN_SPAN_HEDGE.search(text))
            chosen.append(mention)
        chosen.sort(key=lambda c: c.start)
        return chosen, devices

    def _apply_context(self, sentences: list[str], mentions: list[_Mention]) -> None:
        # ConText scopes never cross sentences, so only the sentences with a finding are parsed
        used = sorted({m.sent for m in mentions})
        offsets, pos = {}, 0
        for i in used:
            offsets[i] = pos
            pos += len(sentences[i]) + 1
        starts = set(offsets.values())
        doc = self.nlp.make_doc(" ".join(sentences[i] for i in used))
        for token in doc:
            token.is_sent_start = token.idx in starts or token.i == 0
        spans, owners = [], []
        for m in mentions:
            span = doc.char_span(offsets[m.sent] + m.start, offsets[m.sent] + m.end, label="FINDING", alignment_mode="expand")
            if span is None or any(o.start < span.end and span.start < o.end for o in spans):
                continue
            spans.append(span)
            owners.append(m)
        doc.ents = spans
        self.context(doc)
        target_tokens = [(s.start, s.end) for s in spans]
        for span, m in zip(spans, owners):
            cats = set()
            for mod in span._.modifiers:
                ms, me = mod.modifier_span
                if any(ts < me and ms < te for ts, te in target_tokens):
                    continue  # a trigger inside another finding ("not" in "heart is not enlarged")
                cats.add(mod.category.upper())
            negative = m.negative or "NEGATED_EXISTENCE" in cats or "NEGATED_TENTATIVE" in cats
            m.negative = negative
            m.dropped = "NOT_A_FINDING" in cats or ("HISTORICAL" in cats and not negative)
            if negative:
                m.tentative = m.tentative or "NEGATED_TENTATIVE" in cats
            else:
                m.tentative = m.tentative or bool(cats & TENTATIVE_CATEGORIES)

    @staticmethod
    def _mark_alternatives(sentence: str, mentions: list[_Mention]) -> None:
        """"atelectasis or scarring": two positive findings offered as alternatives are both tentative."""
        for a, b in zip(mentions, mentions[1:]):
            if not a.negative and not b.negative and _words(sentence[a.end:b.start]) in (["or"], ["and/or"]):
                a.tentative = b.tentative = True

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def _is_link(cls, gap: str) -> bool:
        """Whether the text between a non-specific finding and a lesion says the one reflects the other."""
        if cls._is_plain_link(gap):
            return True
        # "opacity is again seen, slightly improved, which may represent pneumonia": a description may
        # come first when the link follows a comma or "which" and the description negates nothing
        words = _words(_UNCHANGED_RE.sub(" ", gap))
        cuts = [i for i, w in enumerate(words) if w in {",", "which"}]
        if not cuts or any(w in _LINK_BLOCKERS for w in words[:cuts[-1]]):
            return False
        return cls._is_plain_link(" ".join(words[cuts[-1]:]))

    @staticmethod
    def _is_plain_link(gap: str) -> bool:
        words = [w for w in _words(gap) if w not in {",", "(", ")"}]
        if "and" in words:
            # "opacities are increasing and are likely related to atelectasis" links, "opacity and possible
            # effusion" does not: after an "and" only a strong (verbal) trigger links
            after = words[len(words) - words[::-1].index("and"):]
            if not any(w in _STRONG_TRIGGERS for w in after):
                return False
            words = [w for w in words if w != "and"]
        if not words or not any(w in _LINK_TRIGGERS for w in words):
            return False
        return all(w in _LINK_TRIGGERS or w in _LINK_FILLERS for w in words)

    def _consume(self, owner: _Mention, first: _Mention, following: list[_Mention], sentence: str, sent_index: int,
                 location_spans: list[tuple[int, int]]) -> None:
        owner.predicted = first.lesion_type
        owner.predicted_sent = sent_index
        owner.tentative = owner.tentative or first.tentative
        first.consumed_by = owner
        last = first
        for other in following:
            gap = _strip_spans(sentence[last.end:other.start], location_spans, last.end)
            if other.lesion_type in PREDICTABLE_LESIONS and _ALTERNATIVE_RE.match(gap):
                other.consumed_by = owner
                owner.tentative = True  # a differential ("atelectasis or pneumonia") is not definitive
                last = other
            else:
                break
        if last.sent == owner.sent:
            owner.post_start = last.end

    def _link_in_sentence(self, sentence: str, mentions: list[_Mention], terms: list[LocationTerm]) -> None:
        loc_spans = [(t.start, t.end) for t in terms]
        for i, owner in enumerate(mentions):
            if owner.lesion_type not in NONSPECIFIC_LESIONS or owner.negative or owner.consumed_by is not None:
                continue
            start = owner.post_start if owner.post_start >= 0 else owner.end
            for j in range(i + 1, len(mentions)):
                cand = mentions[j]
                if cand.consumed_by is not None:
                    continue
                gap = _strip_spans(sentence[start:cand.start], loc_spans, start)
                if cand.negative and _NEGATED_ASIDE_RE.match(gap):
                    start = cand.end  # "opacity, without effusion, likely pneumonia": look past the aside
                    continue
                if cand.entry.name in EXPLAINING_FINDINGS and not cand.negative:
                    # "retrocardiac density representing a hiatal hernia", "opacity is likely artifact"
                    owner.dropped = owner.dropped or self._is_link(gap)
                    break
                if cand.lesion_type not in PREDICTABLE_LESIONS or cand.lesion_type == owner.lesion_type or cand.negative:
                    break
                if self._is_link(gap):
                    self._consume(owner, cand, mentions[j + 1:], sentence, cand.sent, loc_spans)
                break

    def _link_across(self, sentence: str, previous: list[_Mention], current: list[_Mention], terms: list[LocationTerm]) -> None:
        owners = [m for m in previous if m.lesion_type in NONSPECIFIC_LESIONS and not m.negative
                  and m.consumed_by is None and m.predicted is None and not m.dropped]
        anaphor = _ANAPHOR_RE.match(sentence)
        if not owners or anaphor is None or not current:
            return
        loc_spans = [(t.start, t.end) for t in terms]
        start, k = anaphor.end(), 0
        referent = None
        if current[0].start < anaphor.end() and current[0].lesion_type in NONSPECIFIC_LESIONS:
            referent, start, k = current[0], current[0].end, 1  # "This opacity ..." names the earlier finding
        if k >= len(current):
            return
        cand = current[k]
        if cand.entry.name in EXPLAINING_FINDINGS and not cand.negative:
            if self._is_link(_strip_spans(sentence[start:cand.start], loc_spans, start)):
                for owner in owners:  # "Retrocardiac density. This is a hiatal hernia."
                    owner.dropped = True
                if referent is not None:
                    referent.anaphoric = True
            return
        if cand.lesion_type not in PREDICTABLE_LESIONS or cand.negative or cand.consumed_by is not None:
            return
        if not self._is_link(_strip_spans(sentence[start:cand.start], loc_spans, start)):
            return
        for owner in owners:
            self._consume(owner, cand, current[k + 1:], sentence, cand.sent, loc_spans)
            if referent is not None:
                owner.tentative = owner.tentative or referent.tentative
        if referent is not None:
            referent.anaphoric = True

    # ----------------------------------------------------------------------------------------------
    def _attach_locations(self, sentence: str, mentions: list[_Mention], terms: list[LocationTerm]) -> None:
        assigned: dict[int, _Mention] = {}
        # pre-modifiers: "right lower lobe and lingular opacities"
        for idx, m in enumerate(mentions):
            left_limit = mentions[idx - 1].end if idx > 0 else 0
            cursor = m.start
            for t_idx in range(len(terms) - 1, -1, -1):
                term = terms[t_idx]
                if term.end > cursor or t_idx in assigned:
                    continue
                if term.start < left_limit:
                    break
                gap = _words(sentence[term.end:cursor])
                if m.text.lower() in _PREDICATE_FINDINGS and cursor == m.start:
                    gap = [w for w in gap if w not in _PREDICATE_GAP]
                if any(w in _PREMOD_STOP for w in gap):
                    break
                assigned[t_idx] = m
                cursor = term.start
        # post-modifiers: "opacities in the right upper lobe and left lower lobe"
        for idx, m in enumerate(mentions):
            # scan after the finding, and again after the predictions it consumed
            for cursor in [m.end] + ([m.post_start] if m.post_start > m.end else []):
                nxt = [o.start for o in mentions[idx + 1:] if o.start >= cursor]
                right_limit = min(nxt) if nxt else len(sentence)
                for t_idx, term in enumerate(terms):
                    if term.start < cursor:
                        continue
                    if term.start >= right_limit or t_idx in assigned:
                        break
                    gap = _words(sentence[cursor:term.start])
                    if not all(w in _POSTMOD_OK for w in gap):
                        break
                    assigned[t_idx] = m
                    cursor = term.end
        for t_idx in sorted(assigned):
            owner = assigned[t_idx]
            while owner.consumed_by is not None:
                owner = owner.consumed_by
            owner.terms.append(terms[t_idx])
        # "atelectasis versus pneumonia in the left lower lobe": coordinated findings share a trailing location
        for a, b in reversed(list(zip(mentions, mentions[1:]))):
            if a.terms or a.consumed_by is not None or b.consumed_by is not None or not b.terms:
                continue
            if b.terms[0].start > b.end and set(_words(sentence[a.end:b.start])) <= _COORDINATORS:
                a.terms = list(b.terms)
        # "left lower lobe collapse/consolidation": a slash pair shares the location written before it
        for a, b in zip(mentions, mentions[1:]):
            if a.terms and not b.terms and b.consumed_by is None and sentence[a.end:b.start].strip() == "/":
                b.terms = list(a.terms)

    @staticmethod
    def _entity_name(m: _Mention) -> str:
        if m.lesion_type == "cardiomegaly":
            return "cardiomegaly"
        return " ".join(m.text.lower().split())

    def _to_finding(self, m: _Mention) -> Finding:
        terms = m.terms
        return Finding(
            entity=self._entity_name(m),
            sentence_index=m.sent + 1,
            presence="negative" if m.negative else "positive",
            certainty="tentative" if m.tentative else "definitive",
            location_terms=[t.text for t in terms],
            location_categories=[t.category for t in terms],
            locations=labels_for_terms(terms, m.lesion_type),
            lesion_type=m.lesion_type,
            predicted_lesion_type=m.predicted,
            predicted_sentence_index=None if m.predicted_sent is None else m.predicted_sent + 1,
        )
