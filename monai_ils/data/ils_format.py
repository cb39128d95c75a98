"""The MIMIC-ILS / ROSALIA dataset layout: one reader and one writer for every tool in monai-ils.

JSON layout (what ROSALIA's training code reads, and what our generator writes)::

    {split: {study_key: {"image_path": ...,
                         "instruction_answer_pairs": {"positive_pairs": [pair, ...],
                                                      "negative_pairs": [pair, ...]}}}}

where a pair is ``{"instruction", "answer", "target", "seg_mask_path"}`` plus, when we wrote it,
``question_type``, ``location`` (anatomical labels), ``certainty`` and ``lesion`` (the lesion named by a
lesion-inference answer). Masks are PNGs with foreground 255; negative pairs have an empty mask (we
write none: ``seg_mask_path`` is null and readers produce an all-zero mask).

The reader also accepts the record layout of the official MIMIC-ILS release (a list of records with
``question``/``answer`` lists, ``seg``, ``seg_mask_path``, ``target``, ``dicom_id`` ...), with or without a
split level. Fields missing from a release are inferred by parsing the texts with Table 2's templates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from monai_ils.data.templates import parse_answer, parse_instruction

PathLike = str | os.PathLike


class DatasetFormatError(ValueError):
    """A dataset file that does not follow the layout; the message names the file and the entry."""


@dataclass
class ILSSample:
    """One instruction-answer pair on one image (the unit of training and evaluation)."""

    split: str
    study_key: str
    image_path: str
    instruction: str
    answer: str
    target: str
    positive: bool
    seg_mask_path: str | None = None
    question_type: str | None = None
    location: list[str] = field(default_factory=list)
    certainty: str | None = None
    lesion: str | None = None
    extra: dict = field(default_factory=dict)

    def to_pair(self, root: Path | None = None) -> dict:
        """The pair dict of the JSON layout; paths are made relative to ``root`` when inside it."""
        pair = {
            "instruction": self.instruction,
            "answer": self.answer,
            "target": self.target,
            "seg_mask_path": _relative(self.seg_mask_path, root),
            "question_type": self.question_type,
            "location": list(self.location),
            "certainty": self.certainty,
            "lesion": self.lesion,
        }
        pair.update(self.extra)
        return pair

    def load_mask(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The answer mask as a bool [H, W] array; an empty mask for negatives (``shape`` required then)."""
        if self.seg_mask_path:
            return load_mask_png(self.seg_mask_path)
        if shape is None:
            raise ValueError(f"Sample {self.study_key!r} ({self.instruction!r}) has no mask file; pass the image shape.")
        return np.zeros(shape, dtype=bool)


