"""The shard store: the on-disk state of a run (manifest, finished shards, the shard being written).

A shard that is full is renamed into place and recorded in ``manifest.json``; the shard being written is
``shard-NNNNN.jsonl.part``, appended one fsynced line per study, so a kill loses at most the line being
written (a torn last line is dropped on resume).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from monai_ils.generation.fingerprint import diff, format_diff
from monai_ils.generation.writer import WRITTEN_FOLDERS

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 2

MERGED_FILES = ("dataset.json", "pairs.jsonl", "errors.jsonl", "summary.json", "statistics.csv", "statistics.md", "statistics.png")


class ShardStore:
    """Manifest and shard files of one output folder.

    Args:
        output_dir: the dataset folder.
        fingerprint: identifies the settings that shape the output; a manifest with another one is another run.
        shard_size: studies per shard file (recorded in the manifest).
        configuration: the JSON-able configuration the fingerprint covers (``monai_ils_version`` among its keys),
            recorded in the manifest, so a refused resume can say what changed.
    """

    def __init__(self, output_dir, fingerprint: str, shard_size: int, configuration: dict):
        self.output_dir = Path(output_dir)
        self.fingerprint = fingerprint
        self.shard_size = int(shard_size)
        self.configuration = configuration

    @property
    def shard_dir(self) -> Path:
        return self.output_dir / "shards"

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / "manifest.json"

    def shard_path(self, index: int, part: bool = False) -> Path:
        return self.shard_dir / f"shard-{index:05d}.jsonl{'.part' if part else ''}"

    # ------------------------------------------------------------------------------------------
    # manifest
    # ------------------------------------------------------------------------------------------
    def new_manifest(self) -> dict:
        return {"version": MANIFEST_VERSION, "fingerprint": self.fingerprint, "shard_size": self.shard_size,
                "monai_ils_version": self.configuration.get("monai_ils_version"), "configuration": self.configuration,
                "shards": [], "complete": False}

    def read_manifest(self) -> dict | None:
        """The manifest on disk, or None when there is none."""
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as err:
            raise RuntimeError(f"{self.manifest_path} is damaged ({err}); remove the folder or pass overwrite=True.") from err

    def load_manifest(self, overwrite: bool = False) -> dict:
        """This run's manifest: the one on disk if it has our fingerprint, a new one otherwise (refused
        unless ``overwrite``)."""
        manifest = self.read_manifest()
        if manifest is None:
            return self.new_manifest()
        if manifest.get("fingerprint") != self.fingerprint:
            if not overwrite:
                raise RuntimeError(f"{self.output_dir} holds a run with other settings; {self.changes(manifest)}\n"
                                   "Use another output folder, the configuration of that run, or overwrite=True.")
            return self.new_manifest()
        return manifest

    def changes(self, manifest: dict) -> str:
        """What differs between ``manifest``'s configuration and this run's, one ``path: old -> new`` a line."""
        old = manifest.get("configuration")
        if old is None:  # manifests of version 1 recorded hand-copied "settings", not the configuration
            return f"the run was written by an earlier monai-ils that recorded no configuration (manifest version {manifest.get('version')})."
        changes = diff(old, self.configuration)
        if not changes:
            return "the fingerprints differ but the recorded configurations do not (the manifest was edited)."
        return f"changed ({len(changes)}):\n" + format_diff(changes)

    def save_manifest(self, manifest: dict) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_name(f".manifest.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tmp.replace(self.manifest_path)

    def recover_finished_shards(self, manifest: dict) -> None:
        """A shard renamed into place just before a kill is finished even if the manifest missed it."""
        while True:
            index = len(manifest["shards"])
            final = self.shard_path(index)
            if not final.exists():
                return
            manifest["shards"].append(self.shard_entry(index, list(read_lines(final))))
            self.save_manifest(manifest)

    def shard_entry(self, index: int, lines: list[dict]) -> dict:
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
    # shards
    # ------------------------------------------------------------------------------------------
    def open_part(self, index: int):
        """Open shard ``index`` for appending; keep its complete lines and drop a torn last line.

        Returns the stream and the keys of the lines already there."""
        part = self.shard_path(index, part=True)
        keys: list[str] = []
        if part.exists():
            data = part.read_bytes()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                logger.info("dropping a torn line at the end of %s", part.name)
                with part.open("r+b") as stream:
                    stream.truncate(end)
            for raw in data[:end].splitlines():
                keys.append(json.loads(raw)["key"])
        return part.open("a"), keys

    def finish_shard(self, manifest: dict, index: int) -> None:
        part, final = self.shard_path(index, part=True), self.shard_path(index)
        lines = list(read_lines(part))
        part.replace(final)
        manifest["shards"].append(self.shard_entry(index, lines))
        self.save_manifest(manifest)

    def iter_lines(self, manifest: dict) -> Iterator[dict]:
        """Every study line of the finished shards, in input order."""
        for shard in manifest["shards"]:
            yield from read_lines(self.output_dir / shard["file"])

    # ------------------------------------------------------------------------------------------
    # clean-up
    # ------------------------------------------------------------------------------------------
    def remove_temporaries(self) -> None:
        """Delete the hidden ``.*.tmp`` files that masks, overlays, images and the merge are written through
        (only in our own folders: the output folder may hold other things)."""
        folder = self.output_dir
        leftovers = [*folder.glob(".*.tmp"), *(p for name in WRITTEN_FOLDERS for p in (folder / name).rglob(".*.tmp"))]
        for path in leftovers:
            path.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove what a previous run wrote (only our own files and folders)."""
        for name in ("shards", *WRITTEN_FOLDERS):
            shutil.rmtree(self.output_dir / name, ignore_errors=True)
        for name in ("manifest.json", *MERGED_FILES):
            (self.output_dir / name).unlink(missing_ok=True)


def read_lines(path: Path) -> Iterator[dict]:
    with Path(path).open() as stream:
        for number, raw in enumerate(stream, 1):
            if raw.strip():
                try:
                    yield json.loads(raw)
                except json.JSONDecodeError as err:
                    raise RuntimeError(f"{path}:{number}: damaged shard line ({err}).") from err
