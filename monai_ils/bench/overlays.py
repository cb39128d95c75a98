"""What overlays cost the generation runner (issue 12.7 target: overlays on <= 25 % over off).

``python -m monai_ils.bench overlays [--studies 24] [--repeats 3] [--reports sample|varied] [--overlay-size 512]
[--max-size 1024] [--all-cores] [--workers N]``: builds N studies from the bundled sample (the real RG1_UNCR.dcm),
runs the whole generation runner (report structuring, cues, grounding, verification, pairs, mask/overlay
writing, merge) with overlays off and on, and prints studies per second for each and the overlays' cost.
``--reports sample`` (default) gives every study the sample bundle's own report, whose four opacities are
grounded under the sample thresholds: four positive masks, so four overlays, per study; ``varied`` cycles the
benchmark reports (about 1.4 masks per study). One backend set-up serves every run; the runs alternate,
off/on, on/off, ... ``--repeats`` times, and the medians are compared, so a change of machine load biases
neither side. Returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from monai_ils.bench.common import machine, peak_rss_mib
from monai_ils.bench.generation import add_run_arguments, current_rss_mib

TARGET = 0.25  # overlays on may cost at most this much time over off


def sample_thresholds() -> dict:
    """The sample bundle's thresholds (``sample_thresholds`` of generation.json), under which the sample's
    opacities are grounded: the overlays then have masks to draw."""
    import json

    config = Path(__file__).resolve().parents[2] / "bundles" / "ils_generation" / "configs" / "generation.json"
    return json.loads(config.read_text())["sample_thresholds"]


def run_order(repeats: int) -> list[bool]:
    """Overlays off/on for each run: pairs alternating in order (off, on), (on, off), ... ``repeats`` of each."""
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}.")
    order = []
    for i in range(repeats):
        order += [False, True] if i % 2 == 0 else [True, False]
    return order


def main(argv=None) -> dict:
    from monai_ils.generation.overlay import OVERLAY_SIZE

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3, help="runs with overlays on and off each (alternating)")
    parser.add_argument("--reports", choices=("sample", "varied"), default="sample",
                        help="sample: every study has the sample report (4 masks per study); varied: the benchmark's report mix")
    parser.add_argument("--overlay-size", type=int, default=OVERLAY_SIZE, help="longer side of the overlays (0: full size)")
    parser.set_defaults(studies=24)
    args = parser.parse_args(argv)
    order = run_order(args.repeats)
    parallel = args.workers > 1
    args.all_cores = args.all_cores or parallel
    if not args.all_cores:
        from monai_ils.bench.common import pin_to_one_core

        pin_to_one_core()

    from monai_ils.data.mimic_cxr import CSVStudyIndex
    from monai_ils.data.sample_studies import VARIED_REPORTS, sample_study_csv
    from monai_ils.generation.pairs import PairGenerator
    from monai_ils.generation.pipeline import GroundingPipeline, default_finding_transforms, default_study_transforms
    from monai_ils.generation.processor import PairsProcessor
    from monai_ils.generation.qc import StudyQC
    from monai_ils.generation.runner import GenerationRunner

    work = Path(tempfile.mkdtemp(prefix="ils_bench_"))
    output = Path(args.output) if args.output else work / "dataset"  # one dataset per run under it
    overlay_size = args.overlay_size or None
    reports = () if args.reports == "sample" else VARIED_REPORTS
    try:
        records = CSVStudyIndex(sample_study_csv(work / "input", args.studies, reports=reports))
        start_build = time.perf_counter()
        pipeline = GroundingPipeline(study_transforms=default_study_transforms(max_size=args.max_size),
                                     finding_transforms=default_finding_transforms(sample_thresholds()))
        build = time.perf_counter() - start_build
        marks, quarter = {}, max(1, args.studies // 4)
        rates: dict[bool, list[float]] = {False: [], True: []}
        summaries = {}
        for run, overlays in enumerate(order):
            # a folder per run: the runner resumes a finished run of equal settings instead of redoing it
            folder = output / f"run{run}_{'on' if overlays else 'off'}"
            processor = PairsProcessor(pipeline, PairGenerator(seed=0), StudyQC(require_view=False), overlays=overlays,
                                       overlay_size=overlay_size)
            done = {"n": 0}

            def measured(record, processor=processor, done=done):
                result = processor(record)
                done["n"] += 1
                if done["n"] in (quarter, args.studies):
                    marks[done["n"]] = current_rss_mib()
                return result

            # workers get their own copy of the processor, so the in-process memory marks apply to one process only
            runner = GenerationRunner(folder, processor if parallel else measured, shard_size=args.shard_size, progress=False,
                                      overwrite=True, overlays=overlays, settings={"bench": args.max_size, "overlays": overlays},
                                      num_workers=args.workers)
            start = time.perf_counter()
            summaries[overlays] = runner.run(records)
            rates[overlays].append(args.studies / (time.perf_counter() - start))
            if not args.output:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.output:
            shutil.rmtree(work, ignore_errors=True)
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    cost = off / on - 1
    summary = summaries[True]
    cores = f"{args.workers} worker processes" if parallel else "all cores" if args.all_cores else "one core"
    size = f"{overlay_size} px" if overlay_size else "full size"
    print(f"generation runner, {args.studies} studies from RG1_UNCR.dcm (1955x1841), {args.reports} reports, classical backends, "
          f"cues at {args.max_size} px, overlays at {size}, {cores}; backend set-up {build:.1f} s (not timed)")
    print(f"  {summary.ok} ok, {summary.skipped} skipped, {summary.errors} failed; {summary.pairs} pairs, "
          f"{summary.positive_pairs} positive ({summary.positive_pairs / max(1, summary.ok):.1f} overlays per study)")
    print(f"  {len(order)} runs alternating off/on: " + ", ".join(f"{'on' if o else 'off'}" for o in order))
    print(f"  overlays off: {off:.2f} studies/s (median of {', '.join(f'{r:.2f}' for r in rates[False])})")
    print(f"  overlays on:  {on:.2f} studies/s (median of {', '.join(f'{r:.2f}' for r in rates[True])})")
    print(f"  overlays cost {cost:+.1%} time over off (off/on = {off / on:.3f}; target <= +{TARGET:.0%}: "
          f"{'met' if cost <= TARGET else 'NOT met'})")
    if parallel:
        import resource

        worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"  peak resident memory: largest worker {worker_peak:.0f} MiB, main process {peak_rss_mib():.0f} MiB")
    else:
        print(f"  resident memory after {quarter} studies: {marks.get(quarter, float('nan')):.0f} MiB, after {args.studies}: "
              f"{marks.get(args.studies, float('nan')):.0f} MiB (last run); peak {peak_rss_mib():.0f} MiB")
    print(f"  machine: {machine()}")
    return {"studies_per_s_on": on, "studies_per_s_off": off, "cost": cost, "runs_on": rates[True], "runs_off": rates[False],
            "overlays_per_study": summary.positive_pairs / max(1, summary.ok), "overlay_size": overlay_size}
