"""ConText rules: medspaCy's defaults, minus the few that misfire on CXR reports, plus our hedges.

Categories read by the structurer:
  NEGATED_EXISTENCE   -> presence negative (definitive)
  NEGATED_TENTATIVE   -> presence negative, certainty tentative ("no definite", "unlikely")
  POSSIBLE_EXISTENCE  -> certainty tentative ("may represent", "cannot be excluded", "likely", ...)
  PSEUDO              -> a longer phrase that cancels a shorter trigger inside it ("no change in" is
                         not a negation; "to suggest" after "no" is not a hedge)
  CLAUSE_HEDGE        -> a hedge that opens a new clause after a comma (", likely", ", concerning for"): read
                         as POSSIBLE_EXISTENCE, and it ends a negation's scope, so in "opacity, without
                         effusion, likely pneumonia" the pneumonia is hedged, not negated
  HISTORICAL          -> seen on another exam or old disease ("on the prior CT", "sequela of"): the finding is
                         not one of this radiograph and is dropped, unless it is also negated
  NOT_A_FINDING       -> a limit of the exam or a clinical question ("evaluation for pleural fluid is limited",
                         "correlate for symptoms of infection"): dropped
  TERMINATE           -> ends the scope of every trigger ("but", "and a", "which", "with")
"""

from __future__ import annotations

from medspacy.context import ConText, ConTextRule

__all__ = ["EXTRA_RULES", "DROPPED_DEFAULT_LITERALS", "TENTATIVE_CATEGORIES", "build_context"]

DROPPED_DEFAULT_LITERALS = frozenset({"resolved", "now resolved", "unlikely", "free", "decline", "prophylaxis", "doubt",
                                      "secondary", "secondary to", "evaluate for"})
"""Default literals we replace ("resolved", "unlikely", "evaluate for") or that misfire ("free air" is a finding;
"secondary to" ends no scope: in "opacities may be secondary to infiltrates or edema" the hedge covers the list)."""


def _rules(literals, category, direction, **kwargs):
    return [ConTextRule(lit, category, direction=direction, **kwargs) for lit in literals]


