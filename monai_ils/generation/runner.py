"""The streaming generation runner: studies in, a resumable sharded dataset out.

Each study goes through a per-study callable (the grounding pipeline followed by pair generation, or
anything a user injects) and its result is appended, with its masks already on disk, to the current
shard as one JSON line. A shard that is full is renamed into place and recorded in ``manifest.json``.
A run that is killed therefore resumes where it stopped: finished shards are skipped, the partial shard
keeps every complete line (a torn last line is dropped), and the study being processed is done again,
writing the same masks (pairs are seeded per study). A study that fails leaves an error record that says
what failed, in which stage and where; the run goes on. Memory holds one study and the manifest.

Output folder::

    manifest.json                 settings fingerprint and the finished shards
    shards/shard-00000.jsonl      one line per study: {"key", "status", "samples", "error", ...}
    shards/shard-00001.jsonl.part the shard being written
    masks/<study>/<lesion>_<n>.png
    overlays/<study>/...png       when the processor draws them
    images/<study>.png            8-bit copies of the images, when the processor exports them
    dataset.json  pairs.jsonl  errors.jsonl  statistics.{csv,md,png}  summary.json   (after merge)
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monai_ils.data.ils_format import ILSSample, sample_from_record, sample_to_record, save_mask_png, write_ils_json_stream
from monai_ils.data.mimic_cxr import StudyRecord
from monai_ils.data.statistics import DatasetStatistics
from monai_ils.generation.pairs import GeneratedPairs

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1


class StageError(RuntimeError):
    """A failure inside one stage of the per-study pipeline; ``stage`` names it in the error record."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


class SkipStudy(Exception):
    """Raised by a processor for a study that is excluded by design (quality control), not broken."""


@dataclass
class StudyResult:
    """What a processor returns for one study.

    masks: mask path relative to the masks folder (``<study>/<name>.png``) -> bool array; positive samples'
        ``seg_mask_path`` use these keys. overlays: path relative to the overlays folder -> RGB uint8 array.
    image: an 8-bit [H, W] copy of the image to write as ``images/<study>.png`` and point the samples at
        (for training code that reads PNGs, like ROSALIA's); None keeps the original image path.
    info: small JSON-able facts worth keeping in the shard line (number of findings, CTR, ...).
    """

    samples: list[ILSSample] = field(default_factory=list)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    overlays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    image: np.ndarray | None = None

    @classmethod
    def from_pairs(cls, pairs: GeneratedPairs, **kwargs) -> StudyResult:
        return cls(samples=list(pairs.samples), masks=dict(pairs.masks), **kwargs)


Processor = Callable[[StudyRecord], "StudyResult | GeneratedPairs"]


@dataclass
class RunSummary:
    studies: int = 0
    ok: int = 0
    skipped: int = 0
    errors: int = 0
    pairs: int = 0
    positive_pairs: int = 0
    negative_pairs: int = 0
    processed_now: int = 0
    output_dir: str = ""
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def error_record(record: StudyRecord, err: BaseException) -> dict:
    """What failed and where: the study, its files, the stage, the exception and the innermost frames."""
    inner = err
    while inner.__cause__ is not None and inner.__cause__.__traceback__ is not None:
        inner = inner.__cause__  # the frames of the original failure, not of the wrapper
    frames = traceback.extract_tb(inner.__traceback__)[-3:]
    return {
        "stage": getattr(err, "stage", "process"),
        "type": type(err).__name__,
        "message": str(err),
        "where": [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames],
        "image_path": record.image_path,
        "report_path": record.report_path,
    }


