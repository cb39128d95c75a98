"""Instruction-answer pair generation (paper Sec. 3.2, Table 2, Table 8, Appendix C).

From one study's grounded findings this module builds the basic, global and lesion-inference pairs,
positive and negative, that are valid for the grounding that was achieved. Every text is rendered with
``monai_ils.data.templates`` (Table 2) and every name comes from ``monai_ils.vocab``. Choices the paper
leaves open are listed in docs/generation.md; the constants below encode them.

Randomness (which empty location, basic or global negative) comes from a numpy Generator seeded with
(seed, study key), so a study gets the same pairs whatever order or process it is generated in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from monai_ils.data.ils_format import ILSSample
from monai_ils.data.templates import render_answer, render_instruction
from monai_ils.generation.findings import GroundedFinding, StudyGrounding
from monai_ils.generation.qc import cardiomegaly_negative_allowed
from monai_ils.vocab import (
    CARDIOMEGALY_NEGATIVE_MAX_CTR,
    GENERIC_LESION_TYPE,
    HEART,
    INFERABLE_LESION_TYPES,
    INSTRUCTION_LOCATIONS,
    LEFT_LUNG,
    LESION_TYPES,
    LUNG_LOBES,
    LUNG_ZONES,
    ORGAN_LEVEL_LESION_TYPES,
    RIGHT_LUNG,
)

OTHER = None
"""Stands for findings outside the seven lesion types (nodule, scarring, ...) in the conflict tables."""

GLOBAL_POSITIVE_CONFLICTS: Mapping[str, tuple] = {
    "opacity": ("pneumonia", "atelectasis", "edema", "consolidation", "effusion", OTHER),
    "consolidation": ("pneumonia",),
}
"""A global positive of the key must cover every instance of it; a positive finding of one of these types
may be an unmasked instance too (pneumonia is a consolidation, every lung finding an opacity), so it
prevents the global instruction."""

GLOBAL_NEGATIVE_CONFLICTS: Mapping[str, tuple] = {
    "pneumonia": ("opacity", "consolidation", OTHER),
    "atelectasis": ("opacity", "consolidation", OTHER),
    "edema": ("opacity", OTHER),
    "consolidation": ("opacity", "pneumonia", OTHER),
    "opacity": ("pneumonia", "atelectasis", "edema", "consolidation", "effusion", OTHER),
}
""""There is no X." is false if a positive finding of one of these types may be X: an unspecified opacity
may be pneumonia, a pneumonia is an opacity. Such findings rule out the global negative of X."""

_SIDE_OF_LOBE = {lobe: side for side, lobes in LUNG_LOBES.items() for lobe in lobes}
_TABLE8_ORDER = tuple(INSTRUCTION_LOCATIONS)


def instruction_locations(labels: Iterable[str]) -> tuple[str, ...]:
    """Anatomical labels -> Table 8 locations (anatomical label names), deduplicated, in Table 8 order.

    Zones and broad regions map to themselves; a lobe maps to its lung (right/left lung), because a lobe's
    frontal projection spans several zones and the broad region is the only Table 8 location that is
    always true; "lung" (both lungs) maps to right and left lung; the heart and other labels are dropped.
    A broad region absorbs the zones of its own side ("right lung and right lung base" -> "right lung").
    """
    chosen = set()
    for label in labels:
        if label in INSTRUCTION_LOCATIONS:
            chosen.add(label)
        elif label in _SIDE_OF_LOBE:
            chosen.add(_SIDE_OF_LOBE[label])
        elif label == "lung":
            chosen.update((RIGHT_LUNG, LEFT_LUNG))
    for side in (RIGHT_LUNG, LEFT_LUNG):
        if side in chosen:
            chosen.difference_update(LUNG_ZONES[side])
    return tuple(label for label in _TABLE8_ORDER if label in chosen)


def study_rng(seed: int, study_key: str) -> np.random.Generator:
    """A Generator that depends only on (seed, study key): reproducible across runs, shards and processes."""
    digest = hashlib.sha256(str(study_key).encode("utf-8")).digest()
    return np.random.default_rng(np.random.SeedSequence([int(seed), int.from_bytes(digest[:16], "little")]))


def mask_folder_name(study_key: str) -> str:
    """A file-system-safe folder name for a study's masks."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(study_key)).strip("._") or "study"


