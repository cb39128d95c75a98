"""Throughput and memory of the whole generation runner with classical backends.

``python -m monai_ils.bench generation [--studies 200] [--max-size 1024] [--all-cores] [--workers N]``: builds N studies
from the bundled sample (the real RG1_UNCR.dcm with varied reports), runs report structuring, cues,
grounding, verification, pairs, mask/overlay writing and the final merge, and prints studies per second
and memory: the resident set after the first quarter of the studies and at the end, so a leak (memory
growing with the number of studies) shows as a difference between the two. With ``--workers N`` the
runner spreads the studies over N worker processes (start-up included in the time) and the peak memory
of the largest worker is printed instead; the processor is a :class:`LazyProcessor`, built in the workers only.

``--executor ray --workers N`` measures, in one run, the local pool and Ray actors with 1 and with N workers
(each run in a fresh process, so memory figures do not mix; one worker has one core: the local process
pinned, the Ray actor given one CPU), alternating local and Ray ``--repeats`` times and taking medians:
studies/s with and without start-up (the clock starts before the input is indexed, for both; Ray connects in
the background meanwhile), the peak memory of every worker (each writes its own after each study) and of the
driver, the scaling from 1 to N workers, Ray's throughput as a share of the local pool's (median of the ratios
of each Ray run to the local run before it; the target: Ray's overhead within 15 %), Ray's time split
(``ray.init``, actors ready, first study, first and last result, shutdown; the actors' busy share) and the load
average before and after each run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from monai_ils.bench.common import machine, peak_rss_mib
from monai_ils.generation.executors import executor_for
from monai_ils.generation.runner import GenerationRunner


def current_rss_mib() -> float:
    """Resident memory now (Linux /proc), in MiB."""
    import os

    with open("/proc/self/statm") as stream:
        pages = int(stream.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_processor(max_size: int):
    """The benchmark's processor: classical backends, rule-based structurer, seed 0."""
    from monai_ils.generation.pairs import PairGenerator
    from monai_ils.generation.pipeline import GroundingPipeline, default_study_transforms
    from monai_ils.generation.processor import PairsProcessor
    from monai_ils.generation.qc import StudyQC

    return PairsProcessor(GroundingPipeline(study_transforms=default_study_transforms(max_size=max_size)), PairGenerator(seed=0), StudyQC(require_view=False))


