"""An OS lock on the output folder, so two runs never write into one dataset.

The lock is ``fcntl.flock`` on ``<output>/.lock``: the kernel releases it when the holder exits or dies,
so a killed run never leaves a stale lock. The holder writes its PID into the file (emptied on a clean
release), and a second run refuses at once naming that process.
"""

from __future__ import annotations

import os
from pathlib import Path

LOCK_NAME = ".lock"


class OutputLockedError(RuntimeError):
    """Another process is writing into this output folder."""


class FolderLock:
    """``with FolderLock(folder):`` holds the folder's lock or raises :class:`OutputLockedError`."""

    def __init__(self, folder):
        self.path = Path(folder) / LOCK_NAME
        self._stream = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        stream = open(self.path, "a+")
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.seek(0)
            holder = stream.read().strip() or "unknown"
            stream.close()
            raise OutputLockedError(
                f"output folder {self.path.parent.name!r} is in use by another generation run (process {holder}); "
                f"wait for it to finish, stop it, or use another output folder."
            ) from None
        stream.seek(0)
        stream.truncate()
        stream.write(str(os.getpid()))
        stream.flush()
        self._stream = stream

    def release(self) -> None:
        if self._stream is None:
            return
        import fcntl

        self._stream.seek(0)
        self._stream.truncate()  # a clean release leaves an empty file: the folder's bytes do not depend on a PID
        self._stream.flush()
        fcntl.flock(self._stream.fileno(), fcntl.LOCK_UN)
        self._stream.close()
        self._stream = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
