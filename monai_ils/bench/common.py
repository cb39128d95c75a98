"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import resource


def pin_to_one_core() -> None:
    """Run on a single core, with single-threaded OpenCV and torch, so figures are per core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, Python {platform.python_version()}"
