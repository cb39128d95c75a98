"""Study indexes: what the generation runner iterates over (one image + its report per record).

* :class:`MimicCXRIndex` reads the MIMIC-CXR release as PhysioNet ships it: ``mimic-cxr-2.0.0-metadata.csv(.gz)``
  (dicom_id, subject_id, study_id, ViewPosition, Rows, Columns, ...), ``mimic-cxr-2.0.0-split.csv(.gz)``
  (dicom_id, study_id, subject_id, split), images ``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.dcm`` and reports
  ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt``. The official split is kept ("validate" is written "val", as ROSALIA does).
* :class:`CSVStudyIndex` and :class:`FolderStudyIndex` serve everyone else: a CSV with an image path and a
  report (text or file), or a folder of images each with a ``<name>.txt`` report beside it.

Indexes are lazy: records stream from the CSV, so a run's memory does not grow with the number of images
(the split table and the keys issued so far, short strings, are what is held).

Nothing here aborts a run over one bad row: a row that cannot be used (an empty image cell, bytes that are not
UTF-8, a malformed CSV line, a MIMIC row without ids or split) becomes a record whose ``index_error`` names the
file and the row, and the runner writes it as that study's error record. Keys are unique by construction,
also as mask folder names: a repeated key gets ``_2``, ``_3``... A folder in which two images map to one key
(``x.dcm`` and ``x.png`` sharing ``x.txt``; ``sub/b.dcm`` and ``sub_b.dcm``) is refused when indexed, naming them.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from monai_ils.vocab import FRONTAL_VIEWS

PathLike = str | os.PathLike

SPLIT_NAMES = {"train": "train", "validate": "val", "validation": "val", "val": "val", "test": "test"}
UNKNOWN_SPLIT = "\x00unknown-split:"
"""Marks, in the split table, a row whose split name is not one of SPLIT_NAMES (never a real split name)."""
IMAGE_EXTENSIONS = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


class StudyIndexError(ValueError):
    """An index file that cannot be used; the message names the file, the row and the column."""


@dataclass(frozen=True)
class StudyRecord:
    """One image and its report: the unit the runner processes.

    ``key`` is unique in a run and names the study in the dataset JSON and the mask folder. ``index_error``
    (file, row and reason) marks a row the index could not use; the runner records it as failed.
    """

    key: str
    image_path: str
    split: str = "train"
    report_path: str | None = None
    report_text: str | None = None
    subject_id: str | None = None
    study_id: str | None = None
    dicom_id: str | None = None
    view_position: str | None = None
    rows: int | None = None
    columns: int | None = None
    index_error: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def read_report(self) -> str:
        """The report text (from ``report_text`` or the file); raises FileNotFoundError naming the study."""
        if self.report_text is not None:
            return str(self.report_text)
        if not self.report_path:
            raise FileNotFoundError(f"Study {self.key!r} has no report (neither text nor path).")
        try:
            return Path(self.report_path).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise FileNotFoundError(f"Report of study {self.key!r} not found: {self.report_path}") from None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _open_csv(path: Path) -> io.TextIOBase:
    """Text stream of a (gzipped) CSV; bytes that are not UTF-8 are kept as surrogates for `_bad_bytes`."""
    if not path.exists():
        raise FileNotFoundError(f"CSV file not found: {path}")
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")


_SURROGATE = re.compile("[\udc80-\udcff]")


def _bad_bytes(row: dict) -> str | None:
    """The first column holding bytes that are not UTF-8, as a message, else None."""
    for column, value in row.items():
        found = _SURROGATE.search(value or "") if isinstance(value, str) else None
        if found:
            byte = ord(found.group()) - 0xDC00
            return f"column {column!r} is not valid UTF-8 (byte 0x{byte:02x} at character {found.start()})"
    return None


def _rows(reader: csv.DictReader, path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(row number, row, problem): a malformed line is reported as that row's problem and reading goes on."""
    number = 1
    while True:
        number += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield number, None, f"{path.name} row {number}: malformed CSV ({err})"
            continue
        problem = _bad_bytes(row)
        yield number, row, f"{path.name} row {number}: {problem}" if problem else None


