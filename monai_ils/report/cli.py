"""Command line: structure a CSV / JSONL / folder of reports into findings JSONL.

    python -m monai_ils.report structure reports.csv findings.jsonl
    python -m monai_ils.report structure reports.jsonl findings.jsonl --backend http \\
        --base-url http://127.0.0.1:8000/v1 --model mistral-small
    python -m monai_ils.report evaluate gold.jsonl [--backend http ...] [--format csv]
    python -m monai_ils.report schema            # print the Finding JSON schema

One output line per report: ``{"id": ..., <StructuredReport fields>}``, or ``{"id": ..., "error": ...,
"error_type": ...}`` when that report failed (the run goes on). Re-running with the same output resumes:
reports already written are skipped (``--retry-errors`` re-runs the failed ones and the LLM results that fell
back to rules, ``--no-resume`` starts over); damaged lines are dropped and reported, the rest kept.
Exit status 3 when an LLM backend was asked and every report it was given fell back (server down?).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from monai_ils.report.api import structure_report, structure_reports
from monai_ils.report.sections import SECTION_MODES

__all__ = ["main", "read_reports", "completed_ids", "structure_records", "structure_batch", "structurer_from_args", "structurer_options", "add_backend_arguments"]

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


def _needs_rerun(record: dict, retry_errors: bool) -> bool:
    return retry_errors and ("error" in record or bool(record.get("fallback_reason")))


def completed_ids(output: Path, retry_errors: bool = False) -> set[str]:
    """Ids already in ``output`` (resume); the file is repaired in place.

    A damaged line (invalid JSON, a torn last line from an interrupted run) is dropped and reported by
    line number on stderr, never its content; every other record is kept. With ``retry_errors`` the
    error records and the LLM results that fell back to rules are dropped too, so they are run again.
    """
    done: set[str] = set()
    if not output.exists():
        return done
    kept: list[bytes] = []
    damaged: list[int] = []
    dropped = 0
    with open(output, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                dropped += 1
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if not isinstance(record, dict) or "id" not in record or not raw.endswith(b"\n"):
                damaged.append(n)
                continue
            if _needs_rerun(record, retry_errors):
                dropped += 1
                continue
            kept.append(raw)
            done.add(str(record["id"]))
    if damaged:
        shown = ", ".join(map(str, damaged[:10])) + (" ..." if len(damaged) > 10 else "")
        print(f"{output.name}: dropped {len(damaged)} damaged line(s) (line {shown}); their reports are run again",
              file=sys.stderr)
    if damaged or dropped:
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_bytes(b"".join(kept))
        os.replace(tmp, output)
    return done


def _error_record(rid: str, err: BaseException) -> dict:
    return {"id": rid, "error": str(err), "error_type": type(err).__name__}


def structure_records(items: Iterable[tuple[str, object]], structurer, batch_size: int = 32,
                      fallback: bool = True, sections: str = "fallback") -> Iterator[dict]:
    """Output records for ``(report_id, text)`` pairs, one per pair and in order, batch by batch.

    Each report is structured exactly once: a whole batch goes through ``structure_reports`` (an LLM
    structurer sends it as one batch); only if that raises are the reports of the batch re-run one by
    one, so that one bad report becomes its own error record. ``fallback=False`` turns an LLM result
    that fell back to rules into an error record (``error_type`` "LLMFallback"). ``sections``: see
    ``sections.select_section``.
    """
    batch: list[tuple[str, object]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= batch_size:
            yield from _structure_batch(batch, structurer, fallback, sections)
            batch = []
    if batch:
        yield from _structure_batch(batch, structurer, fallback, sections)


def structure_batch(texts: list[object], structurer, sections: str = "fallback") -> list[object]:
    """``StructuredReport`` or the exception, per text, each text structured once.

    The whole batch goes through ``structure_reports`` (one LLM batch); only if that raises are the
    texts re-run one by one, so that a bad report becomes its own error and the others still succeed.
    """
    results: dict[int, object] = {}
    for i, text in enumerate(texts):
        if isinstance(text, Exception):
            results[i] = text
        elif not isinstance(text, str):
            results[i] = TypeError(f"report text must be a string, got {type(text).__name__}")
    valid = [i for i in range(len(texts)) if i not in results]
    try:
        results.update(zip(valid, structure_reports([texts[i] for i in valid], structurer, sections)))
    except Exception:  # noqa: BLE001 - isolate the failing report below
        for i in valid:
            try:
                results[i] = structure_report(texts[i], structurer, sections)
            except Exception as err:  # noqa: BLE001 - recorded, the run goes on
                results[i] = err
    return [results[i] for i in range(len(texts))]


def _structure_batch(batch, structurer, fallback: bool, sections: str) -> list[dict]:
    records = []
    for (rid, _), result in zip(batch, structure_batch([text for _, text in batch], structurer, sections)):
        if isinstance(result, BaseException):
            records.append(_error_record(rid, result))
        elif not fallback and result.fallback_reason:
            records.append({"id": rid, "error": result.fallback_reason, "error_type": "LLMFallback"})
        else:
            records.append({"id": rid, **result.to_dict()})
    return records


def structurer_options(args) -> dict:
    """``build_structurer`` keyword arguments from the backend options of ``add_backend_arguments``."""
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
    return options


def structurer_from_args(args):
    """The structurer named by the backend options of ``add_backend_arguments``."""
    from monai_ils.report.api import build_structurer

    return build_structurer(args.backend, **structurer_options(args))


def _structured_records(args, todo: list) -> Iterator[dict]:
    """The output records of ``todo``, in order: in this process, or batch by batch on Ray actors (with several
    comma-separated ``--base-url`` servers, one per actor, round-robin)."""
    from monai_ils.report.ray_structure import split_endpoints, structure_chunks_on_ray

    urls = split_endpoints(args.base_url) if args.backend == "http" else []
    if getattr(args, "executor", "local") == "local":
        if len(urls) > 1:
            raise SystemExit("several --base-url servers are used round-robin by --executor ray only")
        yield from structure_records(todo, structurer_from_args(args), args.batch_size, fallback=args.fallback,
                                     sections=args.sections)
        return
    if not todo:
        return
    options = structurer_options(args)
    actors = args.ray_concurrency or max(1, len(urls))
    per_actor = [{**options, "base_url": urls[i % len(urls)]} if urls else dict(options) for i in range(actors)]
    chunks = [todo[start:start + args.batch_size] for start in range(0, len(todo), args.batch_size)]
    for records in structure_chunks_on_ray(chunks, args.backend, per_actor, address=args.ray_address,
                                           fallback=args.fallback, sections=args.sections):
        yield from records


def run_structure(args) -> int:
    if args.backend == "rules" and not args.fallback:
        raise SystemExit("--no-fallback only applies to an LLM backend (--backend http, transformers or vllm)")

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not args.resume and output.exists():
        output.unlink()
    done = completed_ids(output, retry_errors=args.retry_errors)
    todo = [(rid, text) for rid, text in read_reports(args.input, args.id_column, args.text_column) if rid not in done]
    counts = Counter()
    with open(output, "a", encoding="utf-8") as out, tqdm(total=len(todo), desc="structuring", unit="report", disable=args.quiet) as bar:
        for record in _structured_records(args, todo):
            out.write(json.dumps(record) + "\n")
            if record.get("error_type") == "LLMFallback":
                counts["fallback_error"] += 1
            elif "error" in record:
                counts["failed"] += 1
            elif record.get("skipped_reason"):
                counts["skipped"] += 1
            elif record.get("fallback_reason"):
                counts["fallback"] += 1
            else:
                counts["ok"] += 1
            out.flush()
            bar.update(1)
    fell_back = counts["fallback"] + counts["fallback_error"]
    summary = (f"structured {counts['ok']}, skipped {counts['skipped']} (no usable section), failed {counts['failed']}, "
               f"already done {len(done)}")
    if args.backend != "rules":
        how = "recorded as errors (--no-fallback)" if not args.fallback else "structured by the rules instead"
        summary += f", LLM fell back {fell_back} ({how}; --retry-errors re-runs them)"
    print(f"{summary} -> {output.name}", file=sys.stderr)
    if args.backend != "rules" and fell_back and counts["ok"] == 0:
        print(f"every report given to the LLM fell back ({fell_back}): is the server at the --base-url up and "
              f"serving --model? (see the fallback_reason / error of any record)", file=sys.stderr)
        return 3
    return 0


def run_evaluate(args) -> int:
    from monai_ils.report.evaluate import evaluate, format_table, load_gold

    try:
        gold = load_gold(args.gold)
    except (OSError, ValueError) as err:
        raise SystemExit(f"evaluate: {err}") from None
    structurer = structurer_from_args(args)

    def structure(texts):
        out = []
        for start in range(0, len(texts), args.batch_size):
            out.extend(structure_batch(texts[start:start + args.batch_size], structurer, args.sections))
        return out

    result = evaluate(gold, structure)
    table = format_table(result, args.format)
    if args.output:
        Path(args.output).write_text(table, encoding="utf-8")
    else:
        sys.stdout.write(table)
    print(f"scored {result.reports} reports with the {args.backend} structurer; {len(result.failed)} failed "
          f"(scored as no findings{': ' + ', '.join(result.failed[:10]) if result.failed else ''}); "
          f"{result.fell_back} LLM answers fell back to rules", file=sys.stderr)
    return 0


def run_schema(args) -> int:
    from monai_ils.report.finding import finding_json_schema, llm_output_json_schema

    print(json.dumps(llm_output_json_schema() if args.llm else finding_json_schema(), indent=2))
    return 0


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """The options that choose and configure a structurer (shared by every subcommand that structures)."""
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
    p.add_argument("--sections", default="fallback", choices=SECTION_MODES,
                   help="fallback: findings, else impression, else last paragraph (the paper); findings+impression: "
                        "both together when the report has both")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monai_ils.report", description="Structure radiology reports into findings.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("structure", help="CSV / JSONL / folder of reports -> findings JSONL")
    p.add_argument("input", help="CSV or JSONL with an id and a report column, or a folder of .txt reports")
    p.add_argument("output", help="findings JSONL (appended to and resumed)")
    p.add_argument("--id-column", default=None, help=f"default: first of {ID_COLUMNS}")
    p.add_argument("--text-column", default=None, help=f"default: first of {TEXT_COLUMNS}")
    add_backend_arguments(p)
    p.add_argument("--no-resume", dest="resume", action="store_false", help="overwrite the output instead of resuming")
    p.add_argument("--retry-errors", action="store_true",
                   help="re-run the reports that failed last time, and those whose LLM answer fell back to rules")
    p.add_argument("--no-fallback", dest="fallback", action="store_false",
                   help="LLM backends: record a report whose LLM answer was unusable as an error instead of "
                        "structuring it with the rules")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--executor", default="local", choices=("local", "ray"), help="ray: batches structured by Ray actors")
    p.add_argument("--ray-address", default=None, help="Ray cluster (auto, ray://host:port); default a private local Ray")
    p.add_argument("--ray-concurrency", type=int, default=None, help="Ray actors (default: one per --base-url server)")
    p.set_defaults(func=run_structure)
    e = sub.add_parser("evaluate", help="score a structurer on reports with gold labels (per-lesion table)")
    e.add_argument("gold", help="JSONL of reports with gold labels (format: docs/report.md, 'Measuring a structurer')")
    e.add_argument("--format", default="markdown", choices=("markdown", "csv"))
    e.add_argument("--output", default=None, help="write the table here instead of stdout")
    add_backend_arguments(e)
    e.set_defaults(func=run_evaluate)
    s = sub.add_parser("schema", help="print the JSON schema of a Finding (or of the LLM answer)")
    s.add_argument("--llm", action="store_true", help="the schema the LLM output is constrained to")
    s.set_defaults(func=run_schema)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
