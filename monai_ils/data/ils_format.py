"""The dataset layout of ROSALIA / MIMIC-ILS: one reader and one writer for every tool in monai-ils.

JSON layout (what ROSALIA's training code reads, the released MIMIC-ILS schema, and what our generator writes)::

    {split: {study_key: {"subject_id", "study_id", "dicom_id", "image_path", "section_name", "section_content",
                         "instruction_answer_pairs": {"positive_pairs": [pair, ...],
                                                      "negative_pairs": [pair, ...]}}}}

``image_path`` is relative to a base image folder (the JSON's folder for what we write) and names a file OpenCV
reads (PNG/JPG); ``section_name`` / ``section_content`` are the report section the pairs were made from. A pair is
``{"pair_id", "type", "instruction", "answer", "target", "seg", "seg_mask_path", "sent_idx"}`` plus
``reported_location`` and ``grounded_location`` on positives and ``location`` on negatives (the official
fields, see :data:`STUDY_FIELDS` and :data:`PAIR_FIELDS`), and, when we wrote it, ``location`` on positives too
(the Table 8 locations the instruction or global answer names), ``certainty`` and ``lesion`` (the lesion named by
a lesion-inference answer). ``type`` is basic / global / lesion_inference (``ILSSample.question_type``); ``seg``
is True for positives; ``target`` is the lesion the pair is about (ROSALIA's "disease", the row of Tables 9-11):
for a tentative finding the instruction says "opacity" while ``target`` keeps the lesion type. ``sent_idx`` is
the 1-based index of the sentence of ``section_content`` the pair comes from (null when none: an unmentioned
lesion). Masks are PNGs with foreground 255, relative to a base mask folder (the JSON's folder for what we
write); negative pairs have an empty mask (we write none: ``seg_mask_path`` is null and readers produce an
all-zero mask). The reader also takes ``question_type`` for ``type`` (what older versions of monai-ils wrote).
Study fields and the pair fields that are not :class:`ILSSample` attributes travel in ``ILSSample.extra``.

The reader also accepts the official MIMIC-ILS release, ``{split: {section_id: {"dicom_id", "report",
"section_qa": {qa_type: [qa_item, ...] or {lesion: [qa_item, ...]}}}}}`` with qa items ``{"question": [...],
"answer": [...], "target", "seg", "seg_mask_path", "grounded_location", ...}``; its images are found with
``release_image_pattern`` under ``image_root`` and its masks under ``mask_root``. Flat lists of such records,
with or without a split level, are read too. Fields missing from a release are inferred by parsing the
texts with Table 2's templates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from PIL import Image

from monai_ils.data.templates import parse_answer, parse_instruction

PathLike = str | os.PathLike

STUDY_FIELDS = ("subject_id", "study_id", "dicom_id", "section_name", "section_content")
"""Per-study fields of the released schema (besides ``image_path``), kept in ``ILSSample.extra``; ``study_id`` is
ours (MIMIC-CXR's study). Unknown ones are written as null."""

PAIR_FIELDS = ("pair_id", "type", "instruction", "answer", "target", "seg", "seg_mask_path", "sent_idx")
"""Per-pair fields of the released schema every pair carries; positives add :data:`POSITIVE_LOCATION_FIELDS`,
negatives ``location``."""

POSITIVE_LOCATION_FIELDS = ("reported_location", "grounded_location")
"""Anatomical labels of a positive pair's findings: as reported, and where the mask was verified to lie."""


class DatasetFormatError(ValueError):
    """A dataset file that does not follow the layout; the message names the file and the entry."""


@dataclass
class ILSSample:
    """One instruction-answer pair on one image (the unit of training and evaluation).

    ``target`` is the lesion the pair is about (the instruction may say "opacity" for a tentative finding);
    ``location`` holds anatomical labels (Table 8 names); ``lesion`` is the lesion a lesion-inference answer
    names; ``extra`` keeps any other field of the source record.
    """

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

    def to_pair(self, root: Path | None = None, pair_id: str | None = None) -> dict:
        """The pair dict of the JSON layout (official fields first); paths are made relative to ``root``.

        ``pair_id`` is used when ``extra`` has none. Study fields in ``extra`` are not part of the pair."""
        extra = {k: v for k, v in self.extra.items() if k not in STUDY_FIELDS}
        pair = {
            "pair_id": extra.pop("pair_id", None) or pair_id,
            "type": self.question_type,
            "instruction": self.instruction,
            "answer": self.answer,
            "target": self.target,
            "seg": bool(self.positive),
            "seg_mask_path": _relative(self.seg_mask_path, root),
            "sent_idx": extra.pop("sent_idx", None),
        }
        if self.positive:
            for name in POSITIVE_LOCATION_FIELDS:
                pair[name] = list(extra.pop(name, None) or [])
        pair.update({"location": list(self.location), "certainty": self.certainty, "lesion": self.lesion})
        pair.update(extra)
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(np.where(array > 0, 255, 0).astype(np.uint8)).save(tmp, format="PNG")
    tmp.replace(path)  # atomic: a killed writer never leaves a truncated mask behind
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
RELEASE_IMAGE_PATTERN = "mimic-cxr-dcm-png-histeq/{dicom_id}.png"
"""Where ROSALIA's code finds the image of a release entry, relative to ``image_root``."""


@dataclass(frozen=True)
class _Context:
    path: Path
    image_root: Path
    mask_root: Path
    release_image_pattern: str


def read_ils_json(
    path: PathLike,
    splits: Iterable[str] | None = None,
    image_root: PathLike | None = None,
    *,
    mask_root: PathLike | None = None,
    release_image_pattern: str = RELEASE_IMAGE_PATTERN,
) -> list[ILSSample]:
    """Read a dataset JSON (ours, ROSALIA's or the official release) into a flat list of samples.

    Relative image paths are resolved against ``image_root`` and relative mask paths against ``mask_root``
    (both default to the JSON's folder). Release entries name only a ``dicom_id``; their image path is
    ``release_image_pattern`` (``{dicom_id}`` and any other string field of the entry) under ``image_root``.
    """
    return list(iter_ils_json(path, splits, image_root, mask_root=mask_root, release_image_pattern=release_image_pattern))


def iter_ils_json(
    path: PathLike,
    splits: Iterable[str] | None = None,
    image_root: PathLike | None = None,
    *,
    mask_root: PathLike | None = None,
    release_image_pattern: str = RELEASE_IMAGE_PATTERN,
) -> Iterator[ILSSample]:
    """Generator form of :func:`read_ils_json`."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"Dataset file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON ({err}).") from err
    ctx = _Context(
        path=path,
        image_root=Path(image_root) if image_root is not None else path.parent,
        mask_root=Path(mask_root) if mask_root is not None else path.parent,
        release_image_pattern=release_image_pattern,
    )
    wanted = set(splits) if splits is not None else None
    for split, studies in _split_items(content, path):
        if wanted is not None and split not in wanted:
            continue
        if isinstance(studies, dict):
            for study_key, study in studies.items():
                yield from _samples_from_entry(split, str(study_key), study, ctx)
        elif isinstance(studies, list):
            for index, record in enumerate(studies):
                where = f"{path}: {split}[{index}]"
                if isinstance(record, dict) and ("section_qa" in record or "instruction_answer_pairs" in record):
                    key = str(record.get("section_id") or record.get("study_key") or record.get("dicom_id") or index)
                    yield from _samples_from_entry(split, key, record, ctx)
                else:
                    yield from _samples_from_record(split, record, ctx, where)
        else:
            raise DatasetFormatError(f"{path}: split {split!r} must map study keys to studies or hold a list of records.")


def _looks_like_entry(value) -> bool:
    return isinstance(value, dict) and any(k in value for k in ("instruction_answer_pairs", "section_qa", "question"))


def _split_items(content, path):
    if isinstance(content, list):  # a release file without a split level
        return [("all", content)]
    if not isinstance(content, dict):
        raise DatasetFormatError(f"{path}: top level must be an object keyed by split or a list of records.")
    if content and all(_looks_like_entry(v) for v in content.values()):
        # no split level: {study_key: entry}, each entry may name its split
        grouped: dict = {}
        for key, entry in content.items():
            grouped.setdefault(str(entry.get("split") or "all"), {})[key] = entry
        return list(grouped.items())
    return list(content.items())


def _samples_from_entry(split, study_key, study, ctx: _Context) -> Iterator[ILSSample]:
    where = f"{ctx.path}: {split}/{study_key}"
    if not isinstance(study, dict):
        raise DatasetFormatError(f"{where}: a study must be an object.")
    if "section_qa" in study:
        yield from _samples_from_release_entry(split, study_key, study, ctx, where)
        return
    if "image_path" not in study:
        raise DatasetFormatError(f"{where}: a study needs 'image_path' and 'instruction_answer_pairs' (or the release's 'dicom_id' and 'section_qa').")
    pairs = study.get("instruction_answer_pairs")
    if not isinstance(pairs, dict):
        raise DatasetFormatError(f"{where}: 'instruction_answer_pairs' must hold 'positive_pairs' and 'negative_pairs'.")
    image_path = _resolve(study["image_path"], ctx.image_root)
    study_fields = {k: study[k] for k in STUDY_FIELDS if study.get(k) is not None}
    for group, positive in (("positive_pairs", True), ("negative_pairs", False)):
        items = pairs.get(group, [])
        if not isinstance(items, list):
            raise DatasetFormatError(f"{where}/{group}: must be a list of pairs.")
        for index, pair in enumerate(items):
            sample = _sample(split, study_key, image_path, pair, positive, ctx, f"{where}/{group}[{index}]")
            sample.extra.update(study_fields)
            yield sample


def _release_image(study, ctx: _Context, where) -> str:
    if study.get("image_path"):
        return _resolve(study["image_path"], ctx.image_root)
    if not study.get("dicom_id"):
        raise DatasetFormatError(f"{where}: a release entry needs 'dicom_id' (or 'image_path').")
    fields_ = {k: v for k, v in study.items() if isinstance(v, (str, int))}
    try:
        relative = ctx.release_image_pattern.format(**fields_)
    except KeyError as err:
        raise DatasetFormatError(f"{where}: release_image_pattern {ctx.release_image_pattern!r} needs field {err}.") from None
    return _resolve(relative, ctx.image_root)


def _samples_from_release_entry(split, study_key, study, ctx: _Context, where) -> Iterator[ILSSample]:
    """Official release: ``section_qa`` maps a qa type to a list of qa items or to {lesion: [qa items]}."""
    image_path = _release_image(study, ctx, where)
    section_qa = study["section_qa"]
    if not isinstance(section_qa, dict):
        raise DatasetFormatError(f"{where}: 'section_qa' must be an object keyed by qa type.")
    for qa_type, qa_list in section_qa.items():
        if isinstance(qa_list, dict):
            groups = [(f"{qa_type}/{lesion}", items) for lesion, items in qa_list.items() if isinstance(items, list)]
        elif isinstance(qa_list, list):
            groups = [(str(qa_type), qa_list)]
        else:
            continue  # the release keeps bookkeeping values beside the qa lists
        for name, items in groups:
            for index, item in enumerate(items):
                if not isinstance(item, dict):
                    continue
                record = {"image_path": image_path, "section_id": study_key, "qa_type": str(qa_type), **item}
                yield from _samples_from_record(split, record, ctx, f"{where}/{name}[{index}]", image_resolved=True)


def _samples_from_record(split, record, ctx: _Context, where, image_resolved: bool = False) -> list[ILSSample]:
    """Release records: one mask with parallel lists of questions and answers."""
    if not isinstance(record, dict):
        raise DatasetFormatError(f"{where}: a record must be an object.")
    questions, answers = record.get("question"), record.get("answer")
    if isinstance(questions, str):
        questions, answers = [questions], [answers]
    if not isinstance(questions, list) or not isinstance(answers, list) or len(questions) != len(answers):
        raise DatasetFormatError(f"{where}: 'question' and 'answer' must be lists of the same length.")
    if image_resolved:
        image_path = record["image_path"]
    else:
        image = record.get("image_path") or record.get("image")
        if image:
            image_path = _resolve(image, ctx.image_root)
        elif record.get("dicom_id"):
            image_path = _release_image(record, ctx, where)
        else:
            raise DatasetFormatError(f"{where}: the record names no image ('image_path', 'image' or 'dicom_id').")
    study_key = str(record.get("section_id") or record.get("study_id") or record.get("dicom_id") or image_path)
    positive = bool(record.get("seg", bool(record.get("seg_mask_path"))))
    base = {k: v for k, v in record.items() if k not in {"question", "answer", "image_path", "image"}}
    targets = _target_list(record.get("target"))
    samples = []
    for i, (question, answer) in enumerate(zip(questions, answers)):
        pair = {**base, "instruction": question, "answer": answer}
        if len(targets) > 1:  # a negative record listing several lesions: one target per question
            parsed = parse_instruction(str(question))
            named = parsed.variables.get("target") if parsed else None
            pair["target"] = named if named in targets else ", ".join(targets)
        samples.append(_sample(split, study_key, image_path, pair, positive, ctx, f"{where}[{i}]"))
    return samples


def _target_list(target) -> list[str]:
    if isinstance(target, list):
        return [str(t).strip().lower() for t in target if str(t).strip()]
    if isinstance(target, str):
        return [t.strip().lower() for t in target.split(",") if t.strip()]
    return []


def _location_list(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [item.strip().lower() for item in value.split(",") if item.strip() and item.strip().lower() != "none"]
    if isinstance(value, (list, tuple)):
        return [str(item).strip().lower() for item in value if str(item).strip()]
    return None


_PAIR_KEYS = {"instruction", "answer", "target", "seg_mask_path", "question_type", "type", "location", "certainty", "lesion", "seg"}
_DEFAULT_VALUES = {"pair_id": None, "sent_idx": None, "reported_location": [], "grounded_location": []}
"""What the writer puts for a field a sample lacks; read back, such a value is not kept in ``extra``."""
_RECORD_BOOKKEEPING = {"section_id", "study_id", "dicom_id"}


def _sample(split, study_key, image_path, pair, positive, ctx: _Context, where) -> ILSSample:
    if not isinstance(pair, dict):
        raise DatasetFormatError(f"{where}: a pair must be an object.")
    missing = [k for k in ("instruction", "answer") if not pair.get(k)]
    if missing:
        raise DatasetFormatError(f"{where}: missing {missing}.")
    parsed_instruction = parse_instruction(str(pair["instruction"]))
    parsed_answer = parse_answer(str(pair["answer"]))
    question_type = pair.get("question_type") or pair.get("type") or (parsed_instruction.question_type if parsed_instruction else None)
    target = pair.get("target")
    if isinstance(target, list):
        target = ", ".join(str(t) for t in target)
    if not target and parsed_instruction:
        target = parsed_instruction.variables.get("target")
    if not target and question_type == "lesion_inference":
        target = parsed_answer.variables.get("lesion") if parsed_answer and positive else "opacity"
    location = _location_list(pair.get("location"))
    if location is None and parsed_instruction and "location" in parsed_instruction.variables:
        location = parsed_instruction.variables["location"]
    if location is None and parsed_answer and "location" in parsed_answer.variables:
        location = parsed_answer.variables["location"]
    if location is None and positive:
        location = _location_list(pair.get("grounded_location"))
    lesion = pair.get("lesion")
    if lesion is None and parsed_answer and "lesion" in parsed_answer.variables:
        lesion = parsed_answer.variables["lesion"]
    certainty = pair.get("certainty")
    if certainty is None and parsed_answer and parsed_answer.outcome in ("definitive", "tentative"):
        certainty = parsed_answer.outcome
    mask = pair.get("seg_mask_path") if positive else None
    if positive and not mask:
        raise DatasetFormatError(f"{where}: a positive pair needs 'seg_mask_path'.")
    return ILSSample(
        split=split,
        study_key=study_key,
        image_path=image_path,
        instruction=pair["instruction"],
        answer=pair["answer"],
        target=str(target or "").lower(),
        positive=positive,
        seg_mask_path=_resolve(mask, ctx.mask_root) if mask else None,
        question_type=question_type,
        location=list(location or []),
        certainty=certainty.lower() if isinstance(certainty, str) else certainty,
        lesion=lesion,
        extra={k: v for k, v in pair.items()
               if k not in _PAIR_KEYS and k not in _RECORD_BOOKKEEPING and not (k in _DEFAULT_VALUES and v == _DEFAULT_VALUES[k])},
    )


def _resolve(value, root: Path) -> str:
    p = Path(str(value))
    return str(p if p.is_absolute() else root / p)


def _relative(value, root: Path | None):
    """``value`` relative to ``root`` (with ``..`` when outside it: never an absolute path of this machine)."""
    if value is None or root is None:
        return value
    return os.path.relpath(Path(value).resolve(), Path(root).resolve())


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def _study_entry(samples: Iterable[ILSSample], root: Path | None, image_root: Path | None = None) -> tuple[str, dict] | None:
    entry = None
    key = None
    count = 0
    for sample in samples:
        if entry is None:
            key = sample.study_key
            entry = {name: sample.extra.get(name) for name in STUDY_FIELDS}
            entry["image_path"] = _relative(sample.image_path, image_root or root)
            entry["instruction_answer_pairs"] = {"positive_pairs": [], "negative_pairs": []}
            entry = {k: entry[k] for k in ("subject_id", "study_id", "dicom_id", "image_path", "section_name", "section_content", "instruction_answer_pairs")}
        group = "positive_pairs" if sample.positive else "negative_pairs"
        entry["instruction_answer_pairs"][group].append(sample.to_pair(root, pair_id=f"{key}_{count}"))
        count += 1
    return None if entry is None else (key, entry)


def write_ils_json_stream(path: PathLike, splits: Iterable[tuple[str, Iterable[Iterable[ILSSample]]]],
                          image_root: PathLike | None = None) -> Path:
    """Write the JSON layout from ``(split, studies)`` where each study is an iterable of its samples.

    Nothing is held in memory beyond one study, so a million pairs cost no more than ten; one study per
    line. Mask paths are made relative to the JSON's folder, image paths to ``image_root`` (default: the JSON's
    folder), with ``..`` for files outside it; pairs without a ``pair_id`` get ``<study>_<n>``. The file appears
    atomically when complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent
    image_root = Path(image_root) if image_root is not None else None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as out:
        out.write("{")
        first_split = True
        for split, studies in splits:
            out.write(("" if first_split else ",") + "\n" + json.dumps(str(split)) + ": {")
            first_split = False
            first_study = True
            for samples in studies:
                item = _study_entry(samples, root, image_root)
                if item is None:
                    continue
                out.write(("" if first_study else ",") + "\n " + json.dumps(item[0]) + ": " + json.dumps(item[1]))
                first_study = False
            out.write("\n}")
        out.write("\n}\n")
    tmp.replace(path)
    return path