class _Keys:
    """Issues keys that are unique, also once made folder-safe (the mask folder): a repeat gets ``_2``, ``_3``..."""

    def __init__(self):
        self.used: set[str] = set()

    def issue(self, key: str) -> str:
        from monai_ils.generation.pairs import mask_folder_name

        candidate, n = key, 1
        while mask_folder_name(candidate) in self.used:
            n += 1
            candidate = f"{key}_{n}"
        self.used.add(mask_folder_name(candidate))
        return candidate


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"MIMIC-CXR: neither {name} nor {name}.gz found in {root}.")


def _require(reader: csv.DictReader, columns: Iterable[str], path: Path) -> None:
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise StudyIndexError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}.")


def _int_or_none(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


class MimicCXRIndex:
    """Images of MIMIC-CXR with their reports and the official split.

    Args:
        root: the MIMIC-CXR folder that holds ``files/`` (and, by default, the two CSVs).
        metadata_csv, split_csv: override the CSV locations (plain or gzipped).
        reports_root: folder holding the reports' ``files/`` tree (default: ``root``; the reports come as a
            separate zip on PhysioNet).
        views: ViewPosition values to keep (default PA and AP, Appendix D.1); None keeps every image.
        splits: keep only these splits (names as written: train, val, test).
        first_image_per_study: keep only the first kept image of each study.
    """

    METADATA = "mimic-cxr-2.0.0-metadata.csv"
    SPLIT = "mimic-cxr-2.0.0-split.csv"
    METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition", "Rows", "Columns")
    SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")

    def __init__(
        self,
        root: PathLike,
        metadata_csv: PathLike | None = None,
        split_csv: PathLike | None = None,
        reports_root: PathLike | None = None,
        views: Iterable[str] | None = FRONTAL_VIEWS,
        splits: Iterable[str] | None = None,
        first_image_per_study: bool = False,
    ):
        self.root = Path(root)
        self.metadata_csv = Path(metadata_csv) if metadata_csv else _find(self.root, self.METADATA)
        self.split_csv = Path(split_csv) if split_csv else _find(self.root, self.SPLIT)
        self.reports_root = Path(reports_root) if reports_root else self.root
        self.views = None if views is None else {str(v).strip().upper() for v in views}
        self.splits = None if splits is None else {SPLIT_NAMES.get(s, s) for s in splits}
        self.first_image_per_study = bool(first_image_per_study)
        self._split_of: dict[str, str] | None = None
        self._length: int | None = None

    def _load_splits(self) -> dict[str, str]:
        if self._split_of is None:
            table = {}
            with _open_csv(self.split_csv) as stream:
                reader = csv.DictReader(stream)
                _require(reader, self.SPLIT_COLUMNS, self.split_csv)
                for number, row in enumerate(reader, 2):
                    split = (row["split"] or "").strip()
                    # an unknown name is kept, marked, so that its image becomes an error record, not the run's end
                    name = SPLIT_NAMES.get(split.lower()) or sys.intern(f"{UNKNOWN_SPLIT}{number}:{split}")
                    table[sys.intern(row["dicom_id"].strip())] = name
            self._split_of = table
        return self._split_of

    def study_folder(self, subject_id: str, study_id: str) -> str:
        return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}"

    def __iter__(self) -> Iterator[StudyRecord]:
        split_of = self._load_splits()
        seen_studies: set[str] = set()
        keys = _Keys()
        name = self.metadata_csv.name
        with _open_csv(self.metadata_csv) as stream:
            reader = csv.DictReader(stream)
            _require(reader, self.METADATA_COLUMNS, self.metadata_csv)
            for number, row, problem in _rows(reader, self.metadata_csv):
                row = row or {}
                dicom_id = (row.get("dicom_id") or "").strip()
                subject_id = (row.get("subject_id") or "").strip()
                study_id = (row.get("study_id") or "").strip()
                view = (row.get("ViewPosition") or "").strip()
                if problem is None and not (dicom_id and subject_id and study_id):
                    problem = f"{name} row {number}: empty dicom_id, subject_id or study_id"
                if problem is None and self.views is not None and view.upper() not in self.views:
                    continue
                split = split_of.get(dicom_id)
                if problem is None and split is None:
                    problem = f"{name} row {number}: dicom_id {dicom_id} has no split in {self.split_csv.name}"
                if problem is None and split.startswith(UNKNOWN_SPLIT):
                    split_row, _, written = split[len(UNKNOWN_SPLIT):].partition(":")
                    problem = (f"{name} row {number}: dicom_id {dicom_id} has the unknown split {written!r} in "
                               f"{self.split_csv.name} row {split_row} (known: {', '.join(sorted(SPLIT_NAMES))})")
                    split = None
                if problem is not None:
                    yield StudyRecord(key=keys.issue(f"{name}_row{number}"), image_path="", split=split or "train",
                                      index_error=problem, extra={"row": number})
                    continue
                if self.splits is not None and split not in self.splits:
                    continue
                if self.first_image_per_study:
                    if study_id in seen_studies:
                        continue
                    seen_studies.add(study_id)
                folder = self.study_folder(subject_id, study_id)
                yield StudyRecord(
                    key=keys.issue(f"s{study_id}_{dicom_id}"),
                    image_path=str(self.root / folder / f"{dicom_id}.dcm"),
                    split=split,
                    report_path=str(self.reports_root / f"{folder}.txt"),
                    subject_id=subject_id,
                    study_id=study_id,
                    dicom_id=dicom_id,
                    view_position=view or None,
                    rows=_int_or_none(row.get("Rows")),
                    columns=_int_or_none(row.get("Columns")),
                )

    def __len__(self) -> int:
        if self._length is None:
            self._length = sum(1 for _ in self)
        return self._length