EXTRA_RULES: list[ConTextRule] = [
    # --- hedges medspaCy misses (certainty tentative)
    *_rules(
        ["may represent", "may reflect", "may be", "may relate to", "might represent", "might reflect", "could represent",
         "could reflect", "could be", "can't exclude", "cannot exclude", "can not exclude", "cannot rule out",
         "can not rule out", "not exclude", "suggests", "suggest", "suggesting", "suggestion of", "suggestive of",
         "concerning for", "concern for", "suspicious for", "question of", "questionable", "equivocal",
         "possibly", "probable", "probably", "presumed", "presumably", "likely", "most likely", "more likely",
         "potential", "potentially", "differential diagnosis includes", "differential includes",
         "raises the possibility of", "raising the possibility of", "consider", "considered", "suspected",
         "suspect", "borderline", "possibility of", "worrisome for",
         # differentials, clinical correlation and other hedges of real reports ("developing" is not one)
         "differential considerations include", "differential considerations", "differential diagnosis include",
         "differential diagnoses include", "differential would include", "differential includes",
         "correlate clinically for", "clinically correlate for", "correlate for", "clinical correlation for",
         "in the appropriate clinical setting", "in the proper clinical setting", "in the right clinical setting",
         "favoring", "favored", "favor", "favored as", "difficult to completely exclude", "difficult to exclude",
         "difficult to entirely exclude", "question", "questioned", "suspicion for", "suspicion of", "may indicate",
         "might indicate", "could indicate", "may also be", "may also represent", "may also reflect",
         "could also be", "may be secondary to", "may be due to", "may be related to", "could be secondary to",
         "it is difficult to exclude", "it is difficult to completely exclude", "it is difficult to entirely exclude"],
        "POSSIBLE_EXISTENCE", "FORWARD",
    ),
    *_rules(
        ["cannot be excluded", "can not be excluded", "cannot be entirely excluded", "cannot be completely excluded",
         "cannot be ruled out", "not excluded", "not entirely excluded", "not be excluded", "difficult to exclude",
         "is possible", "are possible", "is likely", "are likely", "is suspected", "are suspected", "is questioned",
         "is a possibility", "could be considered", "may be present", "is not excluded", "are not excluded",
         "is probable", "is in the differential", "are in the differential", "in the differential",
         "would be a consideration", "is a consideration", "are a consideration", "could be a consideration",
         "is difficult to exclude", "is difficult to completely exclude", "are difficult to exclude",
         "is favored", "are favored", "is questioned", "are questioned"],
        # a comma ends the backward scope: "effusion with atelectasis, consolidation not excluded"
        "POSSIBLE_EXISTENCE", "BACKWARD", max_scope=8, terminated_by={"CLAUSE_BREAK"},
    ),
    ConTextRule(",", "CLAUSE_BREAK", direction="PSEUDO", max_scope=1),
    *_rules(
        [f", {hedge}" for hedge in ("likely", "most likely", "more likely", "probably", "possibly", "possible", "probable",
                                     "presumably", "presumed", "concerning for", "suspicious for", "suggestive of",
                                     "suggesting", "worrisome for", "which may represent", "which may reflect",
                                     "which could represent", "which could reflect", "may represent", "may reflect",
                                     "could represent", "could reflect", "question of", "possibly reflecting",
                                     "likely reflecting", "likely representing")],
        "CLAUSE_HEDGE", "FORWARD",
    ),  # small scope: medspaCy only sees partial overlaps
    *_rules(["versus", "vs", "vs.", "and/or", "?"], "POSSIBLE_EXISTENCE", "BIDIRECTIONAL", max_scope=4),
    # --- hedged negations (negative, tentative)
    *_rules(
        ["no definite", "no definitive", "no convincing", "no clear", "no clear evidence of", "not definitely",
         "not clearly", "no obvious", "less likely", "not likely", "unlikely to represent", "unlikely to be",
         "no definite evidence of", "no convincing evidence of", "no radiographic evidence to suggest"],
        "NEGATED_TENTATIVE", "FORWARD",
    ),
    *_rules(["unlikely", "is unlikely", "are unlikely", "is less likely", "are less likely", "is doubtful", "doubtful",
             "is not likely"], "NEGATED_TENTATIVE", "BACKWARD"),
    # --- "lungs are expanded and clear airspace disease": "clear" without its "of"; a short scope
    *_rules(["and clear", "are clear", "is clear"], "NEGATED_EXISTENCE", "FORWARD", max_scope=3,
            terminated_by={"CLAUSE_BREAK"}),
    # --- a negation after its far target: "the pneumonia seen on CT last week is not seen today"
    *_rules(["is not seen", "are not seen", "is not visualized", "are not visualized", "is not identified",
             "are not identified", "is no longer visualized", "not seen radiographically"], "NEGATED_EXISTENCE", "BACKWARD"),
    # --- another exam or the past: not a finding of this radiograph (dropped unless also negated)
    *_rules(["on the previous ct", "on the prior ct", "on previous ct", "on prior ct", "on the old ct", "on old ct",
             "seen on ct", "seen on the ct", "seen on prior ct", "seen on old ct", "on recent ct", "on the recent ct",
             "on the ct scan", "on ct scans", "on old ct scans", "on prior ct scans", "on the chest ct",
             "on the outside ct", "on the previous ct scan", "on the prior ct scan"],
            "HISTORICAL", "BIDIRECTIONAL", terminated_by={"CLAUSE_BREAK"}),
    *_rules(["sequela of", "sequelae of", "stigmata of", "residua of", "evidence of prior", "evidence of old"],
            "HISTORICAL", "FORWARD", max_scope=6),
    # --- not a finding at all: a limit of the exam, a clinical question
    *_rules(["evaluation for", "evaluation of", "assessment for", "assessment of", "evaluate for", "to assess for",
             "to evaluate for", "symptoms of", "signs and symptoms of", "clinical signs of"],
            "NOT_A_FINDING", "FORWARD", max_scope=6, terminated_by={"CLAUSE_BREAK"}),
    # --- resolution is absence; worsening/improvement/stability is presence
    *_rules(["resolved", "cleared"], "NEGATED_EXISTENCE", "BIDIRECTIONAL"),
    *_rules(["resolution of", "interval resolution of", "clearing of"], "NEGATED_EXISTENCE", "FORWARD"),
    *_rules(["has resolved", "have resolved", "has cleared", "have cleared", "is gone", "are gone", "has disappeared",
             "have disappeared"], "NEGATED_EXISTENCE", "BACKWARD"),
    # one token pattern (spaCy warns when ConText's token matcher is left empty)
    ConTextRule("no longer seen", "NEGATED_EXISTENCE", direction="BACKWARD",
                pattern=[{"LOWER": "no"}, {"LOWER": "longer"},
                         {"LOWER": {"IN": ["seen", "visible", "present", "evident", "identified", "apparent", "visualized"]}}]),
    *_rules(
        ["no change in", "no significant change in", "no interval change in", "no substantial change in",
         "no appreciable change in", "no significant interval change in", "no relevant change in", "little change in",
         "no increase in", "no decrease in", "no interval increase in", "no interval decrease in",
         "no significant increase in", "no significant interval increase in", "no further increase in",
         "no significant decrease in", "no increase of", "no interval increase of", "no change of", "not changed", "not significantly changed",
         "without change", "without significant change", "without interval change", "not substantially changed",
         "nearly resolved", "almost resolved", "partially resolved", "not completely resolved",
         "not entirely resolved", "incompletely resolved", "partial resolution of", "near complete resolution of",
         "no significant improvement", "no improvement", "not improved", "no pneumothorax is seen but",
         "to suggest", "to indicate", "not only", "no longer requires", "without significant interval change",
         "without significant interval change of", "without interval change of", "without significant change of",
         "without change of", "without change in", "without significant change in", "without interval change in",
         "no significant interval change of", "no interval change of",
         ],
        "PSEUDO", "PSEUDO",
    ),
    # --- scope enders
    *_rules(
        ["but", "however", "although", "though", "which", "whereas", "while", "and there is", "and there are",
         "there is", "there are", "with a", "with an", "and a", "and an", "and the", "and mild", "and small",
         "and moderate", "and large", "and new", "and increased", "and increasing", "and persistent", "and stable",
         "and unchanged", "and worsening", "and improving", "and improved", "and decreased", "and residual",
         "and possible", "and likely", ";", "otherwise", "apart from", "aside from", "except for", "other than",
         "given", "with"],
        "TERMINATE", "TERMINATE",
    ),
]


