"""Merge the finished shards into the dataset files: dataset.json (ROSALIA layout), pairs.jsonl,
errors.jsonl and the statistics; one study in memory at a time."""

from __future__ import annotations

import json
from pathlib import Path

from monai_ils.data.ils_format import sample_from_record, write_ils_json_stream
from monai_ils.data.statistics import DatasetStatistics
from monai_ils.generation.store import ShardStore


def merge_shards(store: ShardStore, manifest: dict) -> tuple[dict[str, str], int, int]:
    """Write the merged files of ``manifest``'s shards; returns (files written, positive pairs, negative pairs)."""
    out = store.output_dir
    stats = DatasetStatistics()
    positives = negatives = 0
    pairs_tmp = out / ".pairs.jsonl.tmp"
    errors_tmp = out / ".errors.jsonl.tmp"
    with pairs_tmp.open("w") as pairs_stream, errors_tmp.open("w") as errors_stream:
        for line in store.iter_lines(manifest):
            if line["status"] != "ok":
                errors_stream.write(json.dumps({k: line.get(k) for k in ("key", "split", "status", "reason", "error")}, sort_keys=True) + "\n")
            for record in line.get("samples", []):
                pairs_stream.write(json.dumps(record) + "\n")
                sample = sample_from_record(record, out)
                stats.add(sample)
                positives += sample.positive
                negatives += not sample.positive
    pairs_tmp.replace(out / "pairs.jsonl")
    errors_tmp.replace(out / "errors.jsonl")
    splits = sorted({s for shard in manifest["shards"] for s in shard.get("pairs_per_split", {})}, key=_split_order)

    def studies_of(split):
        for line in store.iter_lines(manifest):
            samples = [sample_from_record(r, out) for r in line.get("samples", []) if r["split"] == split]
            if samples:
                yield samples

    write_ils_json_stream(out / "dataset.json", ((split, studies_of(split)) for split in splits))
    files = {"dataset": str(out / "dataset.json"), "pairs": str(out / "pairs.jsonl"), "errors": str(out / "errors.jsonl")}
    files.update({k: str(v) for k, v in stats.write(out, "statistics").items()})
    return files, positives, negatives


def _split_order(split: str):
    return ({"train": 0, "val": 1, "test": 2}.get(split, 3), split)


def write_summary(output_dir: Path, summary: dict, files: dict[str, str]) -> None:
    """summary.json: the counts and the merged files, paths relative to the output folder."""
    output_dir = Path(output_dir)
    kept = {k: v for k, v in summary.items() if k not in ("processed_now", "output_dir", "files")}
    kept["files"] = {k: str(Path(v).relative_to(output_dir)) for k, v in files.items()}
    (output_dir / "summary.json").write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
