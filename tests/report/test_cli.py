"""Command line: CSV/JSONL/folder in, findings JSONL out, error records, resume."""

import csv
import json

import pytest

from monai_ils.report.cli import completed_ids, main, read_reports

REPORTS = {
    "s1": " FINDINGS: Bibasilar atelectasis.\n\n IMPRESSION: Cardiomegaly.\n",
    "s2": " EXAMINATION: CHEST\n",
    "s3": "Small left pleural effusion. No pneumothorax.",
}


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def csv_input(tmp_path):
    path = tmp_path / "reports.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["study_id", "report"])
        for rid, text in REPORTS.items():
            writer.writerow([rid, text])
    return path


def test_csv_to_findings_jsonl(csv_input, tmp_path, capsys):
    out = tmp_path / "out" / "findings.jsonl"
    assert main(["structure", str(csv_input), str(out), "--quiet"]) == 0
    records = {r["id"]: r for r in _read(out)}
    assert set(records) == set(REPORTS)
    assert records["s1"]["section_name"] == "findings"
    assert [f["lesion_type"] for f in records["s1"]["findings"]] == ["atelectasis"]
    assert records["s2"]["skipped_reason"] == "no findings, impression or last paragraph section"
    assert [(f["entity"], f["presence"]) for f in records["s3"]["findings"]] == [("pleural effusion", "positive"), ("pneumothorax", "negative")]
    assert "structured 2, skipped 1" in capsys.readouterr().err


def test_jsonl_errors_are_recorded_and_the_run_goes_on(tmp_path):
    src = tmp_path / "reports.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "Mild cardiomegaly."}) + "\n" + "{broken\n"
                   + json.dumps({"id": "b", "text": 42}) + "\n" + json.dumps({"id": "c", "text": "No effusion."}) + "\n")
    out = tmp_path / "findings.jsonl"
    main(["structure", str(src), str(out), "--quiet", "--batch-size", "2"])
    records = _read(out)
    assert [r["id"] for r in records] == ["a", "line2", "b", "c"]
    assert records[1]["error_type"] == "ValueError" and "reports.jsonl:2: invalid JSON" in records[1]["error"]
    assert records[2] == {"id": "b", "error": "report text must be a string, got int", "error_type": "TypeError"}
    assert records[3]["findings"][0]["presence"] == "negative"


def test_resume_skips_done_and_repairs_truncated_line(csv_input, tmp_path):
    out = tmp_path / "findings.jsonl"
    main(["structure", str(csv_input), str(out), "--quiet"])
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # run killed while writing s2
    assert completed_ids(out) == {"s1"}
    assert out.read_text() == lines[0]  # the torn line is cut off
    main(["structure", str(csv_input), str(out), "--quiet"])
    assert [r["id"] for r in _read(out)] == ["s1", "s2", "s3"]
    main(["structure", str(csv_input), str(out), "--quiet"])  # nothing left to do
    assert len(_read(out)) == 3


def test_retry_errors_reruns_failed_reports(tmp_path):
    src = tmp_path / "r.jsonl"
    src.write_text(json.dumps({"id": "a", "report": None}) + "\n")
    out = tmp_path / "o.jsonl"
    main(["structure", str(src), str(out), "--quiet"])
    assert "error" in _read(out)[0]
    src.write_text(json.dumps({"id": "a", "report": "Mild cardiomegaly."}) + "\n")
    main(["structure", str(src), str(out), "--quiet"])
    assert "error" in _read(out)[0]  # plain resume keeps the error record
    main(["structure", str(src), str(out), "--quiet", "--retry-errors"])
    (record,) = _read(out)
    assert record["findings"][0]["lesion_type"] == "cardiomegaly"


def test_folder_of_txt_reports(tmp_path):
    folder = tmp_path / "files" / "p10" / "p10000032"
    folder.mkdir(parents=True)
    (folder / "s50414267.txt").write_text(REPORTS["s1"])
    ids = [rid for rid, _ in read_reports(tmp_path / "files")]
    assert ids == ["s50414267"]