class _Timed:
    """An executor wrapper that notes when the first study line is ready: from then on is the rate after start-up."""

    def __init__(self, executor):
        self.executor, self.first_line_at = executor, None

    def map(self, task, items):
        for result in self.executor.map(task, items):
            if self.first_line_at is None:
                self.first_line_at = time.perf_counter()
            yield result


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every generation-runner benchmark takes (this one and ``bench overlays``)."""
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--max-size", type=int, default=1024, help="longer side the cues and grounding run at")
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--output", default=None, help="keep the dataset here (default: a temporary folder)")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (implies --all-cores when > 1)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--executor", default="local", choices=("local", "ray"),
                        help="ray: compare Ray actors with the local pool at 1 and --workers workers")
    parser.add_argument("--repeats", type=int, default=1, help="with --executor ray: alternating runs per configuration (medians)")
    parser.add_argument("--json", default=None, help="with --executor ray: also write every run's figures and the medians here")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # one configuration, JSON out
    return parser


class _ReportsPeak:
    """The benchmark's processor in a worker: after each study it writes this process's peak resident memory to
    ``folder/<pid>.json``, so the peak of every worker (pool process or Ray actor) is known after the run."""

    def __init__(self, folder: str, max_size: int):
        self.folder, self.processor = folder, build_processor(max_size)

    def __call__(self, record):
        import os

        try:
            return self.processor(record)
        finally:
            path = os.path.join(self.folder, f"{os.getpid()}.json")
            with open(path + ".tmp", "w") as stream:
                json.dump({"pid": os.getpid(), "peak_rss_mib": peak_rss_mib()}, stream)
            os.replace(path + ".tmp", path)


def run_one(args) -> dict:
    """One configuration in this process; returns its figures.

    The clock starts before the input is indexed, for every executor: Ray connects in the background meanwhile
    (``RayExecutor.start``), as a run of the bundle does while it indexes MIMIC-CXR.
    """
    parallel = args.workers > 1 or args.executor == "ray"
    if not (args.all_cores or parallel):
        from monai_ils.bench.common import pin_to_one_core

        pin_to_one_core()
    from monai_ils.data.mimic_cxr import CSVStudyIndex
    from monai_ils.data.sample_studies import sample_study_csv
    from monai_ils.generation.lazy import LazyProcessor

    work = Path(tempfile.mkdtemp(prefix="ils_bench_"))
    output = Path(args.output) if args.output else work / "dataset"
    peaks = work / "peaks"
    peaks.mkdir()
    figures: dict = {"executor": args.executor, "workers": max(1, args.workers), "studies": args.studies}
    try:
        start = time.perf_counter()
        inner = None
        if args.executor == "ray":
            from monai_ils.generation.ray_executor import RayExecutor

            inner = RayExecutor(concurrency=max(1, args.workers)).start()  # connects while the input is indexed
        records = CSVStudyIndex(sample_study_csv(work / "input", args.studies))
        indexed = time.perf_counter()
        marks, quarter, done = {}, max(1, args.studies // 4), {"n": 0}
        if parallel:
            processor, build = LazyProcessor(_ReportsPeak, str(peaks), args.max_size), 0.0
        else:
            start_build = time.perf_counter()
            built = build_processor(args.max_size)
            build = time.perf_counter() - start_build

            def processor(record):
                result = built(record)
                done["n"] += 1
                if done["n"] in (quarter, args.studies):
                    marks[done["n"]] = current_rss_mib()
                return result

        executor = _Timed(inner if inner is not None else executor_for(args.workers))
        runner = GenerationRunner(output, processor, shard_size=args.shard_size, progress=False, overwrite=True,
                                  settings={"bench": args.max_size}, executor=executor)
        run_start = time.perf_counter()
        summary = runner.run(records)
        end = time.perf_counter()
        worker_peaks = sorted(json.loads(p.read_text())["peak_rss_mib"] for p in peaks.glob("*.json"))
    finally:
        if not args.output:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = end - start
    first = executor.first_line_at or end
    steady = (args.studies - 1) / max(1e-9, end - first) if args.studies > 1 else float("nan")
    figures.update(ok=summary.ok, skipped=summary.skipped, errors=summary.errors, pairs=summary.pairs, seconds=elapsed,
                   studies_per_s=args.studies / elapsed, steady_studies_per_s=steady, build_s=build, driver_peak_mib=peak_rss_mib(),
                   index_s=indexed - start, first_line_s=first - start, run_s=end - run_start)
    if parallel:
        figures["worker_peaks_mib"] = worker_peaks
        figures["worker_peak_mib"] = max(worker_peaks) if worker_peaks else float("nan")
    else:
        figures["worker_peak_mib"] = peak_rss_mib()  # this process is the worker
        figures["rss_quarter_mib"], figures["rss_end_mib"] = marks.get(quarter, float("nan")), marks.get(args.studies, float("nan"))
        figures["quarter"] = quarter
    if inner is not None:
        timing = dict(inner.last_run.get("timing", {}))
        figures["ray_timing"] = timing
        figures["ray_actor_peaks_mib"] = inner.last_run.get("worker_peak_rss_mib")
    return figures


def _print_one(args, f: dict) -> None:
    parallel = args.workers > 1
    cores = f"{args.workers} worker processes" if parallel else "all cores" if args.all_cores else "one core"
    print(f"generation runner, {args.studies} studies from RG1_UNCR.dcm (1955x1841), classical backends, cues at {args.max_size} px, {cores}")
    print(f"  {f['ok']} ok, {f['skipped']} skipped, {f['errors']} failed; {f['pairs']} pairs")
    print(f"  {f['studies_per_s']:.2f} studies/s ({f['seconds']:.1f} s incl. merge; backend set-up {f['build_s']:.1f} s)")
    if parallel:
        print(f"  peak resident memory: largest worker {f['worker_peak_mib']:.0f} MiB, main process {f['driver_peak_mib']:.0f} MiB "
              f"(the processor is built in the workers only)")
    else:
        print(f"  resident memory after {f['quarter']} studies: {f['rss_quarter_mib']:.0f} MiB, after {args.studies}: "
              f"{f['rss_end_mib']:.0f} MiB; peak {f['driver_peak_mib']:.0f} MiB")
    print(f"  machine: {machine()}")


def _median(values):
    import statistics

    values = [v for v in values if v == v]  # not NaN
    return statistics.median(values) if values else float("nan")


def _load() -> str:
    with open("/proc/loadavg") as stream:
        return " ".join(stream.read().split()[:3])


def compare(args) -> dict:
    """Local pool and Ray at 1 and N workers, alternating (local, ray, local, ray, ...) ``--repeats`` times, each
    run in a fresh process; medians."""
    n = max(2, args.workers)
    runs: dict = {}
    loads = [_load()]
    for workers in (1, n):
        for _ in range(max(1, args.repeats)):
            for executor in ("local", "ray"):
                command = [sys.executable, "-m", "monai_ils.bench", "generation", "--one", "--executor", executor, "--workers",
                           str(workers if executor == "ray" or workers > 1 else 0), "--studies", str(args.studies),
                           "--max-size", str(args.max_size), "--shard-size", str(args.shard_size)]
                if executor == "ray" or workers > 1:  # one local worker is this process pinned to one core, as a Ray actor gets one CPU
                    command.append("--all-cores")
                done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
                if done.returncode != 0:
                    raise RuntimeError(f"{executor} with {workers} worker(s) failed:\n{done.stderr[-3000:]}")
                runs.setdefault((executor, workers), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
                loads.append(_load())
    results = {key: {field: _median([r[field] for r in rs]) for field in ("studies_per_s", "steady_studies_per_s", "seconds",
                                                                           "first_line_s", "worker_peak_mib", "driver_peak_mib")}
               for key, rs in runs.items()}
    print(f"generation runner, {args.studies} studies from RG1_UNCR.dcm, classical backends, cues at {args.max_size} px: "
          f"local pool vs Ray actors (local Ray on this machine), indexing and start-up included; "
          f"median of {max(1, args.repeats)} alternating run(s)")
    print(f"  {'executor':8} {'workers':>7} {'studies/s':>10} {'after start-up':>15} {'first line s':>13} {'worker peaks MiB':>22} {'driver peak MiB':>16}")
    for (executor, workers), f in results.items():
        last = runs[(executor, workers)][-1]
        peaks = "/".join(f"{p:.0f}" for p in last.get("worker_peaks_mib") or [last["worker_peak_mib"]])
        print(f"  {executor:8} {workers:>7} {f['studies_per_s']:>10.2f} {f['steady_studies_per_s']:>15.2f} {f['first_line_s']:>13.1f} "
              f"{peaks:>22} {f['driver_peak_mib']:>16.0f}")
    figures: dict = {"runs": {f"{e}_{w}": rs for (e, w), rs in runs.items()}, "load": loads}
    for executor in ("local", "ray"):
        figures[f"{executor}_scaling"] = results[(executor, n)]["studies_per_s"] / results[(executor, 1)]["studies_per_s"]
        figures[f"{executor}_scaling_steady"] = results[(executor, n)]["steady_studies_per_s"] / results[(executor, 1)]["steady_studies_per_s"]
        print(f"  {executor}: {figures[executor + '_scaling']:.2f}x from 1 to {n} workers ({figures[executor + '_scaling_steady']:.2f}x after start-up)")
    pairs = list(zip(runs[("local", n)], runs[("ray", n)]))  # each Ray run against the local run just before it
    figures["ray_vs_local"] = _median([r["studies_per_s"] / l["studies_per_s"] for l, r in pairs])
    figures["ray_vs_local_steady"] = _median([r["steady_studies_per_s"] / l["steady_studies_per_s"] for l, r in pairs])
    overhead = 1 - figures["ray_vs_local"]
    print(f"  Ray / local pool at {n} workers (median of paired runs): {figures['ray_vs_local']:.2f} (overhead {100 * overhead:.0f} %, "
          f"target <= 15 %: {'met' if overhead <= 0.15 else 'NOT met'}); after start-up {figures['ray_vs_local_steady']:.2f}")
    split = {k: _median([r["ray_timing"].get(k) if r["ray_timing"].get(k) is not None else float("nan") for r in runs[("ray", n)]])
             for k in ("connect_s", "connected_s", "actors_ready_s", "first_study_s", "first_result_s", "results_done_s", "total_s", "busy_share")}
    index = _median([r["index_s"] for r in runs[("ray", n)]])
    figures["ray_split"] = dict(split, index_s=index)
    print(f"  Ray at {n} workers, seconds from the start (median): input indexed {index:.1f} (ray.init {split['connect_s']:.1f} "
          f"in the background meanwhile), connected {split['connected_s'] + index:.1f}, actors ready {split['actors_ready_s'] + index:.1f}, "
          f"first result {split['first_result_s'] + index:.1f} (first study on an actor {split['first_study_s']:.1f} s, processor "
          f"build included), last result {split['results_done_s'] + index:.1f}, Ray shut down {split['total_s'] + index:.1f}; "
          f"actors busy {100 * split['busy_share']:.0f} % of the time from ready to the last result")
    local_first = _median([r["first_line_s"] for r in runs[("local", n)]])
    print(f"  local pool at {n} workers: first result at {local_first:.1f} s (input indexed {_median([r['index_s'] for r in runs[('local', n)]]):.1f})")
    print(f"  load average (1, 5, 15 min) before and after each run: {'; '.join(loads)}")
    print(f"  machine: {machine()}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str))
    return figures


def main(argv=None) -> int | dict:
    args = _parser().parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args)))
        return 0
    if args.executor == "ray":
        return compare(args)
    args.all_cores = args.all_cores or args.workers > 1
    _print_one(args, run_one(args))
    return 0
