"""Stopping the servers the tests start (MONAI Label, the viewer's server): by their own PID, bounded."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL and wait again, so no server outlives its test."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
