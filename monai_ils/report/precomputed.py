"""A structurer that reads findings structured earlier (``python -m monai_ils.report structure``) from JSONL.

Structuring all reports first and grounding afterwards (the paper's order) lets GPU cue workers run without
waiting on an LLM, and lets one LLM run serve many grounding reruns. The findings file is looked up by the
*content* of the report section, not by an id: the key is the section name and its sentences joined by one
space, which is exactly what both the rule-based and the LLM structurer store (``section_text``). So any id
scheme of the structuring run works, and a report edited since then is reported as missing instead of
silently getting another report's findings.

The index is two sorted numpy arrays (a 64-bit hash and a file offset per line: ~16 bytes a report, ~4 MB for
MIMIC-CXR's 227K reports); a lookup reads one line from the file and checks its text, so a hash collision can
never hand out the wrong findings. The index is built on first use in each process and is not pickled: a worker
receives only the path.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from monai_ils.report.finding import StructuredReport
from monai_ils.report.sections import split_sentences

__all__ = ["PrecomputedStructurer", "MissingFindingsError", "section_key"]


class MissingFindingsError(KeyError):
    """The findings file has no entry for a report section (the message names the file, never the text)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def section_key(section_name: str | None, sentences: list[str]) -> int:
    """64-bit content key of a section: its name and its sentences joined by a space."""
    text = f"{section_name or ''}\x1f{' '.join(sentences)}"
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


class PrecomputedStructurer:
    """``structure(section_text, section_name)`` answered from a findings JSONL file.

    Args:
        path: the output of ``python -m monai_ils.report structure`` (one line per report: ``id`` and the
            ``StructuredReport`` fields, or ``id``/``error``/``error_type`` for a report that failed there).
        fallback: a structurer for sections the file does not have (default None: such a study fails in the
            ``structure`` stage with a message saying so, and the run goes on).
    """

    name = "precomputed"

    def __init__(self, path: str | os.PathLike, fallback=None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"PrecomputedStructurer: findings file not found: {self.path}")
        if fallback is not None and not hasattr(fallback, "structure"):
            raise TypeError(f"fallback must have structure(section_text, section_name), got {type(fallback).__name__}.")
        self.fallback = fallback
        self._keys: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._failed = 0
        self._stream = None

    def __repr__(self) -> str:
        return f"PrecomputedStructurer({self.path.name!r})"

    def __getstate__(self) -> dict:
        return {"path": self.path, "fallback": self.fallback}  # each process builds its own index

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["fallback"])

    def __call__(self, section_text: str, section_name: str | None = None) -> StructuredReport:
        return self.structure(section_text, section_name)

    # ------------------------------------------------------------------------------------------
    def _build_index(self) -> None:
        keys, offsets, failed = [], [], 0
        with self.path.open("rb") as stream:
            offset = 0
            for number, raw in enumerate(stream, 1):
                start, offset = offset, offset + len(raw)
                if not raw.strip():
                    continue
                if not raw.endswith(b"\n"):
                    break  # a torn last line of an interrupted structuring run
                try:
                    record = json.loads(raw)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{self.path}:{number}: damaged findings line ({err.msg}).") from None
                if "error" in record:
                    failed += 1
                    continue
                if record.get("skipped_reason") is not None or "sentences" not in record:
                    continue  # a skipped report never reaches a structurer
                keys.append(section_key(record.get("section_name"), list(record["sentences"])))
                offsets.append(start)
        keys_array = np.asarray(keys, dtype=np.uint64)
        order = np.argsort(keys_array, kind="stable")  # the first line of a duplicated section wins
        self._keys, self._offsets = keys_array[order], np.asarray(offsets, dtype=np.int64)[order]
        self._failed = failed

    def __bool__(self) -> bool:  # an empty file is still a structurer (``structurer or default`` must keep it)
        return True

    def __len__(self) -> int:
        if self._keys is None:
            self._build_index()
        return int(self._keys.size)

    def _read(self, offset: int) -> dict:
        if self._stream is None:
            self._stream = self.path.open("rb")
        self._stream.seek(int(offset))
        return json.loads(self._stream.readline())

    def structure(self, section_text: str, section_name: str | None = None) -> StructuredReport:
        if self._keys is None:
            self._build_index()
        sentences = split_sentences(section_text)
        key = np.uint64(section_key(section_name, sentences))
        at = int(np.searchsorted(self._keys, key))
        while at < self._keys.size and self._keys[at] == key:
            record = self._read(self._offsets[at])
            if record.get("sentences") == sentences and record.get("section_name") == section_name:
                record.pop("id", None)
                return StructuredReport.from_dict(record)
            at += 1
        if self.fallback is not None:
            return self.fallback.structure(section_text, section_name)
        failed = f"; {self._failed} report(s) failed there (rerun it with --retry-errors)" if self._failed else ""
        raise MissingFindingsError(
            f"no precomputed findings for this report's {section_name or 'section'} in {self.path.name} "
            f"({self._keys.size} structured sections{failed}); structure this input with "
            f"`python -m monai_ils.report structure` again (the report may have changed since)."
        )
