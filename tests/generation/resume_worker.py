"""Subprocess for the kill-and-resume test: run the generator, SIGKILL ourselves after k studies.

usage: python resume_worker.py CSV OUT SHARD_SIZE KILL_AFTER(-1 = never) [NUM_WORKERS]
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.generation.gen_fixtures import toy_grounder  # noqa: E402

from monai_ils.data.mimic_cxr import CSVStudyIndex  # noqa: E402
from monai_ils.generation.pairs import PairGenerator  # noqa: E402
from monai_ils.generation.processor import PairsProcessor  # noqa: E402
from monai_ils.generation.runner import GenerationRunner  # noqa: E402


def main():
    csv_path, out, shard_size, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    num_workers = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    processor = PairsProcessor(toy_grounder, PairGenerator(seed=5))
    calls = {"n": 0}

    def killing(record):
        if calls["n"] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: a hard crash
        calls["n"] += 1
        return processor(record)

    # the killing wrapper is a closure and cannot go to worker processes: only a run that is not killed uses them
    runner = GenerationRunner(out, killing if kill_after >= 0 else processor, shard_size=shard_size, settings={"seed": 5},
                              progress=False, num_workers=num_workers)
    summary = runner.run(CSVStudyIndex(csv_path))
    print("processed_now", summary.processed_now)


if __name__ == "__main__":
    main()
