"""Rule-based report structuring throughput on one core: ``python -m monai_ils.bench report``.

Builds synthetic MIMIC-style reports (header sections + 4-8 sentences drawn from the test corpus with a
fixed seed), runs ``structure_report`` on each (section selection, sentence split, lexicon, ConText,
linking, location mapping) and prints reports per CPU-second. Target: >= 300 reports per CPU-second.

``--baseline DIR`` also times the same reports with the ``monai_ils`` of another checkout (say, a
``git worktree`` of main before a change) in a child process pinned to the same core, and prints the
ratio, so that a change in the rules is measured against the code it replaces in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "report" / "corpus.jsonl"
FALLBACK_SENTENCES = (
    "Bibasilar opacities, likely atelectasis.", "No pleural effusion or pneumothorax.", "Stable mild cardiomegaly.",
    "Right lower lobe consolidation concerning for pneumonia.", "Endotracheal tube terminates 4 cm above the carina.",
    "Mild pulmonary edema has improved.", "Small left pleural effusion cannot be excluded.",
)
# run in the baseline checkout: time structure_report over the reports in argv[1], print {"cpu", "wall", "findings"}
_CHILD = """
import json, sys, time
from monai_ils.report import RuleBasedStructurer, structure_report
reports = json.load(open(sys.argv[1], encoding="utf-8"))
structurer = RuleBasedStructurer()
for text in reports[:20]:
    structure_report(text, structurer)
wall, cpu, n = time.perf_counter(), time.process_time(), 0
for text in reports:
    n += len(structure_report(text, structurer).findings)
print(json.dumps({"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall, "findings": n}))
"""


def synthetic_reports(n: int, seed: int = 0) -> list[str]:
    sentences = list(FALLBACK_SENTENCES)
    if CORPUS.is_file():
        sentences = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    reports = []
    for _ in range(n):
        body = " ".join(rng.sample(sentences, rng.randint(4, 8)))
        reports.append(
            "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n \n INDICATION:  ___ with cough\n \n"
            f" COMPARISON:  ___\n \n FINDINGS: \n \n {body}\n \n IMPRESSION: \n \n No acute process.\n"
        )
    return reports


def _time_here(reports: list[str]) -> dict:
    from monai_ils.report import RuleBasedStructurer, structure_report

    structurer = RuleBasedStructurer()
    for text in reports[:20]:  # warm-up
        structure_report(text, structurer)
    start, cpu_start, n = time.perf_counter(), time.process_time(), 0
    for text in reports:
        n += len(structure_report(text, structurer).findings)
    return {"cpu": time.process_time() - cpu_start, "wall": time.perf_counter() - start, "findings": n}


def _time_baseline(reports: list[str], checkout: Path) -> dict:
    if not (checkout / "monai_ils" / "report").is_dir():
        raise SystemExit(f"--baseline: {checkout.name} has no monai_ils/report package (give the checkout's root)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reports.json"
        path.write_text(json.dumps(reports), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
        # cwd: with ``-c`` the working folder comes first on sys.path, and it may hold this checkout's monai_ils
        done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], env=env, cwd=tmp, capture_output=True, text=True,
                              timeout=3600, check=False)  # the child inherits this process's core pinning
    if done.returncode != 0:
        raise SystemExit(f"--baseline: the baseline run failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_ils.bench report", description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="root of another checkout whose monai_ils is timed on the same reports (before/after)")
    args = parser.parse_args(argv)
    pinned = not args.all_cores and hasattr(os, "sched_setaffinity")
    if pinned:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    reports = synthetic_reports(args.reports)
    before = _time_baseline(reports, args.baseline) if args.baseline is not None else None
    after = _time_here(reports)
    cores = "1 core (pinned)" if pinned else f"{os.cpu_count()} cores"
    machine = (f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, load average "
               f"{os.getloadavg()[0]:.1f}")
    # CPU time is what one core spends; wall time also counts waiting for a shared machine's cores
    rate = len(reports) / after["cpu"]
    print(f"rule-based report structuring: {rate:.1f} reports per CPU-second "
          f"({len(reports) / after['wall']:.1f} reports/s wall) on {cores}; {len(reports)} reports, "
          f"{after['findings']} findings; {machine}")
    if before is not None:
        base = len(reports) / before["cpu"]
        print(f"baseline ({args.baseline.name}): {base:.1f} reports per CPU-second "
              f"({len(reports) / before['wall']:.1f} reports/s wall), {before['findings']} findings; "
              f"this checkout / baseline = {rate / base:.2f}x")
    print(f"target >= 300 reports per CPU-second: {'met' if rate >= 300 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