def write_ils_json(path: PathLike, samples: Iterable[ILSSample], image_root: PathLike | None = None) -> Path:
    """Write samples in the JSON layout, paths relative to the JSON's folder (images: to ``image_root`` if
    given); written atomically."""
    grouped: dict[str, dict[str, list[ILSSample]]] = {}
    for sample in samples:
        grouped.setdefault(sample.split, {}).setdefault(sample.study_key, []).append(sample)
    return write_ils_json_stream(path, ((split, studies.values()) for split, studies in grouped.items()), image_root)


def sample_to_record(sample: ILSSample, root: PathLike | None = None) -> dict:
    """The JSONL record of a sample; image and mask paths relative to ``root`` (``..`` when outside it)."""
    record = asdict(sample)
    if root is not None:
        record["image_path"] = _relative(sample.image_path, Path(root))
        record["seg_mask_path"] = _relative(sample.seg_mask_path, Path(root))
    return record


_SAMPLE_FIELDS = {f.name for f in fields(ILSSample)}


def sample_from_record(record: dict, root: PathLike | None = None) -> ILSSample:
    """Inverse of :func:`sample_to_record`; unknown keys go to ``extra``, relative paths resolve against ``root``."""
    known = {k: v for k, v in record.items() if k in _SAMPLE_FIELDS}
    unknown = {k: v for k, v in record.items() if k not in _SAMPLE_FIELDS}
    if unknown:
        known["extra"] = {**known.get("extra", {}), **unknown}
    sample = ILSSample(**known)
    if root is not None:
        sample.image_path = _resolve(sample.image_path, Path(root))
        if sample.seg_mask_path:
            sample.seg_mask_path = _resolve(sample.seg_mask_path, Path(root))
    return sample


def write_ils_jsonl(path: PathLike, samples: Iterable[ILSSample], append: bool = False, root: PathLike | None = None) -> Path:
    """One sample per line: a stream that large runs can append to (paths relative to ``root`` if given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w") as stream:
        for sample in samples:
            stream.write(json.dumps(sample_to_record(sample, root)) + "\n")
    return path


def iter_ils_jsonl(path: PathLike, root: PathLike | None = None) -> Iterator[ILSSample]:
    """Read a JSONL stream back; relative paths resolve against ``root`` (default: the file's folder).

    A malformed line raises an error with its line number.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    with path.open() as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                yield sample_from_record(json.loads(line), root)
            except (json.JSONDecodeError, TypeError) as err:
                raise DatasetFormatError(f"{path}:{number}: not a sample record ({err}).") from err
