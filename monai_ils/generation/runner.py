"""The streaming generation runner: studies in, a resumable sharded dataset out.

Each study goes through a per-study callable (the grounding pipeline followed by pair generation, or
anything a user injects) and its result is appended, with its masks already on disk, to the current
shard as one JSON line. A shard that is full is renamed into place and recorded in ``manifest.json``.
A run that is killed therefore resumes where it stopped: finished shards are skipped, the partial shard
keeps every complete line (a torn last line is dropped), and the study being processed is done again,
writing the same masks (pairs are seeded per study). A study that fails leaves an error record that says
what failed, in which stage and where; the run goes on. Memory holds one study per worker and the manifest.

The jobs live in their own modules: :mod:`~monai_ils.generation.writer` (one study -> files + shard line),
:mod:`~monai_ils.generation.executors` (ordered execution, in this process or in workers),
:mod:`~monai_ils.generation.store` (manifest and shards) and :mod:`~monai_ils.generation.merge`.

Output folder::

    manifest.json                 the run's configuration, its fingerprint, the monai-ils version, the finished shards
    shards/shard-00000.jsonl      one line per study: {"key", "status", "samples", "error", ...}
    shards/shard-00001.jsonl.part the shard being written
    masks/<study>/<lesion>_<n>.png
    overlays/<study>/...jpg       when the processor draws them
    images/<study>.png            8-bit copies of the images, when the processor exports them
    dataset.json  pairs.jsonl  errors.jsonl  statistics.{csv,md,png}  summary.json   (after merge)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from monai_ils.data.ils_format import ILSSample, sample_from_record
from monai_ils.data.mimic_cxr import StudyRecord
from monai_ils.generation.executors import OrderedExecutor, StudyItem, executor_for
from monai_ils.generation.fingerprint import describe
from monai_ils.generation.lock import FolderLock, OutputLockedError  # noqa: F401 - OutputLockedError is part of run()'s contract
from monai_ils.generation.merge import merge_shards, write_summary
from monai_ils.generation.results import Processor
from monai_ils.generation.store import ShardStore
from monai_ils.generation.writer import StudyWriter

logger = logging.getLogger(__name__)


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


class GenerationRunner:
    """Run a per-study processor over a stream of :class:`StudyRecord` into a resumable sharded dataset.

    Args:
        output_dir: the dataset folder (created).
        processor: ``record -> StudyResult | GeneratedPairs``; raise :class:`SkipStudy` to exclude a study,
            :class:`StageError` (or anything) to fail it.
        shard_size: studies per shard file.
        limit: process only the first ``limit`` studies of the input.
        settings: what identifies the output for a resume; None (the default, what the bundle does) describes
            the processor itself (``monai_ils.generation.fingerprint.describe``: the pipeline, its transforms
            and their parameters, the cue backends and their weights paths, the structurer and its model, the
            pair generator, QC and processor options). A resumed run must have the same description, the same
            ``shard_size`` and overlays option and the same monai-ils version, or it refuses to mix outputs and
            says which paths of the configuration changed.
        progress: show a tqdm bar.
        overwrite: start afresh even if the folder holds a run with other settings.
        overlays: write the processor's overlays (JPEG).
        num_workers: 0 or 1 processes studies in this process; N > 1 spreads them over N spawned worker
            processes (one thread each), each with its own copy of the processor. Lines are still written
            in input order, and pairs are seeded per study, so the output is the same as with one process.
        executor: an :class:`~monai_ils.generation.executors.OrderedExecutor` to use instead of the one
            ``num_workers`` asks for.
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
        executor: OrderedExecutor | None = None,
    ):
        if int(shard_size) < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size!r}.")
        if limit is not None and int(limit) < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit!r}.")
        self.executor = executor if executor is not None else executor_for(num_workers)
        self.writer = StudyWriter(output_dir, processor, overlays=overlays)
        self.shard_size = int(shard_size)
        self.limit = None if limit is None else int(limit)
        self.settings = describe(processor if settings is None else settings)
        self.progress = progress
        self.overwrite = overwrite
        self.store = ShardStore(output_dir, self.fingerprint(), self.shard_size, self.configuration())

    @property
    def output_dir(self):
        return self.writer.output_dir

    @property
    def processor(self) -> Processor:
        return self.writer.processor

    def configuration(self) -> dict:
        """What the fingerprint covers (recorded in the manifest): the described processor (or the explicit
        settings), the writer's options and the monai-ils version."""
        from monai_ils import __version__

        return {"monai_ils_version": __version__, "shard_size": self.shard_size, "overlays": self.writer.write_overlays,
                "processor": self.settings}

    def fingerprint(self) -> str:
        text = json.dumps(self.configuration(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def load_manifest(self) -> dict:
        return self.store.load_manifest(self.overwrite)

    # ------------------------------------------------------------------------------------------
    # the run
    # ------------------------------------------------------------------------------------------
    def run(self, records: Iterable[StudyRecord], merge: bool = True) -> RunSummary:
        """Process every study not yet done, then (``merge``) write dataset.json, pairs.jsonl and statistics.

        The output folder is locked for the whole run: a second run into it raises :class:`OutputLockedError`
        naming the process that holds it."""
        with FolderLock(self.output_dir):
            return self._run(records, merge)

    def _run(self, records: Iterable[StudyRecord], merge: bool) -> RunSummary:
        store = self.store
        if self.overwrite:
            old = store.read_manifest() if store.manifest_path.exists() else None
            if old is not None and old.get("fingerprint") != store.fingerprint:
                store.clear()
        store.shard_dir.mkdir(parents=True, exist_ok=True)
        manifest = self.load_manifest()
        if not manifest["complete"]:
            store.remove_temporaries()  # what a killed run was writing when it died
        store.recover_finished_shards(manifest)
        manifest["complete"] = False
        store.save_manifest(manifest)
        done = sum(s["studies"] for s in manifest["shards"])
        finished_keys = [line["key"] for line in store.iter_lines(manifest)]  # every key, checked against the input

        total = _length(records)
        if self.limit is not None:
            total = self.limit if total is None else min(total, self.limit)
        bar = _progress(total, done, self.progress)
        processed_now = 0
        index = len(manifest["shards"])  # the shard being written
        base = done  # input position of its first study
        part_stream, resume_keys = store.open_part(index)  # lines an interrupted run already wrote
        part_lines = len(resume_keys)
        first_new = done + len(resume_keys)
        items = (StudyItem(p, r, p >= first_new) for p, r in self._pending(records, finished_keys))
        studies = self.executor.map(self.writer, items)
        try:
            for item, line in studies:
                position, record = item.position, item.record
                if part_stream is None:
                    part_stream, _ = store.open_part(index)
                    part_lines = 0
                offset = position - base
                if line is None:  # written by the interrupted run
                    if resume_keys[offset] != record.key:
                        raise RuntimeError(
                            f"The input changed since this run started: {store.shard_path(index, True).name} line {offset + 1} "
                            f"is {resume_keys[offset]!r}, the input has {record.key!r}. Use a new output folder."
                        )
                else:
                    part_stream.write(json.dumps(line, sort_keys=True) + "\n")
                    part_stream.flush()
                    os.fsync(part_stream.fileno())
                    part_lines += 1
                    processed_now += 1
                bar.update(1)
                if part_lines >= self.shard_size and position + 1 >= first_new:
                    part_stream.close()
                    part_stream = None
                    store.finish_shard(manifest, index)
                    index, base = index + 1, position + 1
            if part_stream is not None:
                part_stream.close()
                part_stream = None
                if part_lines:
                    store.finish_shard(manifest, index)
                else:
                    store.shard_path(index, part=True).unlink(missing_ok=True)
        finally:
            studies.close()  # stops the workers at once if the run fails
            if part_stream is not None:
                part_stream.close()
            bar.close()
        manifest["complete"] = True
        store.save_manifest(manifest)
        summary = self.summary(manifest)
        summary.processed_now = processed_now
        logger.info(
            "%d studies (%d new): %d ok, %d skipped, %d failed; %d pairs",
            summary.studies, processed_now, summary.ok, summary.skipped, summary.errors, summary.pairs,
        )
        if merge:
            summary.files = self.merge(manifest, summary)
            write_summary(self.output_dir, summary.to_dict(), summary.files)
        return summary

    def _pending(self, records: Iterable[StudyRecord], finished_keys: list[str]) -> Iterator[tuple[int, StudyRecord]]:
        """``(position, record)`` after the finished shards (up to ``limit``), once every key of those shards has
        been checked against the input: a study added, removed (e.g. consent withdrawn) or reordered before the
        resume point would otherwise stay in, or shift, the merged dataset."""
        done = len(finished_keys)
        position = -1
        for position, record in enumerate(records):
            if self.limit is not None and position >= self.limit:
                return
            if position < done:
                if finished_keys[position] != record.key:
                    raise RuntimeError(
                        f"The input changed since this run started: study {position} is {record.key!r}, the finished "
                        f"shards hold {finished_keys[position]!r} there. Use a new output folder (or overwrite=True)."
                    )
                continue
            yield position, record
        if position + 1 < done:
            raise RuntimeError(
                f"The input changed since this run started: it has {position + 1} studies, the finished shards hold "
                f"{done} (first missing: {finished_keys[position + 1]!r}). Use a new output folder (or overwrite=True)."
            )

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
    # reading back and merging
    # ------------------------------------------------------------------------------------------
    def iter_lines(self, manifest: dict | None = None) -> Iterator[dict]:
        """Every study line of the finished shards, in input order."""
        return self.store.iter_lines(manifest or self.load_manifest())

    def iter_samples(self, manifest: dict | None = None) -> Iterator[ILSSample]:
        for line in self.iter_lines(manifest):
            for record in line.get("samples", []):
                yield sample_from_record(record, self.output_dir)

    def merge(self, manifest: dict | None = None, summary: RunSummary | None = None) -> dict[str, str]:
        """Write dataset.json (ROSALIA layout), pairs.jsonl, errors.jsonl and the statistics; one study in memory.

        Returns the files written; fills ``summary``'s positive/negative counts when given.
        """
        files, positives, negatives = merge_shards(self.store, manifest or self.load_manifest())
        if summary is not None:
            summary.positive_pairs, summary.negative_pairs = positives, negatives
        return files


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


def run_generation(records: Iterable[StudyRecord], output_dir, processor: Processor, **options) -> RunSummary:
    """Functional form: ``GenerationRunner(output_dir, processor, **options).run(records)``."""
    merge = options.pop("merge", True)
    return GenerationRunner(output_dir, processor, **options).run(records, merge=merge)