@dataclass
class GeneratedPairs:
    """Pairs of one study and the masks they refer to.

    ``masks`` maps a path relative to the dataset's mask root (``<study folder>/<lesion>_<n>.png``) to a bool
    mask; each positive sample's ``seg_mask_path`` is one of these keys until a writer saves the masks.
    """

    samples: list[ILSSample] = field(default_factory=list)
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def positives(self) -> list[ILSSample]:
        return [s for s in self.samples if s.positive]

    @property
    def negatives(self) -> list[ILSSample]:
        return [s for s in self.samples if not s.positive]


@dataclass
class _Positive:
    """A positive pair being assembled; findings whose pairs read the same are merged (mask union)."""

    question_type: str
    lesion_type: str
    word: str
    locations: tuple[str, ...]
    answer_locations: tuple[str, ...]
    certainty: str
    mask: np.ndarray
    lesion: str | None = None
    findings: list = field(default_factory=list)  # the GroundedFindings merged into this pair

    def add(self, finding: GroundedFinding) -> _Positive:
        self.findings.append(finding)
        return self


class PairGenerator:
    """Turn a :class:`StudyGrounding` into Table 2 pairs.

    Args:
        seed: base seed; each study draws from ``study_rng(seed, study_key)``.
        global_negative_probability: for an absent lesion where both a basic (random empty location) and a
            global negative are valid, the chance of the global one.
        lesion_inference_negatives: add "Segment the opacity in L and predict its type." -> "There is no
            opacity in L." next to every basic opacity negative at L (Table 9 counts them apart).
        max_ctr: cardiomegaly negatives only when the cardiothoracic ratio is at most this (Appendix D.3).
    """

    def __init__(
        self,
        seed: int = 0,
        global_negative_probability: float = 0.5,
        lesion_inference_negatives: bool = True,
        max_ctr: float = CARDIOMEGALY_NEGATIVE_MAX_CTR,
    ):
        if not 0.0 <= float(global_negative_probability) <= 1.0:
            raise ValueError(f"global_negative_probability must be in [0, 1], got {global_negative_probability!r}.")
        self.seed = int(seed)
        self.global_negative_probability = float(global_negative_probability)
        self.lesion_inference_negatives = bool(lesion_inference_negatives)
        self.max_ctr = float(max_ctr)

    # ------------------------------------------------------------------------------------------
    def __call__(self, study: StudyGrounding) -> GeneratedPairs:
        if not isinstance(study, StudyGrounding):
            raise TypeError(f"PairGenerator expects a StudyGrounding, got {type(study).__name__}.")
        if not study.qc_passed:
            return GeneratedPairs()
        rng = study_rng(self.seed, study.study_key)
        findings = [f for f in study.findings if isinstance(f, GroundedFinding)]
        basics, inferences = self._basic_and_inference_positives(findings)
        globals_ = self._global_positives(findings)
        out = GeneratedPairs()
        mask_names: dict[bytes, str] = {}
        for positive in (*basics, *globals_, *inferences):
            out.samples.append(self._positive_sample(study, positive, out.masks, mask_names))
        for sample in self._negatives(study, findings, basics, rng):
            sample.extra["sent_idx"] = _negating_sentence(findings, sample.target)
            out.samples.append(sample)
        study_fields = {"section_name": study.section_name, "section_content": study.section_content}
        for index, sample in enumerate(out.samples):
            sample.extra = {"pair_id": f"{study.study_key}_{index}", **sample.extra,
                            **{k: v for k, v in study_fields.items() if v is not None}}
        return out

    # ------------------------------------------------------------------------------------------
    # positives
    # ------------------------------------------------------------------------------------------
    def _basic_and_inference_positives(self, findings):
        basics: dict[str, _Positive] = {}
        inferences: dict[str, _Positive] = {}
        ambiguous: set[str] = set()
        for finding in findings:
            lesion_type = finding.effective_lesion_type
            if lesion_type is None or lesion_type in ORGAN_LEVEL_LESION_TYPES or not finding.is_grounded:
                continue
            locations = instruction_locations(finding.grounded_location)
            if not locations:
                continue
            word = lesion_type if finding.certainty == "definitive" else GENERIC_LESION_TYPE
            key = render_instruction("basic", word, locations)
            if key in basics:  # same instruction twice: one pair whose mask covers both findings
                merged = basics[key].add(finding)
                merged.mask = merged.mask | finding.mask
                if merged.lesion_type != lesion_type:
                    merged.lesion_type = word
            else:
                basics[key] = _Positive("basic", lesion_type, word, locations, (), finding.certainty, finding.mask.copy()).add(finding)
            if lesion_type in INFERABLE_LESION_TYPES:
                key = render_instruction("lesion_inference", None, locations)
                if key in inferences:
                    other = inferences[key].add(finding)
                    if other.lesion != lesion_type or other.certainty != finding.certainty:
                        ambiguous.add(key)  # one opacity, two answers: no valid single pair
                    other.mask = other.mask | finding.mask
                else:
                    inferences[key] = _Positive(
                        "lesion_inference", lesion_type, GENERIC_LESION_TYPE, locations, (), finding.certainty, finding.mask.copy(), lesion_type
                    ).add(finding)
        return list(basics.values()), [p for k, p in inferences.items() if k not in ambiguous]

    def _global_positives(self, findings):
        out = []
        positives = [f for f in findings if f.is_positive]
        for lesion_type in LESION_TYPES:
            own = [f for f in positives if f.effective_lesion_type == lesion_type]
            if not own:
                continue
            if any(f.certainty != "definitive" for f in own):
                continue  # the global answer cannot carry uncertainty (see docs/generation.md)
            if lesion_type in ORGAN_LEVEL_LESION_TYPES:
                masks = [f.mask for f in own if f.mask is not None and f.mask.any()]
                if masks:
                    out.append(_Positive("global", lesion_type, lesion_type, (), (HEART,), "definitive", np.logical_or.reduce(masks), findings=own))
                continue
            conflicts = GLOBAL_POSITIVE_CONFLICTS.get(lesion_type, ())
            if any(f.effective_lesion_type in conflicts for f in positives if f.effective_lesion_type != lesion_type):
                continue
            if not all(f.is_grounded and set(f.grounded_location) == set(f.reported_location) for f in own):
                continue
            grounded = [label for f in own for label in f.grounded_location]
            locations = instruction_locations(grounded)
            if not locations:
                continue
            mask = np.logical_or.reduce([f.mask for f in own])
            out.append(_Positive("global", lesion_type, lesion_type, (), locations, "definitive", mask, findings=list(own)))
        return out

    def _positive_sample(self, study, positive: _Positive, masks: dict, mask_names: dict) -> ILSSample:
        fingerprint = hashlib.sha1(np.packbits(positive.mask).tobytes() + str(positive.mask.shape).encode()).digest()
        name = mask_names.get(fingerprint)
        if name is None:
            count = sum(1 for n in masks if n.rsplit("/", 1)[-1].startswith(positive.lesion_type + "_"))
            name = f"{mask_folder_name(study.study_key)}/{positive.lesion_type}_{count}.png"
            mask_names[fingerprint] = name
            masks[name] = positive.mask
        if positive.question_type == "basic":
            instruction = render_instruction("basic", positive.word, positive.locations)
            answer = render_answer("basic", "positive", positive.word, positive.locations)
            location = positive.locations
        elif positive.question_type == "global":
            instruction = render_instruction("global", positive.word)
            answer = render_answer("global", "positive", positive.word, positive.answer_locations)
            location = positive.answer_locations
        else:
            instruction = render_instruction("lesion_inference", None, positive.locations)
            answer = render_answer("lesion_inference", positive.certainty, None, positive.locations, lesion=positive.lesion)
            location = positive.locations
        return ILSSample(
            split=study.split,
            study_key=study.study_key,
            image_path=study.image_path,
            instruction=instruction,
            answer=answer,
            target=positive.lesion_type,
            positive=True,
            seg_mask_path=name,
            question_type=positive.question_type,
            location=list(location),
            certainty=positive.certainty,
            lesion=positive.lesion,
            extra=_finding_fields(positive),
        )

    # ------------------------------------------------------------------------------------------
    # negatives
    # ------------------------------------------------------------------------------------------
    def _negatives(self, study, findings, basics, rng) -> list[ILSSample]:
        positives = [f for f in findings if f.is_positive]
        empty = self._empty_candidates(study, positives)
        used_targets: set[str] = set()
        out: list[ILSSample] = []
        for lesion_type in LESION_TYPES:
            own_positive = [f for f in positives if f.effective_lesion_type == lesion_type]
            if own_positive:
                # (2) a positive basic instruction of this lesion with its location replaced by an empty one
                own_basics = [b for b in basics if b.lesion_type == lesion_type]
                if not own_basics or not empty:
                    continue
                word = own_basics[int(rng.integers(len(own_basics)))].word
                if word in used_targets:
                    continue
                location = empty[int(rng.integers(len(empty)))]
                out.extend(self._basic_negative(study, word, location))
                used_targets.add(word)
                continue
            # (1) a lesion that is never mentioned or is negated definitively
            mentioned = [f for f in findings if f.effective_lesion_type == lesion_type]
            if any(f.certainty == "tentative" for f in mentioned) or lesion_type in used_targets:
                continue  # "pneumonia is unlikely" neither asserts nor rules out
            can_global = self._global_negative_allowed(lesion_type, positives, study.ctr)
            can_basic = bool(empty) and lesion_type not in ORGAN_LEVEL_LESION_TYPES
            if not (can_global or can_basic):
                continue
            use_global = can_global and (not can_basic or rng.random() < self.global_negative_probability)
            if use_global:
                out.append(self._negative_sample(study, "global", lesion_type, ()))
            else:
                location = empty[int(rng.integers(len(empty)))]
                out.extend(self._basic_negative(study, lesion_type, location))
            used_targets.add(lesion_type)
        return out

    @staticmethod
    def _empty_candidates(study: StudyGrounding, positives) -> list[str]:
        if study.empty_locations is not None:
            return [label for label in _TABLE8_ORDER if label in study.empty_locations]
        if not positives:  # nothing reported: every lung region is free
            return list(_TABLE8_ORDER)
        return []

    def _global_negative_allowed(self, lesion_type, positives, ctr) -> bool:
        if lesion_type in ORGAN_LEVEL_LESION_TYPES:
            return cardiomegaly_negative_allowed(ctr, self.max_ctr)
        conflicts = GLOBAL_NEGATIVE_CONFLICTS.get(lesion_type, ())
        return not any(f.effective_lesion_type in conflicts for f in positives)

    def _basic_negative(self, study, word: str, location: str) -> list[ILSSample]:
        out = [self._negative_sample(study, "basic", word, (location,))]
        if self.lesion_inference_negatives and word == GENERIC_LESION_TYPE:
            out.append(self._negative_sample(study, "lesion_inference", GENERIC_LESION_TYPE, (location,)))
        return out

    @staticmethod
    def _negative_sample(study, question_type: str, word: str, locations: Sequence[str]) -> ILSSample:
        target = None if question_type == "lesion_inference" else word
        return ILSSample(
            split=study.split,
            study_key=study.study_key,
            image_path=study.image_path,
            instruction=render_instruction(question_type, target, locations),
            answer=render_answer(question_type, "negative", word, locations),
            target=word,
            positive=False,
            seg_mask_path=None,
            question_type=question_type,
            location=list(locations),
        )


