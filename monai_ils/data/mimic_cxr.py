"""Study indexes: what the generation runner iterates over (one image + its report per record).

* :class:`MimicCXRIndex` reads the MIMIC-CXR release as PhysioNet ships it: ``mimic-cxr-2.0.0-metadata.csv(.gz)``
  (dicom_id, subject_id, study_id, ViewPosition, Rows, Columns, ...), ``mimic-cxr-2.0.0-split.csv(.gz)``
  (dicom_id, study_id, subject_id, split), images ``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.dcm`` and reports
  ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt``. The official split is kept ("validate" is written "val", as ROSALIA does).
* :class:`CSVStudyIndex` and :class:`FolderStudyIndex` serve everyone else: a CSV with an image path and a
  report (text or file), or a folder of images each with a ``<name>.txt`` report beside it.

Indexes are lazy: records stream from the CSV, so a run's memory does not grow with the number of images
(the split table, about 380k short strings for MIMIC-CXR, is the one thing held).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from monai_ils.vocab import FRONTAL_VIEWS

PathLike = str | os.PathLike

SPLIT_NAMES = {"train": "train", "validate": "val", "validation": "val", "val": "val", "test": "test"}
IMAGE_EXTENSIONS = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


class StudyIndexError(ValueError):
    """An index file that cannot be used; the message names the file, the row and the column."""


@dataclass(frozen=True)
class StudyRecord:
    """One image and its report: the unit the runner processes.

    ``key`` is unique in a run and names the study in the dataset JSON and the mask folder.
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
    if not path.exists():
        raise FileNotFoundError(f"CSV file not found: {path}")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(newline="", encoding="utf-8")


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
                    name = SPLIT_NAMES.get(row["split"].strip().lower())
                    if name is None:
                        raise StudyIndexError(f"{self.split_csv}:{number}: unknown split {row['split']!r}.")
                    table[sys.intern(row["dicom_id"].strip())] = name
            self._split_of = table
        return self._split_of

    def study_folder(self, subject_id: str, study_id: str) -> str:
        return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}"

    def __iter__(self) -> Iterator[StudyRecord]:
        split_of = self._load_splits()
        seen_studies: set[str] = set()
        with _open_csv(self.metadata_csv) as stream:
            reader = csv.DictReader(stream)
            _require(reader, self.METADATA_COLUMNS, self.metadata_csv)
            for number, row in enumerate(reader, 2):
                dicom_id = row["dicom_id"].strip()
                subject_id = row["subject_id"].strip()
                study_id = row["study_id"].strip()
                if not (dicom_id and subject_id and study_id):
                    raise StudyIndexError(f"{self.metadata_csv}:{number}: empty dicom_id, subject_id or study_id.")
                view = (row.get("ViewPosition") or "").strip()
                if self.views is not None and view.upper() not in self.views:
                    continue
                split = split_of.get(dicom_id)
                if split is None:
                    raise StudyIndexError(f"{self.split_csv}: dicom_id {dicom_id} (metadata row {number}) has no split.")
                if self.splits is not None and split not in self.splits:
                    continue
                if self.first_image_per_study:
                    if study_id in seen_studies:
                        continue
                    seen_studies.add(study_id)
                folder = self.study_folder(subject_id, study_id)
                yield StudyRecord(
                    key=f"s{study_id}_{dicom_id}",
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
            used: dict[str, int] = {}
            for number, row in enumerate(reader, 2):
                image = (row.get(image_col) or "").strip()
                if not image:
                    raise StudyIndexError(f"{self.csv_path}:{number}: empty '{image_col}'.")
                split = (row.get(split_col) or "").strip().lower() if split_col else ""
                split = SPLIT_NAMES.get(split, split) or self.default_split
                if self.splits is not None and split not in self.splits:
                    continue
                key = (row.get(key_col) or "").strip() if key_col else ""
                key = key or Path(image).stem
                if key in used:  # several images of one study, or equal stems: keep keys unique
                    used[key] += 1
                    key = f"{key}_{used[key]}"
                else:
                    used[key] = 0
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

    def _images(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file() and p.suffix.lower() in self.extensions)

    def __iter__(self) -> Iterator[StudyRecord]:
        for image in self._images():
            relative = image.relative_to(self.folder).with_suffix("")
            yield StudyRecord(
                key="_".join(relative.parts),
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