class CSVStudyIndex:
    """A CSV of studies for data outside MIMIC-CXR.

    Columns (case-insensitive): ``image`` or ``image_path`` (required); ``report`` / ``report_text`` (text) or
    ``report_path`` (file); optional ``split`` (default ``default_split``), ``study_id`` / ``key`` (default: the
    image file's stem, made unique) and ``view_position`` / ``ViewPosition``. Relative paths are resolved
    against ``base_dir`` (default: the CSV's folder).
    """

    IMAGE = ("image", "image_path")
    REPORT = ("report", "report_text")
    REPORT_PATH = ("report_path",)
    SPLIT = ("split",)
    KEY = ("study_id", "key", "study_key")
    VIEW = ("view_position", "viewposition")

    def __init__(self, csv_path: PathLike, base_dir: PathLike | None = None, default_split: str = "train", splits: Iterable[str] | None = None):
        self.csv_path = Path(csv_path)
        self.base_dir = Path(base_dir) if base_dir is not None else self.csv_path.parent
        self.default_split = SPLIT_NAMES.get(default_split, default_split)
        self.splits = None if splits is None else {SPLIT_NAMES.get(s, s) for s in splits}
        self._length: int | None = None

    def _resolve(self, value: str) -> str:
        path = Path(value)
        return str(path if path.is_absolute() else self.base_dir / path)

    def __iter__(self) -> Iterator[StudyRecord]:
        with _open_csv(self.csv_path) as stream:
            reader = csv.DictReader(stream)
            columns = {name.strip().lower(): name for name in reader.fieldnames or []}

            def pick(options):
                return next((columns[o] for o in options if o in columns), None)

            image_col, report_col, report_path_col = pick(self.IMAGE), pick(self.REPORT), pick(self.REPORT_PATH)
            split_col, key_col, view_col = pick(self.SPLIT), pick(self.KEY), pick(self.VIEW)
            if image_col is None:
                raise StudyIndexError(f"{self.csv_path}: needs an 'image' (or 'image_path') column; found {reader.fieldnames}.")
            if report_col is None and report_path_col is None:
                raise StudyIndexError(f"{self.csv_path}: needs a 'report' (text) or 'report_path' column; found {reader.fieldnames}.")
            keys = _Keys()
            for number, row, problem in _rows(reader, self.csv_path):
                row = row or {}
                image = (row.get(image_col) or "").strip()
                if problem is None and not image:
                    problem = f"{self.csv_path.name} row {number}: empty {image_col!r} cell"
                written = (row.get(split_col) or "").strip() if split_col else ""
                split = SPLIT_NAMES.get(written.lower()) if written else self.default_split
                if split is None:
                    if problem is None:
                        problem = (f"{self.csv_path.name} row {number}: unknown split {written!r} "
                                   f"(known: {', '.join(sorted(SPLIT_NAMES))})")
                    split = self.default_split
                elif self.splits is not None and split not in self.splits:
                    continue
                key = (row.get(key_col) or "").strip() if key_col else ""
                key = keys.issue(key or (Path(image).stem if image else f"{self.csv_path.stem}_row{number}"))
                if problem is not None:
                    yield StudyRecord(key=key, image_path=self._resolve(image) if image else "", split=split,
                                      index_error=problem, extra={"row": number})
                    continue
                text = row.get(report_col) if report_col else None
                report_path = (row.get(report_path_col) or "").strip() if report_path_col else ""
                if not (text and text.strip()):
                    text = None if report_path else ""  # an empty report is recorded as a failed study
                yield StudyRecord(
                    key=key,
                    image_path=self._resolve(image),
                    split=split,
                    report_path=self._resolve(report_path) if report_path else None,
                    report_text=text,
                    view_position=((row.get(view_col) or "").strip() or None) if view_col else None,
                    extra={"row": number},
                )

    def __len__(self) -> int:
        if self._length is None:
            self._length = sum(1 for _ in self)
        return self._length