USED_CATEGORIES = frozenset({"NEGATED_EXISTENCE", "NEGATED_TENTATIVE", "POSSIBLE_EXISTENCE", "PSEUDO"})
DROPPING_CATEGORIES = frozenset({"HISTORICAL", "NOT_A_FINDING"})
"""Categories of our own rules that remove a (positive) finding: another exam's or an old one, or not a finding."""
TENTATIVE_CATEGORIES = frozenset({"POSSIBLE_EXISTENCE", "CLAUSE_HEDGE"})
"""Categories that make a positive finding tentative."""
_NEGATION_ENDED_BY = {"NEGATED_EXISTENCE": ["CLAUSE_HEDGE"], "NEGATED_TENTATIVE": ["CLAUSE_HEDGE"]}


def _expand_pattern(rule: ConTextRule) -> list[ConTextRule]:
    """Literal rules for every phrase a token pattern (``LOWER`` / ``IN`` / ``OP: ?``) matches.

    spaCy's PhraseMatcher is ~10x faster than its token Matcher on our reports, and the default
    patterns only enumerate word choices, so expanding them keeps the behaviour and the speed target.
    """
    phrases = [[]]
    for token in rule.pattern:
        value = token.get("LOWER")
        words = value["IN"] if isinstance(value, dict) else [value]
        options = [[w] for w in words] + ([[]] if token.get("OP") == "?" else [])
        phrases = [p + o for p in phrases for o in options]
    out = []
    for words in phrases:
        if words:
            out.append(ConTextRule(" ".join(words), rule.category, direction=rule.direction, max_scope=rule.max_scope,
                                   allowed_types=rule.allowed_types, excluded_types=rule.excluded_types))
    return out


def default_rules(path: str) -> list[ConTextRule]:
    """medspaCy's default rules (the JSON at ``path``) that we keep, all as literals (patterns expanded)."""
    out = []
    for rule in ConTextRule.from_json(path):
        if rule.literal.lower() in DROPPED_DEFAULT_LITERALS:
            continue
        if rule.category.upper() not in USED_CATEGORIES and rule.direction.upper() != "TERMINATE":
            continue  # family/historical/hypothetical triggers do not change presence or certainty
        out.extend(_expand_pattern(rule) if rule.pattern is not None else [rule])
    return [r for r in out if r.literal.lower() not in DROPPED_DEFAULT_LITERALS]


def build_context(nlp) -> ConText:
    """A ConText component on ``nlp`` with the filtered defaults and ``EXTRA_RULES``."""
    context = ConText(nlp, rules=None, terminating_types=_NEGATION_ENDED_BY)
    context.add(default_rules(context.DEFAULT_RULES_FILEPATH))
    context.add(EXTRA_RULES)
    return context
