"""The resolved configuration of a generation run as JSON-able data, to fingerprint it and to say what changed.

A resumed run must be the run that wrote the finished shards: same pipeline, transforms and their parameters,
cue backends and their weights, structurer (and its model), pair generator, QC and processor options. Rather
than a hand-copied list of settings (which misses every knob not copied and, dumped with ``default=str``, prints
an object's memory address), :func:`describe` walks the processor's object graph itself:

* ``None``, bools, ints, floats and strings as they are (a non-finite float as its name); paths as strings;
* mappings and sequences recursed (a mapping's keys as strings, a set sorted); a container of more than
  :data:`MAX_ITEMS` items as its length and a digest of its description;
* a MONAI ``Compose`` as the list of its transforms;
* numpy / torch arrays as dtype and shape (plus a digest of the bytes when at most :data:`MAX_HASH_BYTES`),
  dtypes and devices as their names; a ``torch.nn.Module`` as its class and parameter count (the weights path
  it was loaded from is an attribute of the backend that holds it, described there);
* a function or class as ``module.qualname``;
* any other object as ``{"_target_": "module.qualname", <public instance attribute>: <description>, ...}``:
  attributes whose name starts with ``_`` are private state (caches, open files, built models) and skipped,
  attributes named like credentials (:data:`SECRET_WORDS`) are redacted; objects of runtime-machinery
  packages (:data:`OPAQUE_PACKAGES`: threads, loggers, HTTP sessions, spaCy pipelines) only by their class.

Never ``repr``, so never a memory address; cycle-safe (a repeat on the current path is ``{"_cycle_": class}``)
and bounded in depth (:data:`MAX_DEPTH`). :func:`diff` lists the paths at which two descriptions differ.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import PurePath

__all__ = ["describe", "diff", "digest", "format_diff", "MAX_DEPTH", "MAX_ITEMS"]

MAX_DEPTH = 16
MAX_ITEMS = 256
MAX_HASH_BYTES = 1 << 20
SECRET_WORDS = ("api_key", "apikey", "token", "secret", "password", "credential")
OPAQUE_PACKAGES = frozenset({
    "threading", "_thread", "logging", "socket", "ssl", "io", "_io", "queue", "asyncio", "concurrent", "multiprocessing",
    "subprocess", "requests", "httpx", "urllib3", "http", "aiohttp", "openai", "spacy", "medspacy", "ray", "tqdm",
    "weakref", "sqlite3", "mmap", "tempfile",
})


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', None) or type(obj).__module__}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _class_name(obj) -> str:
    return _qualname(type(obj))


def digest(description) -> str:
    """A short hash of a description (canonical JSON)."""
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


def describe(obj, max_depth: int = MAX_DEPTH):
    """``obj`` as deterministic JSON-able data (see the module docstring for the rules)."""
    return _describe(obj, max_depth, set())


def _describe(obj, depth: int, path: set):  # noqa: C901 - one dispatch over the kinds of values
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return f"{_class_name(obj)}.{obj.name}"
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, (PurePath, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (bytes, bytearray)):
        return {"_bytes_": len(obj), "sha256": hashlib.sha256(obj).hexdigest()[:16]}
    special = _special(obj)
    if special is not None:
        return special
    import functools
    import types

    if isinstance(obj, types.ModuleType):
        return {"_module_": obj.__name__}
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
        return {"_callable_": _qualname(obj)}
    if depth <= 0:
        return {"_target_": _class_name(obj), "_truncated_": True}
    if id(obj) in path:
        return {"_cycle_": _class_name(obj)}
    path = path | {id(obj)}
    if isinstance(obj, types.MethodType):  # a bound method: its function and the object it is bound to
        return {"_callable_": _qualname(obj), "self": _describe(obj.__self__, depth - 1, path)}
    if isinstance(obj, functools.partial):
        return {"_callable_": _describe(obj.func, depth - 1, path), "args": _describe(list(obj.args), depth - 1, path),
                "keywords": _describe(dict(obj.keywords), depth - 1, path)}
    if isinstance(obj, Mapping):
        items = sorted(((str(k), v) for k, v in obj.items()), key=lambda kv: kv[0])
        if len(items) > MAX_ITEMS:
            described = [[k, _describe(v, depth - 1, path)] for k, v in items]
            return {"_mapping_": len(items), "digest": digest(described)}
        return {k: _describe(v, depth - 1, path) for k, v in items}
    if isinstance(obj, (list, tuple, set, frozenset)):
        values = [_describe(v, depth - 1, path) for v in obj]
        if isinstance(obj, (set, frozenset)):
            values.sort(key=lambda v: json.dumps(v, sort_keys=True))
        if len(values) > MAX_ITEMS:
            return {"_sequence_": len(values), "digest": digest(values)}
        return values
    compose = _compose_transforms(obj)
    if compose is not None:
        return [_describe(t, depth - 1, path) for t in compose]
    module = (type(obj).__module__ or "").split(".")[0]
    if module in OPAQUE_PACKAGES or module == "builtins":
        return {"_target_": _class_name(obj)}
    out = {"_target_": _class_name(obj)}
    for name, value in sorted(_attributes(obj).items()):
        if name.startswith("_"):
            continue
        if any(word in name.lower() for word in SECRET_WORDS):
            out[name] = None if value is None else "<redacted>"
            continue
        out[name] = _describe(value, depth - 1, path)
    return out


def _attributes(obj) -> dict:
    attributes = dict(getattr(obj, "__dict__", {}) or {})
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()) or ():
            if isinstance(slot, str) and slot not in attributes and hasattr(obj, slot):
                attributes[slot] = getattr(obj, slot)
    return attributes


def _compose_transforms(obj):
    try:
        from monai.transforms import Compose
    except ImportError:  # pragma: no cover - monai is a dependency
        return None
    return list(obj.transforms) if isinstance(obj, Compose) else None


def _special(obj):
    """numpy / torch values, dtypes and devices; None for anything else."""
    import numpy as np

    if isinstance(obj, np.generic):
        return _describe(obj.item(), 1, set())
    if isinstance(obj, np.dtype):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return _array(str(obj.dtype), obj.shape, obj.nbytes, lambda: np.ascontiguousarray(obj).tobytes())
    torch = _torch()
    if torch is not None:
        if isinstance(obj, (torch.dtype, torch.device)):
            return str(obj)
        if isinstance(obj, torch.Tensor):
            t = obj.detach()
            return _array(str(t.dtype), tuple(t.shape), t.element_size() * t.numel(),
                          lambda: t.cpu().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        if isinstance(obj, torch.nn.Module):
            return {"_module_": _class_name(obj), "parameters": int(sum(p.numel() for p in obj.parameters()))}
    return None


def _array(dtype: str, shape, nbytes: int, data) -> dict:
    out = {"_array_": dtype, "shape": [int(s) for s in shape]}
    if nbytes <= MAX_HASH_BYTES:
        out["sha256"] = hashlib.sha256(data()).hexdigest()[:16]
    return out


def _torch():
    import sys

    return sys.modules.get("torch")  # never imported here: an object graph with tensors has imported it already


# ------------------------------------------------------------------------------------------------
# differences
# ------------------------------------------------------------------------------------------------
def diff(old, new, prefix: str = "") -> list[tuple[str, object, object]]:
    """``[(path, old value, new value), ...]`` where two descriptions differ; ``path`` joins mapping keys with
    ``.`` and list indices as ``[i]``; a key present on one side only has ``<absent>`` on the other."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append((where, ABSENT, new[key]))
            elif key not in new:
                out.append((where, old[key], ABSENT))
            else:
                out.extend(diff(old[key], new[key], where))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out.extend(diff(a, b, f"{prefix}[{i}]"))
        return out
    return [] if old == new else [(prefix or "<root>", old, new)]


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


def format_diff(changes: list[tuple[str, object, object]], limit: int = 12, width: int = 80) -> str:
    """One line per change, ``path: old -> new`` (values shortened to ``width``), at most ``limit`` lines."""

    def short(value) -> str:
        text = repr(value) if value is ABSENT else json.dumps(value, sort_keys=True)
        return text if len(text) <= width else text[: width - 3] + "..."

    lines = [f"  {path}: {short(a)} -> {short(b)}" for path, a, b in changes[:limit]]
    if len(changes) > limit:
        lines.append(f"  ... and {len(changes) - limit} more")
    return "\n".join(lines)
