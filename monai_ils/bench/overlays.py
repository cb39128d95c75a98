"""What overlays cost the generation runner (issue target: overlays on <= 25 % over off).

``python -m monai_ils.bench overlays [--studies 200] [--max-size 1024] [--all-cores] [--workers N]``: builds N studies
from the bundled sample (the real RG1_UNCR.dcm with varied reports), runs report structuring, cues,
grounding, verification, pairs, mask/overlay writing and the final merge, and prints studies per second
and memory: the resident set after the first quarter of the studies and at the end, so a leak (memory
growing with the number of studies) shows as a difference between the two. With ``--workers N`` the
runner spreads the studies over N worker processes (start-up included in the time) and the peak memory
of the largest worker is printed instead. Every run measures the same studies twice, overlays on and off (the
order alternates nothing else), and prints the overlays' cost as a ratio of the two rates.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from monai_ils.bench.common import machine, peak_rss_mib
from monai_ils.bench.generation import add_run_arguments, current_rss_mib


def sample_thresholds() -> dict:
    """The sample bundle's thresholds (``sample_thresholds`` of generation.json), under which the sample's
    opacities are grounded: the overlays then have masks to draw."""
    import json

    config = Path(__file__).resolve().parents[2] / "bundles" / "ils_generation" / "configs" / "generation.json"
    return json.loads(config.read_text())["sample_thresholds"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    parallel = args.workers > 1
    args.all_cores = args.all_cores or parallel
    if not args.all_cores:
        from monai_ils.bench.common import pin_to_one_core

        pin_to_one_core()

    from monai_ils.data.mimic_cxr import CSVStudyIndex
    from monai_ils.data.sample_studies import sample_study_csv
    from monai_ils.generation.pairs import PairGenerator
    from monai_ils.generation.pipeline import GroundingPipeline, default_finding_transforms, default_study_transforms
    from monai_ils.generation.processor import PairsProcessor
    from monai_ils.generation.qc import StudyQC
    from monai_ils.generation.runner import GenerationRunner

    work = Path(tempfile.mkdtemp(prefix="ils_bench_"))
    output = Path(args.output) if args.output else work / "dataset"
    try:
        records = CSVStudyIndex(sample_study_csv(work / "input", args.studies))
        start_build = time.perf_counter()
        pipeline = GroundingPipeline(study_transforms=default_study_transforms(max_size=args.max_size),
                                     finding_transforms=default_finding_transforms(sample_thresholds()))
        build = time.perf_counter() - start_build
        marks = {}
        quarter = max(1, args.studies // 4)
        rates = {}
        for overlays in (False, True):  # the measured run (overlays on, the bundle's default) comes last
            processor = PairsProcessor(pipeline, PairGenerator(seed=0), StudyQC(require_view=False), overlays=overlays)
            done = {"n": 0}

            def measured(record, processor=processor, done=done):
                result = processor(record)
                done["n"] += 1
                if done["n"] in (quarter, args.studies):
                    marks[done["n"]] = current_rss_mib()
                return result

            # workers get their own copy of the processor, so the in-process memory marks apply to one process only
            runner = GenerationRunner(output, processor if parallel else measured, shard_size=args.shard_size, progress=False,
                                      overwrite=True, overlays=overlays, settings={"bench": args.max_size, "overlays": overlays},
                                      num_workers=args.workers)
            start = time.perf_counter()
            summary = runner.run(records)
            elapsed = time.perf_counter() - start
            rates[overlays] = args.studies / elapsed
    finally:
        if not args.output:
            shutil.rmtree(work, ignore_errors=True)
    cores = f"{args.workers} worker processes" if parallel else "all cores" if args.all_cores else "one core"
    print(f"generation runner, {args.studies} studies from RG1_UNCR.dcm (1955x1841), classical backends, cues at {args.max_size} px, {cores}")
    print(f"  {summary.ok} ok, {summary.skipped} skipped, {summary.errors} failed; {summary.pairs} pairs")
    print(f"  overlays on: {rates[True]:.2f} studies/s ({elapsed:.1f} s incl. merge; backend set-up {build:.1f} s)")
    print(f"  overlays off: {rates[False]:.2f} studies/s; overlays cost {rates[False] / rates[True] - 1:+.1%} time "
          f"(target <= +25%), {summary.positive_pairs} positive pairs")
    if parallel:
        import resource

        worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"  peak resident memory: largest worker {worker_peak:.0f} MiB, main process {peak_rss_mib():.0f} MiB")
    else:
        print(f"  resident memory after {quarter} studies: {marks.get(quarter, float('nan')):.0f} MiB, after {args.studies}: "
              f"{marks.get(args.studies, float('nan')):.0f} MiB; peak {peak_rss_mib():.0f} MiB")
    print(f"  machine: {machine()}")
    return 0