def test_bad_columns_are_named(tmp_path):
    src = tmp_path / "r.csv"
    src.write_text("key,body\n1,x\n")
    with pytest.raises(ValueError, match=r"cannot find a id column among \['body', 'key'\]; pass --id-column"):
        list(read_reports(src))
    assert list(read_reports(src, id_column="key", text_column="body")) == [("1", "x")]


def test_schema_command(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Finding"
    main(["schema", "--llm"])
    assert json.loads(capsys.readouterr().out)["title"] == "StructuredFindings"


def test_benchmark_script_prints_throughput(capsys):
    from monai_ils.bench.report import main as bench

    assert bench(["--reports", "20", "--all-cores"]) == 0
    assert "reports per CPU-second" in capsys.readouterr().out


def test_benchmark_against_a_baseline_checkout_prints_the_ratio(tmp_path, capsys):
    import shutil
    from pathlib import Path

    from monai_ils.bench.report import main as bench

    root = Path(__file__).resolve().parents[2]
    # a baseline checkout whose rules differ (no "cardiomegaly" lexicon entry): its findings must differ,
    # which shows the baseline's own code ran, not this checkout's
    shutil.copytree(root / "monai_ils", tmp_path / "old" / "monai_ils", ignore=shutil.ignore_patterns("__pycache__"))
    lexicon = tmp_path / "old" / "monai_ils" / "report" / "lexicon.py"
    lexicon.write_text(lexicon.read_text().replace('LexiconEntry(r"cardiomegaly", "cardiomegaly", "cardiomegaly", anchors=("cardiomegaly",)),', ""))
    assert bench(["--reports", "40", "--all-cores", "--baseline", str(tmp_path / "old")]) == 0
    out = capsys.readouterr().out
    assert "baseline (old):" in out and "this checkout / baseline = " in out
    here, base = (int(line.split(" findings")[0].rsplit(" ", 1)[-1]) for line in out.splitlines()[:2])
    assert base < here
    with pytest.raises(SystemExit, match="has no monai_ils/report package"):
        bench(["--reports", "5", "--baseline", str(root / "docs")])


# ------------------------------------------------------------------------------------------------
# An LLM backend against a local fake OpenAI-compatible server (issue 15, items 10-12)
import socket  # noqa: E402
import threading  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402


class _CountingChat(BaseHTTPRequestHandler):
    """Answers every chat-completions request with a valid empty answer, or 503 while ``server.down``."""

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append(body["messages"][-1]["content"])
        if self.server.down:
            data, status = b'{"error": "overloaded"}', 503
        else:
            content = json.dumps({"findings": []})
            data, status = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def chat_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _CountingChat)
    srv.lock, srv.requests, srv.down = threading.Lock(), [], False
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


def _llm_args(srv, *extra):
    return ["--backend", "http", "--base-url", f"http://127.0.0.1:{srv.server_address[1]}/v1", "--max-retries", "0",
            "--quiet", *extra]


def _jsonl_input(tmp_path, n):
    src = tmp_path / "reports.jsonl"
    src.write_text("".join(json.dumps({"id": f"r{i}", "text": f"Study {chr(97 + i)} reviewed. Mild cardiomegaly."}) + "\n" for i in range(n)))
    return src


def test_llm_backend_structures_every_report_once(chat_server, tmp_path, capsys):
    src, out = _jsonl_input(tmp_path, 7), tmp_path / "o.jsonl"
    assert main(["structure", str(src), str(out), *_llm_args(chat_server, "--batch-size", "3", "--concurrency", "4")]) == 0
    assert len(chat_server.requests) == 7  # one request per report, not two
    assert sorted(chat_server.requests) == sorted({*chat_server.requests})  # seven distinct reports
    records = _read(out)
    assert [r["id"] for r in records] == [f"r{i}" for i in range(7)]
    assert all(r["structurer"] == "llm" and r["fallback_reason"] is None for r in records)
    err = capsys.readouterr().err  # the fake answers no finding: nothing recognised, so skipped (issue 15.1)
    assert "structured 0, skipped 7" in err and "failed 0" in err