class GenerationRunner:
    """Run a per-study processor over a stream of :class:`StudyRecord` into a resumable sharded dataset.

    Args:
        output_dir: the dataset folder (created).
        processor: ``record -> StudyResult | GeneratedPairs``; raise :class:`SkipStudy` to exclude a study,
            :class:`StageError` (or anything) to fail it.
        shard_size: studies per shard file.
        limit: process only the first ``limit`` studies of the input.
        settings: JSON-able settings that change the output (seed, thresholds, backends); a resumed run
            must use the same ones, or it refuses to mix outputs.
        progress: show a tqdm bar.
        overwrite: start afresh even if the folder holds a run with other settings.
        overlays: write the processor's overlay PNGs.
        num_workers: 0 or 1 processes studies in this process; N > 1 spreads them over N spawned worker
            processes (one thread each), each with its own copy of the processor. Lines are still written
            in input order, and pairs are seeded per study, so the output is the same as with one process.
    """

    def __init__(
        self,
        output_dir,
        processor: Processor,
        shard_size: int = 100,
        limit: int | None = None,
        settings: dict | None = None,
        progress: bool = True,
        overwrite: bool = False,
        overlays: bool = True,
        num_workers: int = 0,
    ):
        if int(shard_size) < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size!r}.")
        if limit is not None and int(limit) < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit!r}.")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers!r}.")
        self.output_dir = Path(output_dir)
        self.processor = processor
        self.shard_size = int(shard_size)
        self.limit = None if limit is None else int(limit)
        self.settings = json.loads(json.dumps(settings or {}, sort_keys=True, default=str))
        self.progress = progress
        self.overwrite = overwrite
        self.write_overlays = overlays
        self.num_workers = int(num_workers)

    # ------------------------------------------------------------------------------------------
    # folders and manifest
    # ------------------------------------------------------------------------------------------
    @property
    def shard_dir(self) -> Path:
        return self.output_dir / "shards"

    @property
    def mask_dir(self) -> Path:
        return self.output_dir / "masks"

    @property
    def image_dir(self) -> Path:
        return self.output_dir / "images"

    @property
    def overlay_dir(self) -> Path:
        return self.output_dir / "overlays"

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / "manifest.json"

    def fingerprint(self) -> str:
        text = json.dumps({"shard_size": self.shard_size, "settings": self.settings}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def shard_path(self, index: int, part: bool = False) -> Path:
        return self.shard_dir / f"shard-{index:05d}.jsonl{'.part' if part else ''}"

    def _new_manifest(self) -> dict:
        return {"version": MANIFEST_VERSION, "fingerprint": self.fingerprint(), "shard_size": self.shard_size,
                "settings": self.settings, "shards": [], "complete": False}

    def load_manifest(self) -> dict:
        if not self.manifest_path.exists():
            return self._new_manifest()
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as err:
            raise RuntimeError(f"{self.manifest_path} is damaged ({err}); remove the folder or pass overwrite=True.") from err
        if manifest.get("fingerprint") != self.fingerprint():
            if not self.overwrite:
                raise RuntimeError(
                    f"{self.output_dir} holds a run with other settings (shard_size/seed/backends: "
                    f"{manifest.get('settings')} vs {self.settings}); use another folder or overwrite=True."
                )
            return self._new_manifest()
        return manifest

    def _save_manifest(self, manifest: dict) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_name(f".manifest.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tmp.replace(self.manifest_path)

    def _recover_finished_shards(self, manifest: dict) -> None:
        """A shard renamed into place just before a kill is finished even if the manifest missed it."""
        while True:
            index = len(manifest["shards"])
            final = self.shard_path(index)
            if not final.exists():
                return
            manifest["shards"].append(self._shard_entry(index, list(_read_lines(final))))
            self._save_manifest(manifest)

    def _shard_entry(self, index: int, lines: list[dict]) -> dict:
        splits: dict[str, int] = {}
        for line in lines:
            for sample in line.get("samples", []):
                splits[sample["split"]] = splits.get(sample["split"], 0) + 1
        return {
            "index": index,
            "file": str(self.shard_path(index).relative_to(self.output_dir)),
            "studies": len(lines),
            "ok": sum(1 for x in lines if x["status"] == "ok"),
            "skipped": sum(1 for x in lines if x["status"] == "skipped"),
            "errors": sum(1 for x in lines if x["status"] == "error"),
            "pairs": sum(len(x.get("samples", [])) for x in lines),
            "pairs_per_split": dict(sorted(splits.items())),
            "first_key": lines[0]["key"] if lines else None,
            "last_key": lines[-1]["key"] if lines else None,
        }

    # ------------------------------------------------------------------------------------------
    # one study
    # ------------------------------------------------------------------------------------------
    def process_one(self, record: StudyRecord) -> dict:
        """Run the processor on one study and write its masks; returns its shard line (never raises)."""
        line = {"key": record.key, "split": record.split, "status": "ok", "samples": [], "info": {}}
        try:
            if record.index_error:  # a row the index could not use (file and row named): fail it, run the rest
                raise StageError("index", record.index_error)
            result = self.processor(record)
            if isinstance(result, GeneratedPairs):
                result = StudyResult.from_pairs(result)
            if not isinstance(result, StudyResult):
                raise TypeError(f"processor returned {type(result).__name__}; expected StudyResult or GeneratedPairs.")
            for relative, mask in result.masks.items():
                save_mask_png(mask, self.mask_dir / relative)
            if self.write_overlays:
                for relative, rgb in result.overlays.items():
                    _save_rgb(rgb, self.overlay_dir / relative)
            exported = None
            if result.image is not None:
                from monai_ils.generation.pairs import mask_folder_name

                exported = self.image_dir / f"{mask_folder_name(record.key)}.png"
                _save_rgb(result.image, exported)
            for sample in result.samples:
                if exported is not None:
                    sample.image_path = str(exported)
                if sample.positive:
                    if sample.seg_mask_path not in result.masks:
                        raise StageError("pairs", f"positive pair {sample.instruction!r} refers to mask {sample.seg_mask_path!r} that the processor did not return.")
                    sample.seg_mask_path = str(self.mask_dir / sample.seg_mask_path)
                line["samples"].append(sample_to_record(sample, self.output_dir))
            line["info"] = result.info
            if result.overlays and self.write_overlays:
                line["overlays"] = [str((self.overlay_dir / r).relative_to(self.output_dir)) for r in result.overlays]
        except SkipStudy as reason:
            line.update(status="skipped", reason=str(reason), samples=[])
        except Exception as err:  # noqa: BLE001 - a failed study is recorded, the run goes on
            line.update(status="error", error=error_record(record, err), samples=[])
            logger.warning("study %s failed in %s: %s: %s", record.key, line["error"]["stage"], type(err).__name__, err)
        return line

    # ------------------------------------------------------------------------------------------
    # the run
    # ------------------------------------------------------------------------------------------
    def run(self, records: Iterable[StudyRecord], merge: bool = True) -> RunSummary:
        """Process every study not yet done, then (``merge``) write dataset.json, pairs.jsonl and statistics."""
        if self.overwrite and self.manifest_path.exists():
            old = json.loads(self.manifest_path.read_text())
            if old.get("fingerprint") != self.fingerprint():
                _clear_run(self.output_dir)
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        manifest = self.load_manifest()
        if not manifest["complete"]:
            _remove_temporaries(self.output_dir)  # what a killed run was writing when it died
        self._recover_finished_shards(manifest)
        manifest["complete"] = False
        self._save_manifest(manifest)
        done = sum(s["studies"] for s in manifest["shards"])
        starts, position = {}, 0
        for shard in manifest["shards"]:
            starts[position] = shard["first_key"]
            position += shard["studies"]

        total = _length(records)
        if self.limit is not None:
            total = self.limit if total is None else min(total, self.limit)
        bar = _progress(total, done, self.progress)
        processed_now = 0
        index = len(manifest["shards"])  # the shard being written
        base = done  # input position of its first study
        part_stream, resume_keys = self._open_part(index)  # lines an interrupted run already wrote
        part_lines = len(resume_keys)
        studies = self._lines(self._pending(records, done, starts), first_new=done + len(resume_keys))
        try:
            for position, record, line in studies:
                if part_stream is None:
                    part_stream, _ = self._open_part(index)
                    part_lines = 0
                offset = position - base
                if line is None:  # written by the interrupted run
                    if resume_keys[offset] != record.key:
                        raise RuntimeError(
                            f"The input changed since this run started: {self.shard_path(index, True)} line {offset + 1} is "
                            f"{resume_keys[offset]!r}, the input has {record.key!r}. Use a new output folder."
                        )
                else:
                    part_stream.write(json.dumps(line, sort_keys=True) + "\n")
                    part_stream.flush()
                    os.fsync(part_stream.fileno())
                    part_lines += 1
                    processed_now += 1
                bar.update(1)
                if part_lines >= self.shard_size and position + 1 >= done + len(resume_keys):
                    part_stream.close()
                    part_stream = None
                    self._finish_shard(manifest, index)
                    index, base = index + 1, position + 1
            if part_stream is not None:
                part_stream.close()
                part_stream = None
                if part_lines:
                    self._finish_shard(manifest, index)
                else:
                    self.shard_path(index, part=True).unlink(missing_ok=True)
        finally:
            studies.close()  # stops the workers at once if the run fails
            if part_stream is not None:
                part_stream.close()
            bar.close()
        manifest["complete"] = True
        self._save_manifest(manifest)
        summary = self.summary(manifest)
        summary.processed_now = processed_now
        logger.info(
            "%d studies (%d new): %d ok, %d skipped, %d failed; %d pairs -> %s",
            summary.studies, processed_now, summary.ok, summary.skipped, summary.errors, summary.pairs, self.output_dir,
        )
        if merge:
            summary.files = self.merge(manifest, summary)
            kept = {k: v for k, v in summary.to_dict().items() if k not in ("processed_now", "output_dir")}
            kept["files"] = {k: str(Path(v).relative_to(self.output_dir)) for k, v in summary.files.items()}
            (self.output_dir / "summary.json").write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
        return summary

    def _pending(self, records: Iterable[StudyRecord], done: int, starts: dict[int, str]) -> Iterator[tuple[int, StudyRecord]]:
        """``(position, record)`` from position ``done`` on (up to ``limit``), after checking the finished shards' keys."""
        for position, record in enumerate(records):
            if self.limit is not None and position >= self.limit:
                return
            if position < done:
                expected = starts.get(position)
                if expected is not None and expected != record.key:
                    raise RuntimeError(
                        f"The input changed since this run started: study {position} is {record.key!r}, a finished "
                        f"shard began with {expected!r}. Use a new output folder."
                    )
                continue
            yield position, record

    def _lines(self, pending: Iterable[tuple[int, StudyRecord]], first_new: int) -> Iterator[tuple[int, StudyRecord, dict | None]]:
        """``(position, record, shard line)`` in input order; the line is None before ``first_new`` (already written).

        With workers, at most ``2 * num_workers`` studies are in flight, so memory stays bounded and a
        changed input is still reported at the study where it differs.
        """
        if self.num_workers > 1:
            yield from self._lines_in_workers(pending, first_new)
            return
        for position, record in pending:
            yield position, record, (self.process_one(record) if position >= first_new else None)

    def _lines_in_workers(self, pending: Iterable[tuple[int, StudyRecord]], first_new: int) -> Iterator[tuple[int, StudyRecord, dict | None]]:
        """:meth:`_lines` over ``num_workers`` spawned processes, each with a pickled copy of this runner."""
        try:
            pickle.dumps(self.processor)
        except Exception as err:
            raise TypeError(
                f"num_workers={self.num_workers} sends the processor to worker processes, but it cannot be pickled "
                f"({type(err).__name__}: {err}). Use num_workers=0, or backends that can be copied (an in-process vLLM "
                f"cannot; the HTTP client of a vLLM server can)."
            ) from err
        pool = ProcessPoolExecutor(self.num_workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(self,))
        in_flight: deque = deque()  # (position, record, future or None), oldest first
        awaited = None  # the entry whose line is being waited for

        def oldest():
            nonlocal awaited
            awaited = in_flight.popleft()
            position, record, job = awaited
            line = None if job is None else job.result()
            awaited = None
            return position, record, line

        record = None
        try:
            for position, record in pending:
                job = pool.submit(_process_in_worker, record) if position >= first_new else None
                in_flight.append((position, record, job))
                while in_flight and (len(in_flight) > 2 * self.num_workers or in_flight[0][2] is None):
                    yield oldest()
            while in_flight:
                yield oldest()
        except BrokenProcessPool as err:  # from submit() or result(), whichever notices first
            first_unwritten = awaited or (in_flight[0] if in_flight else (None, record, None))
            raise RuntimeError(
                f"a worker process died (out of memory?) with study {first_unwritten[1].key!r} in flight. What is "
                f"written is kept: run the same command again to resume."
            ) from err
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _open_part(self, index: int):
        """Open shard ``index`` for appending; keep its complete lines and drop a torn last line."""
        part = self.shard_path(index, part=True)
        keys: list[str] = []
        if part.exists():
            data = part.read_bytes()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                logger.info("dropping a torn line at the end of %s", part)
                with part.open("r+b") as stream:
                    stream.truncate(end)
            for raw in data[:end].splitlines():
                keys.append(json.loads(raw)["key"])
        return part.open("a"), keys

    def _finish_shard(self, manifest: dict, index: int) -> None:
        part, final = self.shard_path(index, part=True), self.shard_path(index)
        lines = list(_read_lines(part))
        part.replace(final)
        manifest["shards"].append(self._shard_entry(index, lines))
        self._save_manifest(manifest)

    def summary(self, manifest: dict | None = None) -> RunSummary:
        manifest = manifest or self.load_manifest()
        summary = RunSummary(output_dir=str(self.output_dir))
        for shard in manifest["shards"]:
            summary.studies += shard["studies"]
            summary.ok += shard["ok"]
            summary.skipped += shard["skipped"]
            summary.errors += shard["errors"]
            summary.pairs += shard["pairs"]
        return summary

    # ------------------------------------------------------------------------------------------
    # merge
    # ------------------------------------------------------------------------------------------
    def iter_lines(self, manifest: dict | None = None) -> Iterator[dict]:
        """Every study line of the finished shards, in input order."""
        manifest = manifest or self.load_manifest()
        for shard in manifest["shards"]:
            yield from _read_lines(self.output_dir / shard["file"])

    def iter_samples(self, manifest: dict | None = None) -> Iterator[ILSSample]:
        for line in self.iter_lines(manifest):
            for record in line.get("samples", []):
                yield sample_from_record(record, self.output_dir)

    def merge(self, manifest: dict | None = None, summary: RunSummary | None = None) -> dict[str, str]:
        """Write dataset.json (ROSALIA layout), pairs.jsonl, errors.jsonl and the statistics; one study in memory.

        Returns the files written; fills ``summary``'s positive/negative counts when given.
        """
        manifest = manifest or self.load_manifest()
        out = self.output_dir
        stats = DatasetStatistics()
        positives = negatives = 0
        pairs_tmp = out / ".pairs.jsonl.tmp"
        errors_tmp = out / ".errors.jsonl.tmp"
        with pairs_tmp.open("w") as pairs_stream, errors_tmp.open("w") as errors_stream:
            for line in self.iter_lines(manifest):
                if line["status"] != "ok":
                    errors_stream.write(json.dumps({k: line.get(k) for k in ("key", "split", "status", "reason", "error")}, sort_keys=True) + "\n")
                for record in line.get("samples", []):
                    pairs_stream.write(json.dumps(record) + "\n")
                    sample = sample_from_record(record, out)
                    stats.add(sample)
                    positives += sample.positive
                    negatives += not sample.positive
        pairs_tmp.replace(out / "pairs.jsonl")
        if summary is not None:
            summary.positive_pairs, summary.negative_pairs = positives, negatives
        errors_tmp.replace(out / "errors.jsonl")
        splits = sorted({s for shard in manifest["shards"] for s in shard.get("pairs_per_split", {})}, key=_split_order)

        def studies_of(split):
            for line in self.iter_lines(manifest):
                samples = [sample_from_record(r, out) for r in line.get("samples", []) if r["split"] == split]
                if samples:
                    yield samples

        write_ils_json_stream(out / "dataset.json", ((split, studies_of(split)) for split in splits))
        files = {"dataset": str(out / "dataset.json"), "pairs": str(out / "pairs.jsonl"), "errors": str(out / "errors.jsonl")}
        files.update({k: str(v) for k, v in stats.write(out, "statistics").items()})
        return files


# ------------------------------------------------------------------------------------------------
_WORKER_RUNNER: GenerationRunner | None = None


def _start_worker(runner: GenerationRunner) -> None:
    """Worker initialiser: keep this process's copy of the runner; one thread, as the processes share the cores."""
    global _WORKER_RUNNER
    _WORKER_RUNNER = runner
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _process_in_worker(record: StudyRecord) -> dict:
    return _WORKER_RUNNER.process_one(record)


def _read_lines(path: Path) -> Iterator[dict]:
    with Path(path).open() as stream:
        for number, raw in enumerate(stream, 1):
            if raw.strip():
                try:
                    yield json.loads(raw)
                except json.JSONDecodeError as err:
                    raise RuntimeError(f"{path}:{number}: damaged shard line ({err}).") from err


def _split_order(split: str):
    return ({"train": 0, "val": 1, "test": 2}.get(split, 3), split)


def _length(records) -> int | None:
    try:
        return len(records)
    except TypeError:
        return None


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total, initial, enabled):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="studies", unit="study", dynamic_ncols=True)


