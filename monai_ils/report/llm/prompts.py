"""Prompts of the LLM structurer and location mapper (our wording; the labelling rules of the paper).

The report is sent as numbered sentences so that the model copies indices instead of counting them,
and the answer is a JSON object constrained by ``finding.llm_output_json_schema``.
"""

from __future__ import annotations

import json

from monai_ils.vocab import LESION_TYPES, LOCATION_CATEGORIES, LUNG_LABELS

__all__ = ["structuring_messages", "retry_message", "category_messages", "lung_label_messages", "number_sentences"]

STRUCTURING_SYSTEM = f"""You turn one section of a chest X-ray report into structured findings.
Answer with one JSON object {{"findings": [...]}} and nothing else.

What to extract
- One item per disease or radiographic finding the section mentions, present or absent.
- Never extract medical devices or their positions (tubes, lines, catheters, pacemakers, wires, clips).
- Never extract normal descriptions ("lungs are clear", "heart size is normal", "unremarkable").
- An absent finding is extracted only when it is named ("no pneumothorax").
- Never extract what is no lung finding of this radiograph: shadows of the breasts or nipples, piercings,
  artifacts, or a density the report explains as one of them or as a hiatal hernia or granuloma
  ("retrocardiac density representing a hiatal hernia": extract the hernia only); findings stated for
  another exam ("on the prior CT the lobe was consolidated") or old disease ("sequela of old
  granulomatous infection"); limits of the exam ("evaluation for pleural fluid is limited") and
  clinical questions ("correlate for symptoms of infection").
- "___" and runs of X are de-identification blanks: read through them.

Fields of an item
- entity: the finding as written, without location words ("retrocardiac opacity" -> "opacity").
- sentence_index: number of the sentence that states it (sentences are numbered from 1).
- presence: "positive" when present, also when stable, unchanged, improved or worse
  ("no change in the effusion", "without significant interval change of atelectasis" are positive);
  "negative" when stated absent or resolved, also when the negation comes after a distant subject
  ("the pneumonia seen on CT is not seen") and in "no other infiltrates". A negation ends at "with":
  in "no cardiomegaly with small bilateral effusions" the effusions are positive.
- certainty: "tentative" when hedged ("possible", "may represent", "likely", "suggests",
  "concerning for", "cannot be excluded", "versus"), offered as one of alternatives ("atelectasis or
  scarring", "differential diagnosis includes", "is in the differential"), or put as a question or a
  suspicion ("question small effusion", "suspicion for", "correlate clinically for pneumonia", "in the
  appropriate clinical setting ... compatible with", "favoring", "difficult to completely exclude",
  "would be a consideration", "may indicate", "may also be"). A hedge covers every item of its list
  ("may be secondary to infiltrates or edema") and a cause hedged in the next sentence ("... opacities.
  This may be due to edema."). "Developing" is not a hedge. Otherwise "definitive".
  A finding whose predicted lesion type is hedged is tentative too.
- location_terms: every location phrase of this finding, copied from the text
  ("right lower lobe", "bibasilar", "left", "retrocardiac"); [] when none.
- lesion_type: one of {list(LESION_TYPES)} when the entity is one of them or a synonym
  (pleural effusion -> effusion, enlarged heart -> cardiomegaly, airspace disease, infiltrate or an
  "opaque" lobe -> opacity, collapse -> atelectasis, infection -> pneumonia); null for any other finding
  (pneumothorax, nodule, emphysema, vascular congestion, ...). Cardiomegaly also covers "the heart is
  mildly large", "heart size mildly enlarged", "mild heart enlargement", "increase in heart size", and,
  tentative, "borderline heart size" or "upper limits of normal or mildly enlarged"; an "enlarged
  cardiomediastinal silhouette" is not cardiomegaly (null: it may be mediastinal).
- predicted_lesion_type: for an opacity or consolidation that the report says reflects a specific
  lesion ("opacity likely reflecting atelectasis"), that lesion (one of the types above);
  otherwise null. The predicted lesion is not extracted as a separate item.
- predicted_sentence_index: the sentence that states the predicted lesion; null when there is none.
"""

