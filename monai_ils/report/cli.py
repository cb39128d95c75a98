"""Command line: structure a CSV / JSONL / folder of reports into findings JSONL.

    python -m monai_ils.report structure reports.csv findings.jsonl
    python -m monai_ils.report structure reports.jsonl findings.jsonl --backend http \\
        --base-url http://127.0.0.1:8000/v1 --model mistral-small
    python -m monai_ils.report schema            # print the Finding JSON schema

One output line per report: ``{"id": ..., <StructuredReport fields>}``, or ``{"id": ..., "error": ...,
"error_type": ...}`` when that report failed (the run goes on). Re-running with the same output resumes:
reports already written are skipped (``--retry-errors`` re-runs the failed ones, ``--no-resume`` starts over).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

__all__ = ["main", "read_reports", "completed_ids"]

ID_COLUMNS = ("id", "study_id", "report_id", "dicom_id", "path")
TEXT_COLUMNS = ("report", "text", "report_text")


def _pick(columns, wanted: str | None, candidates: tuple[str, ...], what: str, source: Path) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{source}: no {what} column {wanted!r}; columns are {sorted(columns)}")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise ValueError(f"{source}: cannot find a {what} column among {sorted(columns)}; pass --{what}-column")


def read_reports(path: str | Path, id_column: str | None = None, text_column: str | None = None) -> Iterator[tuple[str, object]]:
    """Yield ``(report_id, text)`` from a CSV, a JSONL file or a folder of ``.txt`` reports (MIMIC-CXR layout).

    The text is passed on as read (possibly not a string); the structuring step records bad values.
    """
    path = Path(path)
    if path.is_dir():
        for file in sorted(path.rglob("*.txt")):
            yield file.stem, file.read_text(encoding="utf-8", errors="replace")
        return
    if not path.is_file():
        raise FileNotFoundError(f"no such input: {path}")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        id_col = text_col = None
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    yield f"line{n}", ValueError(f"{path}:{n}: invalid JSON ({err.msg})")
                    continue
                if not isinstance(row, dict):
                    yield f"line{n}", ValueError(f"{path}:{n}: expected a JSON object")
                    continue
                if id_col is None:
                    id_col = _pick(row, id_column, ID_COLUMNS, "id", path)
                    text_col = _pick(row, text_column, TEXT_COLUMNS, "text", path)
                rid = row.get(id_col)
                yield (str(rid) if rid not in (None, "") else f"line{n}"), row.get(text_col)
        return
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return
        id_col = _pick(reader.fieldnames, id_column, ID_COLUMNS, "id", path)
        text_col = _pick(reader.fieldnames, text_column, TEXT_COLUMNS, "text", path)
        for n, row in enumerate(reader, 2):
            rid = row.get(id_col)
            yield (rid if rid else f"row{n}"), row.get(text_col)


def completed_ids(output: Path, retry_errors: bool = False) -> set[str]:
    """Ids already in ``output``; a truncated last line (an interrupted run) is cut off."""
    done: set[str] = set()
    if not output.exists():
        return done
    good_end = 0
    with open(output, "rb") as f:
        for raw in f:
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                break
            if not raw.endswith(b"\n"):
                break
            good_end += len(raw)
            if retry_errors and "error" in record:
                continue
            done.add(str(record.get("id")))
    if good_end != output.stat().st_size:
        with open(output, "r+b") as f:
            f.truncate(good_end)
    return done


def _structure_chunk(chunk, structurer) -> list[dict]:
    from monai_ils.report.api import structure_report, structure_reports

    records = []
    valid = [i for i, (_, text) in enumerate(chunk) if isinstance(text, str)]
    results: dict[int, object] = {}  # chunk position -> report structured in the batch
    if valid and hasattr(structurer, "structure_many"):
        try:
            results = dict(zip(valid, structure_reports([chunk[i][1] for i in valid], structurer)))
        except Exception:  # isolate the failing report below
            results = {}
    for i, (rid, text) in enumerate(chunk):
        try:
            if isinstance(text, Exception):
                raise text
            if not isinstance(text, str):
                raise TypeError(f"report text must be a string, got {type(text).__name__}")
            report = results.get(i) or structure_report(text, structurer)
            records.append({"id": rid, **report.to_dict()})
        except Exception as err:
            records.append({"id": rid, "error": str(err), "error_type": type(err).__name__})
    return records


def _structured_chunks(args, options: dict, chunks) -> Iterator[list[dict]]:
    """Each chunk's records, in order: in this process, or on Ray actors (one endpoint each, round-robin)."""
    from monai_ils.report.api import build_structurer
    from monai_ils.report.ray_structure import split_endpoints, structure_chunks_on_ray

    urls = split_endpoints(args.base_url) if args.backend == "http" else []
    if args.executor == "local":
        if len(urls) > 1:
            raise SystemExit("several --base-url servers are used round-robin by --executor ray only")
        structurer = build_structurer(args.backend, **options)
        return (_structure_chunk(chunk, structurer) for chunk in chunks)
    if not chunks:
        return iter(())
    actors = args.ray_concurrency or max(1, len(urls))
    per_actor = [{**options, "base_url": urls[i % len(urls)]} if urls else dict(options) for i in range(actors)]
    return structure_chunks_on_ray(chunks, args.backend, per_actor, address=args.ray_address)