def _ordered_labels(labels: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(labels))


def _finding_fields(positive: _Positive) -> dict:
    """The released schema's per-pair facts of a positive: the sentence and the locations of its findings.

    ``sent_idx`` is the first sentence (1-based, as ``GroundedFinding.sentence_index``) of the findings the pair
    was made from; ``sent_idx_all`` lists them all when several findings were merged into the pair. An organ-level
    pair (cardiomegaly -> heart mask) is grounded in the heart."""
    findings = positive.findings
    sentences = sorted({f.sentence_index for f in findings if f.sentence_index is not None})
    grounded = _ordered_labels(label for f in findings for label in f.grounded_location)
    if not grounded and positive.lesion_type in ORGAN_LEVEL_LESION_TYPES:
        grounded = [HEART]
    fields_ = {
        "sent_idx": sentences[0] if sentences else None,
        "reported_location": _ordered_labels(label for f in findings for label in f.reported_location),
        "grounded_location": grounded,
    }
    if len(sentences) > 1:
        fields_["sent_idx_all"] = sentences
    return fields_


def _negating_sentence(findings, target: str) -> int | None:
    """The sentence of a definitive negative finding of ``target`` ("No pleural effusion."), else None (a lesion
    the report never mentions, or a negative made by moving a positive's location)."""
    for finding in findings:
        if finding.presence == "negative" and finding.effective_lesion_type == target and finding.sentence_index is not None:
            return finding.sentence_index
    return None


def generate_pairs(study: StudyGrounding, seed: int = 0, **options) -> GeneratedPairs:
    """Functional form of :class:`PairGenerator`: ``generate_pairs(study, seed=0)``."""
    return PairGenerator(seed=seed, **options)(study)