EXAMPLES: tuple[tuple[str, dict], ...] = (
    (
        "1. Left chest tube is in place.\n2. Bibasilar opacities, likely atelectasis.\n3. No pleural effusion.",
        {"findings": [
            {"entity": "opacities", "sentence_index": 2, "presence": "positive", "certainty": "tentative",
             "location_terms": ["bibasilar"], "lesion_type": "opacity", "predicted_lesion_type": "atelectasis",
             "predicted_sentence_index": 2},
            {"entity": "pleural effusion", "sentence_index": 3, "presence": "negative", "certainty": "definitive",
             "location_terms": [], "lesion_type": "effusion", "predicted_lesion_type": None, "predicted_sentence_index": None},
        ]},
    ),
    (
        "1. Stable cardiomegaly.\n2. Right lower lobe consolidation.\n3. This is consistent with pneumonia.\n"
        "4. The small left apical pneumothorax has resolved.",
        {"findings": [
            {"entity": "cardiomegaly", "sentence_index": 1, "presence": "positive", "certainty": "definitive",
             "location_terms": [], "lesion_type": "cardiomegaly", "predicted_lesion_type": None, "predicted_sentence_index": None},
            {"entity": "consolidation", "sentence_index": 2, "presence": "positive", "certainty": "definitive",
             "location_terms": ["right lower lobe"], "lesion_type": "consolidation", "predicted_lesion_type": "pneumonia",
             "predicted_sentence_index": 3},
            {"entity": "pneumothorax", "sentence_index": 4, "presence": "negative", "certainty": "definitive",
             "location_terms": ["left apical"], "lesion_type": None, "predicted_lesion_type": None, "predicted_sentence_index": None},
        ]},
    ),
    ("1. The lungs are clear.\n2. Heart size is normal.", {"findings": []}),
)


def number_sentences(sentences: list[str]) -> str:
    return "\n".join(f"{i}. {s}" for i, s in enumerate(sentences, 1))


def structuring_messages(sentences: list[str]) -> list[dict[str, str]]:
    """Chat messages asking for the findings of one section (system rules, worked examples, the report)."""
    messages = [{"role": "system", "content": STRUCTURING_SYSTEM}]
    for text, answer in EXAMPLES:
        messages.append({"role": "user", "content": f"Report section:\n{text}"})
        messages.append({"role": "assistant", "content": json.dumps(answer)})
    messages.append({"role": "user", "content": f"Report section:\n{number_sentences(sentences)}"})
    return messages


def retry_message(reason: str) -> dict[str, str]:
    """The follow-up turn after an invalid answer: say what was wrong and ask again."""
    return {"role": "user", "content": f"That answer was rejected: {reason}. Reply again with only the JSON object, "
                                       "using the allowed values."}


CATEGORY_SYSTEM = f"""You map an anatomical location term from a chest X-ray report to one category.
Categories: {", ".join(LOCATION_CATEGORIES)}.
Rules: choose the category of standard chest X-ray anatomy; "cardiac" is heart, "pulmonary" is lung,
"vasculature" is vessels; "left", "right" or "bilateral" alone mean lung; places seen mainly or only on a
lateral view (retrocardiac, retrosternal, posterior sulcus) are "lateral view location"; a term outside
chest anatomy is null. Answer with JSON {{"category": <category or null>}}."""

LUNG_LABEL_SYSTEM = f"""You map a lung location term from a chest X-ray report, given its finding, to lung regions.
Regions: {", ".join(LUNG_LABELS)}.
Rules: choose every region the term covers, without overlaps (a whole lung instead of all of its zones);
when the term gives no position, decide from the finding alone; answer [] when nothing fits.
Answer with JSON {{"labels": [<regions>]}}."""


def category_messages(term: str, entity: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": CATEGORY_SYSTEM},
            {"role": "user", "content": f"Location term: {term}\nFinding: {entity}"}]


def lung_label_messages(term: str, entity: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": LUNG_LABEL_SYSTEM},
            {"role": "user", "content": f"Location term: {term}\nFinding: {entity}"}]


def category_schema() -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["category"],
            "properties": {"category": {"anyOf": [{"type": "string", "enum": list(LOCATION_CATEGORIES)}, {"type": "null"}]}}}


def lung_label_schema() -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["labels"],
            "properties": {"labels": {"type": "array", "items": {"type": "string", "enum": list(LUNG_LABELS)}}}}