def _save_rgb(rgb, path: Path) -> None:
    from PIL import Image

    array = np.asarray(rgb)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    tmp.replace(path)


_WRITTEN_FOLDERS = ("masks", "overlays", "images")  # what process_one writes besides the shards


def _remove_temporaries(folder: Path) -> None:
    """Delete the hidden ``.*.tmp`` files that masks, overlays, images and the merge are written through
    (only in our own folders: the output folder may hold other things)."""
    leftovers = [*folder.glob(".*.tmp"), *(p for name in _WRITTEN_FOLDERS for p in (folder / name).rglob(".*.tmp"))]
    for path in leftovers:
        path.unlink(missing_ok=True)


def _clear_run(folder: Path) -> None:
    """Remove what a previous run wrote (only our own files and folders)."""
    import shutil

    for name in ("shards", *_WRITTEN_FOLDERS):
        shutil.rmtree(folder / name, ignore_errors=True)
    for name in ("manifest.json", "dataset.json", "pairs.jsonl", "errors.jsonl", "summary.json", "statistics.csv", "statistics.md", "statistics.png"):
        (folder / name).unlink(missing_ok=True)


def run_generation(records: Iterable[StudyRecord], output_dir, processor: Processor, **options) -> RunSummary:
    """Functional form: ``GenerationRunner(output_dir, processor, **options).run(records)``."""
    merge = options.pop("merge", True)
    return GenerationRunner(output_dir, processor, **options).run(records, merge=merge)
