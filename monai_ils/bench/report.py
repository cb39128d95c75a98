"""Rule-based report structuring throughput on one core: ``python -m monai_ils.bench report``.

Builds synthetic MIMIC-style reports (header sections + 4-8 sentences drawn from the test corpus with a
fixed seed), runs ``structure_report`` on each (section selection, sentence split, lexicon, ConText,
linking, location mapping) and prints reports/s. Target: >= 200 reports/s per core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "report" / "corpus.jsonl"
FALLBACK_SENTENCES = (
    "Bibasilar opacities, likely atelectasis.", "No pleural effusion or pneumothorax.", "Stable mild cardiomegaly.",
    "Right lower lobe consolidation concerning for pneumonia.", "Endotracheal tube terminates 4 cm above the carina.",
    "Mild pulmonary edema has improved.", "Small left pleural effusion cannot be excluded.",
)


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_ils.bench report", description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    args = parser.parse_args(argv)
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from monai_ils.report import RuleBasedStructurer, structure_report

    structurer = RuleBasedStructurer()
    reports = synthetic_reports(args.reports)
    for text in reports[:20]:  # warm-up
        structure_report(text, structurer)
    start, cpu_start = time.perf_counter(), time.process_time()
    n_findings = 0
    for text in reports:
        n_findings += len(structure_report(text, structurer).findings)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    cores = "1 core (pinned)" if not args.all_cores and hasattr(os, "sched_setaffinity") else f"{os.cpu_count()} cores"
    # CPU time is what one core spends; wall time also counts waiting for a shared machine's cores
    print(f"rule-based report structuring: {len(reports) / cpu:.1f} reports per CPU-second "
          f"({len(reports) / elapsed:.1f} reports/s wall) on {cores}; {len(reports)} reports, {n_findings} findings; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, load average "
          f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
