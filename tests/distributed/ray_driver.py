"""A generation driver on the test's Ray cluster, for the kill/interrupt tests.

usage: python ray_driver.py CSV OUT RAY_ADDRESS [SIGNAL KEY]
With SIGNAL (KILL or INT) and KEY, the actor that processes study KEY sends that signal to this driver (a
driver killed, or Ctrl-C pressed, while studies are in flight on the cluster).
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
from monai_ils.generation.ray_executor import RayExecutor  # noqa: E402
from monai_ils.generation.runner import GenerationRunner  # noqa: E402


class SignalsDriver:
    def __init__(self, key, signum, driver_pid):
        self.key, self.signum, self.driver_pid = key, signum, driver_pid
        self.processor = PairsProcessor(toy_grounder, PairGenerator(seed=5))

    def __call__(self, record):
        if record.key == self.key:
            os.kill(self.driver_pid, self.signum)
        return self.processor(record)


def main():
    csv_path, out, address = sys.argv[1:4]
    processor = PairsProcessor(toy_grounder, PairGenerator(seed=5))
    if len(sys.argv) > 4:
        processor = SignalsDriver(sys.argv[5], getattr(signal, "SIG" + sys.argv[4]), os.getpid())
    runner = GenerationRunner(out, processor, shard_size=4, settings={"seed": 5}, progress=False,
                              executor=RayExecutor(address=address, concurrency=2))
    summary = runner.run(CSVStudyIndex(csv_path))
    print("processed_now", summary.processed_now)


if __name__ == "__main__":
    main()