# ------------------------------------------------------------------------------------------------
# masks
# ------------------------------------------------------------------------------------------------
def save_mask_png(mask, path: PathLike) -> Path:
    """Write a binary mask ([H, W] or [1, H, W]) as an 8-bit PNG with foreground 255."""
    array = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    array = np.squeeze(array)
    if array.ndim != 2:
        raise ValueError(f"save_mask_png: expected a 2-D mask, got shape {array.shape} for {path}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(array > 0, 255, 0).astype(np.uint8)).save(path)
    return path


def load_mask_png(path: PathLike) -> np.ndarray:
    """Read a mask PNG as bool [H, W]; any non-zero pixel is foreground."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L"))
    except FileNotFoundError:
        raise FileNotFoundError(f"Mask file not found: {path}") from None
    except OSError as err:
        raise DatasetFormatError(f"Mask file {path} is not a readable image: {err}") from err
    return array > 0


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def read_ils_json(path: PathLike, splits: Iterable[str] | None = None, image_root: PathLike | None = None) -> list[ILSSample]:
    """Read a dataset JSON (ours, ROSALIA's or the official release) into a flat list of samples.

    Relative image and mask paths are resolved against ``image_root`` (default: the JSON's folder).
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON ({err}).") from err
    root = Path(image_root) if image_root is not None else path.parent
    wanted = set(splits) if splits is not None else None
    samples = []
    for split, studies in _split_items(content, path):
        if wanted is not None and split not in wanted:
            continue
        if isinstance(studies, dict):
            for study_key, study in studies.items():
                samples.extend(_samples_from_study(split, str(study_key), study, root, path))
        elif isinstance(studies, list):
            for index, record in enumerate(studies):
                samples.extend(_samples_from_record(split, record, root, f"{path}: {split}[{index}]"))
        else:
            raise DatasetFormatError(f"{path}: split {split!r} must map study keys to studies or hold a list of records.")
    return samples


def _split_items(content, path):
    if isinstance(content, list):  # a release file without a split level
        return [("all", content)]
    if not isinstance(content, dict):
        raise DatasetFormatError(f"{path}: top level must be an object keyed by split or a list of records.")
    return list(content.items())


def _samples_from_study(split, study_key, study, root, path) -> list[ILSSample]:
    where = f"{path}: {split}/{study_key}"
    if not isinstance(study, dict) or "image_path" not in study:
        raise DatasetFormatError(f"{where}: a study needs 'image_path' and 'instruction_answer_pairs'.")
    pairs = study.get("instruction_answer_pairs")
    if not isinstance(pairs, dict):
        raise DatasetFormatError(f"{where}: 'instruction_answer_pairs' must hold 'positive_pairs' and 'negative_pairs'.")
    image_path = _resolve(study["image_path"], root)
    samples = []
    for group, positive in (("positive_pairs", True), ("negative_pairs", False)):
        for index, pair in enumerate(pairs.get(group, [])):
            samples.append(_sample(split, study_key, image_path, pair, positive, root, f"{where}/{group}[{index}]"))
    return samples


def _samples_from_record(split, record, root, where) -> list[ILSSample]:
    """Official-release records: one mask with parallel lists of questions and answers."""
    if not isinstance(record, dict):
        raise DatasetFormatError(f"{where}: a record must be an object.")
    questions, answers = record.get("question"), record.get("answer")
    if isinstance(questions, str):
        questions, answers = [questions], [answers]
    if not isinstance(questions, list) or not isinstance(answers, list) or len(questions) != len(answers):
        raise DatasetFormatError(f"{where}: 'question' and 'answer' must be lists of the same length.")
    image = record.get("image_path") or record.get("image") or record.get("dicom_id")
    if not image:
        raise DatasetFormatError(f"{where}: the record names no image ('image_path', 'image' or 'dicom_id').")
    study_key = str(record.get("section_id") or record.get("study_id") or image)
    positive = bool(record.get("seg", bool(record.get("seg_mask_path"))))
    base = {k: v for k, v in record.items() if k not in {"question", "answer", "image_path", "image"}}
    return [
        _sample(split, study_key, _resolve(image, root), {**base, "instruction": q, "answer": a}, positive, root, f"{where}[{i}]")
        for i, (q, a) in enumerate(zip(questions, answers))
    ]


_PAIR_KEYS = {"instruction", "answer", "target", "seg_mask_path", "question_type", "location", "certainty", "lesion", "seg"}


def _sample(split, study_key, image_path, pair, positive, root, where) -> ILSSample:
    if not isinstance(pair, dict):
        raise DatasetFormatError(f"{where}: a pair must be an object.")
    missing = [k for k in ("instruction", "answer") if not pair.get(k)]
    if missing:
        raise DatasetFormatError(f"{where}: missing {missing}.")
    parsed_instruction = parse_instruction(pair["instruction"])
    parsed_answer = parse_answer(pair["answer"])
    question_type = pair.get("question_type") or (parsed_instruction.question_type if parsed_instruction else None)
    target = pair.get("target")
    if isinstance(target, list):  # the release may list several targets for one negative record
        target = target[0] if len(target) == 1 else ", ".join(target)
    if not target and parsed_instruction:
        target = parsed_instruction.variables.get("target")
    location = pair.get("location")
    if location is None:
        location = pair.get("grounded_location") if positive else None
    if isinstance(location, str):
        location = [item.strip() for item in location.split(",") if item.strip()]
    if location is None and parsed_instruction:
        location = parsed_instruction.variables.get("location", [])
    lesion = pair.get("lesion")
    if lesion is None and parsed_answer and "lesion" in parsed_answer.variables:
        lesion = parsed_answer.variables["lesion"]
    certainty = pair.get("certainty")
    mask = pair.get("seg_mask_path") if positive else None
    return ILSSample(
        split=split,
        study_key=study_key,
        image_path=image_path,
        instruction=pair["instruction"],
        answer=pair["answer"],
        target=str(target or "").lower(),
        positive=positive,
        seg_mask_path=_resolve(mask, root) if mask else None,
        question_type=question_type,
        location=list(location or []),
        certainty=certainty.lower() if isinstance(certainty, str) else certainty,
        lesion=lesion,
        extra={k: v for k, v in pair.items() if k not in _PAIR_KEYS and not k.endswith("_location")},
    )


def _resolve(value, root: Path) -> str:
    p = Path(str(value))
    return str(p if p.is_absolute() else root / p)


def _relative(value, root: Path | None):
    if value is None or root is None:
        return value
    try:
        return str(Path(value).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(value)


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def group_samples(samples: Iterable[ILSSample], root: PathLike | None = None) -> dict:
    """Nest samples into the JSON layout (split -> study -> positive/negative pairs)."""
    root = Path(root) if root is not None else None
    content: dict = {}
    for sample in samples:
        study = content.setdefault(sample.split, {}).setdefault(
            sample.study_key,
            {"image_path": _relative(sample.image_path, root), "instruction_answer_pairs": {"positive_pairs": [], "negative_pairs": []}},
        )
        group = "positive_pairs" if sample.positive else "negative_pairs"
        study["instruction_answer_pairs"][group].append(sample.to_pair(root))
    return content


def write_ils_json(path: PathLike, samples: Iterable[ILSSample]) -> Path:
    """Write samples in the JSON layout, paths relative to the JSON's folder; written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(group_samples(samples, path.parent), indent=1))
    tmp.replace(path)
    return path


def write_ils_jsonl(path: PathLike, samples: Iterable[ILSSample], append: bool = False) -> Path:
    """One sample per line: a stream that large runs can append to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w") as stream:
        for sample in samples:
            stream.write(json.dumps(asdict(sample)) + "\n")
    return path


def iter_ils_jsonl(path: PathLike) -> Iterator[ILSSample]:
    """Read a JSONL stream back; a malformed line raises an error with its line number."""
    with Path(path).open() as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                yield ILSSample(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as err:
                raise DatasetFormatError(f"{path}:{number}: not a sample record ({err}).") from err
