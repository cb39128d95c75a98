"""The benchmark dispatcher: exit statuses that a shell script can rely on."""

import subprocess
import sys

from monai_ils.bench.__main__ import main


def test_unknown_benchmark_prints_usage_and_returns_2(capsys):
    assert main(["no-such-benchmark"]) == 2
    assert "usage: python -m monai_ils.bench" in capsys.readouterr().err


def test_benchmark_process_exits_zero():
    done = subprocess.run(
        [sys.executable, "-m", "monai_ils.bench", "grounding", "--size", "128", "--boxes", "3", "--repeats", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "median" in done.stdout


def test_dict_result_maps_to_status_zero(monkeypatch):
    # Some benchmarks return their figures as a dict; sys.exit(dict) would print it and exit 1.
    import monai_ils.bench.grounding as grounding

    monkeypatch.setattr(grounding, "main", lambda argv: {"samples_per_s": 1.0})
    assert main(["grounding"]) == 0
