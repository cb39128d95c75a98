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