def test_llm_server_down_counts_fallbacks_exits_nonzero_and_retry_reruns(chat_server, tmp_path, capsys):
    src, out = _jsonl_input(tmp_path, 3), tmp_path / "o.jsonl"
    chat_server.down = True
    assert main(["structure", str(src), str(out), *_llm_args(chat_server)]) == 3
    err = capsys.readouterr().err
    assert "LLM fell back 3 (structured by the rules instead" in err and "every report given to the LLM fell back" in err
    assert "Mild cardiomegaly" not in err  # no report text on the console
    records = _read(out)
    assert all(r["structurer"] == "rules" and "HTTP 503" in r["fallback_reason"] for r in records)
    assert [f["lesion_type"] for f in records[0]["findings"]] == ["cardiomegaly"]
    chat_server.down = False
    sent = len(chat_server.requests)  # the structurer asks twice per report (its one retry), then falls back
    assert sent == 6
    assert main(["structure", str(src), str(out), *_llm_args(chat_server)]) == 0  # plain resume: nothing to do
    assert len(chat_server.requests) == sent
    assert main(["structure", str(src), str(out), *_llm_args(chat_server, "--retry-errors")]) == 0
    assert len(chat_server.requests) == sent + 3
    assert [(r["id"], r["structurer"]) for r in _read(out)] == [("r0", "llm"), ("r1", "llm"), ("r2", "llm")]


def test_llm_no_fallback_records_errors(chat_server, tmp_path, capsys):
    src, out = _jsonl_input(tmp_path, 2), tmp_path / "o.jsonl"
    chat_server.down = True
    assert main(["structure", str(src), str(out), *_llm_args(chat_server, "--no-fallback")]) == 3
    records = _read(out)
    assert [r["error_type"] for r in records] == ["LLMFallback", "LLMFallback"]
    assert "HTTP 503" in records[0]["error"] and "findings" not in records[0]
    assert "recorded as errors (--no-fallback)" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="only applies to an LLM backend"):
        main(["structure", str(src), str(out), "--no-fallback"])


def test_llm_server_unreachable_is_a_fallback(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src, out = _jsonl_input(tmp_path, 1), tmp_path / "o.jsonl"
    args = ["--backend", "http", "--base-url", f"http://127.0.0.1:{port}/v1", "--max-retries", "0", "--quiet"]
    assert main(["structure", str(src), str(out), *args]) == 3
    assert "cannot connect" in _read(out)[0]["fallback_reason"]


def test_resume_drops_a_damaged_middle_line_and_keeps_the_rest(csv_input, tmp_path, capsys):
    out = tmp_path / "findings.jsonl"
    main(["structure", str(csv_input), str(out), "--quiet"])
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + '{"id": "s2", "findings": [tor\n' + lines[2])
    capsys.readouterr()
    assert completed_ids(out) == {"s1", "s3"}
    assert "findings.jsonl: dropped 1 damaged line(s) (line 2)" in capsys.readouterr().err
    assert out.read_text() == lines[0] + lines[2]
    main(["structure", str(csv_input), str(out), "--quiet"])
    assert sorted(r["id"] for r in _read(out)) == ["s1", "s2", "s3"]


def test_sections_option_structures_findings_and_impression(tmp_path):
    src = tmp_path / "r.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "FINDINGS: Mild cardiomegaly. IMPRESSION: Left lower lobe pneumonia."}) + "\n")
    out = tmp_path / "o.jsonl"
    main(["structure", str(src), str(out), "--quiet", "--sections", "findings+impression"])
    (record,) = _read(out)
    assert record["section_name"] == "findings+impression"
    assert [f["lesion_type"] for f in record["findings"]] == ["cardiomegaly", "pneumonia"]