class FolderStudyIndex:
    """Every image under ``folder`` (recursively) with the report ``<same name>.txt`` beside it.

    The key is the image's path relative to the folder without suffix, with separators replaced by "_".
    A missing report is not skipped silently: the runner records the study as failed.
    """

    def __init__(self, folder: PathLike, split: str = "train", extensions: Iterable[str] = IMAGE_EXTENSIONS):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"Study folder not found: {self.folder}")
        self.split = SPLIT_NAMES.get(split, split)
        self.extensions = tuple(e.lower() for e in extensions)

    def _images(self) -> list[tuple[str, Path]]:
        """(key, image) sorted by path; two images with one key (or one mask folder) are refused, named."""
        from monai_ils.generation.pairs import mask_folder_name

        images = sorted(p for p in self.folder.rglob("*") if p.is_file() and p.suffix.lower() in self.extensions)
        claims: dict[str, list[Path]] = {}
        keyed = []
        for image in images:
            key = "_".join(image.relative_to(self.folder).with_suffix("").parts)
            claims.setdefault(mask_folder_name(key), []).append(image)
            keyed.append((key, image))
        clashes = [paths for paths in claims.values() if len(paths) > 1]
        if clashes:
            listed = "; ".join(" and ".join(str(p.relative_to(self.folder)) for p in paths) for paths in clashes[:10])
            raise StudyIndexError(
                f"{self.folder}: {len(clashes)} study key(s) claimed by more than one image ({listed}); each image needs "
                "its own <name>.txt report and a name that stays distinct once folders are joined with '_': rename one.")
        return keyed

    def __iter__(self) -> Iterator[StudyRecord]:
        for key, image in self._images():
            yield StudyRecord(
                key=key,
                image_path=str(image),
                split=self.split,
                report_path=str(image.with_suffix(".txt")),
            )

    def __len__(self) -> int:
        return len(self._images())


def is_mimic_root(source: PathLike) -> bool:
    """True for a folder that holds the MIMIC-CXR metadata CSV (plain or gzipped)."""
    source = Path(source)
    return source.is_dir() and any((source / f"{MimicCXRIndex.METADATA}{s}").exists() for s in ("", ".gz"))


def study_index(source: PathLike, **options):
    """Pick the index for ``source``: a MIMIC-CXR root (has the metadata CSV), a CSV file, or a folder."""
    source = Path(source)
    if source.is_file() and source.name.endswith((".csv", ".csv.gz")):
        return CSVStudyIndex(source, **options)
    if is_mimic_root(source):
        return MimicCXRIndex(source, **options)
    if source.is_dir():
        return FolderStudyIndex(source, **options)
    raise FileNotFoundError(f"Study source not found or not understood (expected a MIMIC-CXR folder, a CSV or a folder of images): {source}")