def run_structure(args) -> int:
    options = {}
    if args.backend == "http":
        options = {"base_url": args.base_url, "model": args.model, "timeout": args.timeout,
                   "max_retries": args.max_retries, "concurrency": args.concurrency}
    elif args.backend in ("transformers", "vllm"):
        if not args.model_path:
            raise SystemExit(f"--model-path is required with --backend {args.backend}")
        options = {"model_path": args.model_path}
    if args.backend != "rules":
        options["map_locations_with_llm"] = args.map_locations_with_llm
        options["structurer_batch_size"] = args.batch_size

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not args.resume and output.exists():
        output.unlink()
    done = completed_ids(output, retry_errors=args.retry_errors)
    if args.retry_errors and output.exists():  # drop the old error lines that are re-run now
        kept = [line for line in output.read_text(encoding="utf-8").splitlines() if "error" not in json.loads(line)]
        output.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    todo = [(rid, text) for rid, text in read_reports(args.input, args.id_column, args.text_column) if rid not in done]
    n_ok = n_err = n_skip = 0
    with open(output, "a", encoding="utf-8") as out, tqdm(total=len(todo), desc="structuring", unit="report", disable=args.quiet) as bar:
        chunks = [todo[start:start + args.batch_size] for start in range(0, len(todo), args.batch_size)]
        for chunk, records in zip(chunks, _structured_chunks(args, options, chunks)):
            for record in records:
                out.write(json.dumps(record) + "\n")
                if "error" in record:
                    n_err += 1
                elif record.get("skipped_reason"):
                    n_skip += 1
                else:
                    n_ok += 1
            out.flush()
            bar.update(len(chunk))
    print(f"structured {n_ok}, skipped {n_skip} (no usable section), failed {n_err}, "
          f"already done {len(done)} -> {output}", file=sys.stderr)
    return 0


def run_schema(args) -> int:
    from monai_ils.report.finding import finding_json_schema, llm_output_json_schema

    print(json.dumps(llm_output_json_schema() if args.llm else finding_json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monai_ils.report", description="Structure radiology reports into findings.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("structure", help="CSV / JSONL / folder of reports -> findings JSONL")
    p.add_argument("input", help="CSV or JSONL with an id and a report column, or a folder of .txt reports")
    p.add_argument("output", help="findings JSONL (appended to and resumed)")
    p.add_argument("--id-column", default=None, help=f"default: first of {ID_COLUMNS}")
    p.add_argument("--text-column", default=None, help=f"default: first of {TEXT_COLUMNS}")
    p.add_argument("--backend", default="rules", choices=("rules", "http", "transformers", "vllm"))
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1",
                   help="OpenAI-compatible server (http backend); with --executor ray, several separated by commas")
    p.add_argument("--model", default="default", help="served model name (http backend)")
    p.add_argument("--model-path", default=None, help="local model directory (transformers / vllm backends)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--max-retries", type=int, default=3, help="HTTP retries per request")
    p.add_argument("--concurrency", type=int, default=8, help="HTTP requests in flight")
    p.add_argument("--batch-size", type=int, default=32, help="reports per batch (and per output flush)")
    p.add_argument("--map-locations-with-llm", action="store_true", help="send unknown location terms to the LLM")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="overwrite the output instead of resuming")
    p.add_argument("--retry-errors", action="store_true", help="re-run the reports that failed last time")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--executor", default="local", choices=("local", "ray"), help="ray: batches structured by Ray actors")
    p.add_argument("--ray-address", default=None, help="Ray cluster (auto, ray://host:port); default a private local Ray")
    p.add_argument("--ray-concurrency", type=int, default=None, help="Ray actors (default: one per --base-url server)")
    p.set_defaults(func=run_structure)
    s = sub.add_parser("schema", help="print the JSON schema of a Finding (or of the LLM answer)")
    s.add_argument("--llm", action="store_true", help="the schema the LLM output is constrained to")
    s.set_defaults(func=run_schema)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
