"""DeepSpeed set-up: starting torch.distributed (a launcher's environment, or one gloo process on CPU) and the
one DeepSpeed config (the rosalia bundle's ``configs/ds_zero2.json``) with its ``"auto"`` values filled per run."""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# The one DeepSpeed config (optimizer, scheduler, precision, ZeRO): the bundle's file. Runs from Python
# without ``ds_config`` read it from the source tree; its "auto" entries are filled per run.
BUNDLE_DS_CONFIG = Path(__file__).resolve().parents[2] / "bundles" / "rosalia" / "configs" / "ds_zero2.json"


def default_ds_config() -> dict:
    """The bundle's ``ds_zero2.json`` as a dict; a clear error where the package is installed without the bundle."""
    if not BUNDLE_DS_CONFIG.is_file():
        raise FileNotFoundError(
            "No DeepSpeed config given and bundles/rosalia/configs/ds_zero2.json is not beside this package; "
            "pass ds_config= (a dict or a JSON file, e.g. the rosalia bundle's configs/ds_zero2.json)."
        )
    return json.loads(BUNDLE_DS_CONFIG.read_text())


_SELF_LAUNCHED = "MONAI_ILS_SINGLE_PROCESS_PID"
"""Set beside RANK/WORLD_SIZE when we, not a launcher, made this a one-process group: the pid that did it."""


def load_ds_config(source: Mapping | str | os.PathLike | None) -> dict:
    """A private copy of a DeepSpeed config: a dict, a JSON file, or None for the bundle's ``ds_zero2.json``."""
    if source is None:
        return default_ds_config()
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    return json.loads(Path(source).read_text())


def init_distributed(extensions_dir: str | None = None) -> tuple[int, int]:
    """Start torch.distributed the way DeepSpeed wants; returns (rank, world_size).

    Under ``deepspeed``/``torchrun`` the launcher's environment is used (nccl on GPUs). Without a
    launcher this becomes a single gloo process (MASTER_ADDR/PORT, RANK=0, WORLD_SIZE=1, LOCAL_RANK=0),
    which is how CPU-only machines train. DeepSpeed's compiled ops get a private TORCH_EXTENSIONS_DIR.
    """
    import torch.distributed as dist

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", extensions_dir or os.path.join(tempfile.gettempdir(), f"monai_ils_torch_ext_{os.getuid()}"))
    if not dist.is_initialized():
        # variables we set for a single process of our own are inherited by its child processes (a subprocess
        # started after training): they are not a launcher's, and their MASTER_PORT is the parent's, in use
        inherited = os.environ.get(_SELF_LAUNCHED, str(os.getpid())) != str(os.getpid())
        launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ and not inherited
        if not launched:
            if inherited:
                os.environ.pop("MASTER_PORT", None)
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", **{_SELF_LAUNCHED: str(os.getpid())})
        import deepspeed

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if int(os.environ.get("WORLD_SIZE", "1")) == 1:
            _skip_shared_memory_comm_op()
        deepspeed.init_distributed(dist_backend=backend)
    return dist.get_rank(), dist.get_world_size()


def _skip_shared_memory_comm_op() -> None:
    """A single process needs no shared-memory all-reduce; building that C++ op costs ~90 s on CPU."""
    try:
        import deepspeed.ops as ds_ops
        from deepspeed.accelerator import get_accelerator

        builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
        if builder is not None:
            ds_ops.__compatible_ops__[builder.NAME] = False
    except Exception as err:  # an older/newer DeepSpeed without this op: nothing to skip
        logger.debug("Could not disable the shared-memory comm op: %s", err)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_ds_config(
    base: Mapping | str | os.PathLike | None,
    micro_batch_size: int,
    grad_accum: int,
    total_steps: int,
    lr: float | None = None,
    warmup_steps: int | None = None,
    bf16: bool | None = None,
) -> dict:
    """Fill the ``"auto"`` entries of a DeepSpeed config (a dict or a JSON file; default: the bundle's ZeRO-2 file).

    The file is the one source of optimizer, scheduler, precision and ZeRO settings; the run fills the
    values derived from the data (total steps) and the batch sizes. ``lr`` / ``warmup_steps``, when
    given (Python callers), override the file's; the scheduler's ``warmup_max_lr: "auto"`` is the
    optimizer's lr. bf16 "auto" is on with CUDA and off on CPU (fp32).
    """
    config = load_ds_config(base)
    if bf16 is None:
        bf16 = torch.cuda.is_available()

    def fill(section: dict, key: str, value):
        if section.get(key, "auto") == "auto":
            section[key] = value

    fill(config, "train_micro_batch_size_per_gpu", int(micro_batch_size))
    fill(config, "gradient_accumulation_steps", int(grad_accum))
    config.pop("train_batch_size", None) if config.get("train_batch_size") == "auto" else None
    if "optimizer" not in config:
        raise ValueError("The DeepSpeed config has no 'optimizer' section; it is the one place the optimizer is set.")
    opt = config["optimizer"].setdefault("params", {})
    if lr is not None:
        opt["lr"] = float(lr)
    elif opt.get("lr", "auto") == "auto":
        raise ValueError("The DeepSpeed config's optimizer lr is 'auto' and no lr was given.")
    sched = config.get("scheduler", {}).get("params")
    if sched is not None:
        fill(sched, "total_num_steps", max(int(total_steps), 1))
        fill(sched, "warmup_max_lr", float(opt["lr"]))
        if warmup_steps is not None:
            sched["warmup_num_steps"] = int(warmup_steps)
    bf = config.setdefault("bf16", {"enabled": "auto"})
    fill(bf, "enabled", bool(bf16))
    return config
