"""Train ROSALIA with PEFT LoRA under DeepSpeed ZeRO-2 (GPUs via ``deepspeed``/``torchrun``; CPU as one gloo process).

A run: load the model (any layout of ``monai_ils.models.load_rosalia``), add LoRA to the language
model, build the 1:1 balanced loader, optionally precompute the frozen-encoder cache, then train.
Checkpoints are DeepSpeed checkpoints whose client state carries the loss weights, the sampler
position and the RNG states, so a resumed run continues with the very same next batch and loss.
At the end the adapters are saved (PEFT format) and, if asked, merged and exported.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from monai_ils.models.checkpoint import export_merged, load_rosalia
from monai_ils.models.lora import LORA_DEFAULTS, apply_lora, is_lora, save_lora
from monai_ils.train.cache import FrozenEncoderCache
from monai_ils.train.dataset import ILSTrainingDataset, collate_ils
from monai_ils.train.losses import LossWeights, RosaliaLoss
from monai_ils.train.sampler import BalancedBatchSampler

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


def init_distributed(extensions_dir: str | None = None) -> tuple[int, int]:
    """Start torch.distributed the way DeepSpeed wants; returns (rank, world_size).

    Under ``deepspeed``/``torchrun`` the launcher's environment is used (nccl on GPUs). Without a
    launcher this becomes a single gloo process (MASTER_ADDR/PORT, RANK=0, WORLD_SIZE=1, LOCAL_RANK=0),
    which is how CPU-only machines train. DeepSpeed's compiled ops get a private TORCH_EXTENSIONS_DIR.
    """
    import torch.distributed as dist

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", extensions_dir or os.path.join(tempfile.gettempdir(), f"monai_ils_torch_ext_{os.getuid()}"))
    if not dist.is_initialized():
        launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
        if not launched:
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
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
    if base is None:
        config = default_ds_config()
    elif isinstance(base, Mapping):
        config = copy.deepcopy(dict(base))
    else:
        config = json.loads(Path(base).read_text())
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


def build_network(model_dir, lora: Mapping | None = None, bf16: bool | None = None, gradient_checkpointing: bool = False,
                  model_kwargs: Mapping | None = None, seed: int = 0):
    """``(model, processor)`` ready to train, the bundle's ``network_def``: loaded from any layout of
    ``load_rosalia`` (the [SEG] token in the tokenizer and embeddings), LoRA added through PEFT.

    bf16 (default: on with CUDA) loads the weights in bfloat16 (a 7B model in fp32 is 28 GB).
    ``seed`` seeds the LoRA initialisation.
    """
    _seed_everything(int(seed))
    bf16 = bf16 if bf16 is not None else torch.cuda.is_available()
    model, processor = load_rosalia(model_dir, **{"dtype": torch.bfloat16 if bf16 else None, **dict(model_kwargs or {})})
    _prepare_for_training(model, {**LORA_DEFAULTS, **dict(lora or {})}, gradient_checkpointing)
    return model, processor


def _prepare_for_training(model, lora: Mapping, gradient_checkpointing: bool) -> None:
    if gradient_checkpointing:  # LISA trains the 7B model this way: recompute LM activations in backward
        model.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    apply_lora(model, **lora)


class RosaliaTrainer:
    """Everything a training run needs, set from a bundle config or code; :meth:`run` trains.

    Args:
        model_dir: a model folder in any supported layout (or pass ``model`` and ``processor``, or
            ``network``: the ``(model, processor)`` of :func:`build_network`, LoRA already added).
        train_json: MIMIC-ILS JSON (ours or the official release); ``splits`` select its parts.
        output_dir: checkpoints (``checkpoints/``), adapters (``lora/``), the merged model (``merged/``), ``history.json``.
        epochs / max_steps: stop after whichever comes first (``max_steps`` counts optimizer steps).
        loss_weights: ``{"ce": 0.5, "bce": 5.0, "dice": 1.0}``; a resumed run takes the checkpoint's.
        loss: a :class:`~monai_ils.train.losses.RosaliaLoss` (the bundle's ``loss``), instead of ``loss_weights``.
        lora: options of :func:`~monai_ils.models.lora.apply_lora` over ``LORA_DEFAULTS`` (r 128, alpha 256, dropout 0.05).
        use_cache: precompute SAM/vision-tower outputs into ``cache_dir`` and train from them.
        gradient_checkpointing: recompute the language model's activations in backward (less memory).
        skip_bad_samples: leave out samples that cannot be read, listing them in ``bad_samples.jsonl``
            (a batch with none left repeats the previous batch, so ranks stay in step); False raises.
        resume: True resumes from the latest checkpoint in ``output_dir`` when there is one; a path resumes from it.
    """

    def __init__(
        self,
        train_json=None,
        output_dir="./rosalia_run",
        model_dir=None,
        model=None,
        processor=None,
        samples=None,
        splits: Sequence[str] | None = ("train",),
        image_root=None,
        ds_config=None,
        epochs: int = 15,
        max_steps: int | None = None,
        micro_batch_size: int = 2,
        grad_accum: int = 1,
        lr: float | None = None,
        warmup_steps: int | None = None,
        loss_weights: Mapping | None = None,
        lora: Mapping | None = None,
        equalize_prob: float = 0.5,
        seed: int = 0,
        use_cache: bool = False,
        cache_dir=None,
        save_every: int = 500,
        log_every: int = 10,
        num_workers: int = 0,
        resume: bool | str = True,
        resume_tag: str | None = None,
        export_merged_model: bool = True,
        bf16: bool | None = None,
        gradient_checkpointing: bool = False,
        skip_bad_samples: bool = True,
        model_kwargs: Mapping | None = None,
        progress: bool = True,
        network: tuple | None = None,
        loss: RosaliaLoss | None = None,
    ):
        if network is not None:
            if model is not None or processor is not None:
                raise ValueError("RosaliaTrainer: pass network or model + processor, not both.")
            model, processor = network
        if loss is not None and loss_weights:
            raise ValueError("RosaliaTrainer: pass loss or loss_weights, not both.")
        self.train_json, self.output_dir = train_json, Path(output_dir)
        self.model_dir, self.model, self.processor, self.samples = model_dir, model, processor, samples
        self.splits, self.image_root, self.ds_config = splits, image_root, ds_config
        self.epochs, self.max_steps = int(epochs), (int(max_steps) if max_steps else None)
        self.micro_batch_size, self.grad_accum, self.lr, self.warmup_steps = int(micro_batch_size), int(grad_accum), lr, warmup_steps
        self.loss = loss if loss is not None else RosaliaLoss(**dict(loss_weights or {}))
        self.lora = {**LORA_DEFAULTS, **dict(lora or {})}
        self.equalize_prob, self.seed = float(equalize_prob), int(seed)
        self.use_cache, self.cache_dir = bool(use_cache), cache_dir
        self.save_every, self.log_every, self.num_workers = int(save_every), int(log_every), int(num_workers)
        self.resume, self.resume_tag = resume, resume_tag
        self.export_merged_model, self.bf16 = bool(export_merged_model), bf16
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.skip_bad_samples = bool(skip_bad_samples)
        self.bad_samples: list[str] = []
        self.model_kwargs = dict(model_kwargs or {})
        self.progress = progress
        self.history: list[dict] = []
        self.engine = None
        self.sampler = None
        self.dataset = None

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Distributed init, model + LoRA, data, cache and the DeepSpeed engine; resumes when asked."""
        import deepspeed

        self.rank, self.world_size = init_distributed()
        _seed_everything(self.seed)
        if self.model is None:
            if self.model_dir is None:
                raise ValueError("RosaliaTrainer needs model_dir, network or model + processor.")
            self.model, self.processor = build_network(self.model_dir, self.lora, self.bf16, self.gradient_checkpointing, self.model_kwargs, self.seed)
        elif not is_lora(self.model):  # a plain model passed in: add LoRA as build_network does
            _prepare_for_training(self.model, self.lora, self.gradient_checkpointing)
        if self.processor is None:
            raise ValueError("RosaliaTrainer: pass the processor together with the model.")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.model.to(device)

        samples = self.samples
        if samples is None:
            if self.train_json is None:
                raise ValueError("RosaliaTrainer needs train_json or samples.")
            from monai_ils.data.ils_format import read_ils_json

            samples = read_ils_json(self.train_json, splits=self.splits, image_root=self.image_root)
        cache = None
        if self.use_cache:
            cache = FrozenEncoderCache.for_model(self.cache_dir or self.output_dir / "encoder_cache", self.model, self.processor)
        on_error = "skip" if self.skip_bad_samples else "raise"
        self.dataset = ILSTrainingDataset(samples, self.processor, self.equalize_prob, self.seed, cache=cache, on_error=on_error)
        if cache is not None:
            images = sorted({s.image_path for s in samples})[self.rank :: self.world_size]
            errors = [] if self.skip_bad_samples else None
            cache.precompute(self.model, self.processor, images, self.dataset.variants(), progress=self.progress and self.rank == 0, errors=errors)
            self._record_bad(errors or [])
            if self.world_size > 1:
                torch.distributed.barrier()
        self.sampler = BalancedBatchSampler(
            self.dataset.positive_indices, self.dataset.negative_indices, self.micro_batch_size, self.seed, self.rank, self.world_size
        )
        steps_per_epoch = max(len(self.sampler) // self.grad_accum, 1)
        total = steps_per_epoch * self.epochs
        if self.max_steps:
            total = min(total, self.max_steps)
        self.total_steps = total
        config = build_ds_config(self.ds_config, self.micro_batch_size, self.grad_accum, total, self.lr, self.warmup_steps, self.bf16)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.engine, _, _, _ = deepspeed.initialize(model=self.model, model_parameters=params, config=config)
        self.epoch = 0
        self._maybe_resume()

    def _checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    def _maybe_resume(self) -> None:
        if not self.resume:
            return
        folder = Path(self.resume) if isinstance(self.resume, (str, os.PathLike)) else self._checkpoint_dir()
        if not (folder / "latest").exists() and self.resume_tag is None:
            if isinstance(self.resume, (str, os.PathLike)):
                raise FileNotFoundError(f"No DeepSpeed checkpoint ('latest' file) in {folder}.")
            return
        path, state = self.engine.load_checkpoint(str(folder), tag=self.resume_tag)
        if path is None:
            raise FileNotFoundError(f"Could not load a checkpoint from {folder} (tag {self.resume_tag}).")
        saved = LossWeights.from_dict(state["loss_weights"])
        if saved != self.loss.weights:
            logger.warning("Resuming with the checkpoint's loss weights %s (configured: %s).", saved, self.loss.weights)
        self.loss.weights = saved
        self.sampler.load_state_dict(state["sampler"])
        self.epoch = int(state["sampler"]["epoch"])
        self.history = list(state.get("history", []))
        _set_rng_state(state["rng"])
        logger.info("Resumed from %s at step %d.", path, self.engine.global_steps)

    def _record_bad(self, errors: Sequence[str]) -> None:
        """Log unreadable samples/images once each and append them to ``output_dir/bad_samples.jsonl``."""
        new = [e for e in errors if e not in self.bad_samples]
        if not new:
            return
        self.bad_samples.extend(new)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with (self.output_dir / f"bad_samples.rank{self.rank}.jsonl" if self.world_size > 1 else self.output_dir / "bad_samples.jsonl").open("a") as stream:
            for error in new:
                logger.warning("Skipping: %s", error)
                stream.write(json.dumps({"error": error}) + "\n")

    def save_checkpoint(self, tag: str | None = None) -> Path:
        tag = tag or f"global_step{self.engine.global_steps}"
        state = {
            "loss_weights": self.loss.weights.to_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": _get_rng_state(),
            "history": self.history,
        }
        self.engine.save_checkpoint(str(self._checkpoint_dir()), tag=tag, client_state=state)
        return self._checkpoint_dir() / tag

    # ------------------------------------------------------------------ training
    def train_step(self, batch: dict) -> dict:
        """One micro-batch: forward, loss, backward, (optimizer) step. Returns float losses."""
        keys = ("input_ids", "attention_mask", "labels", "sam_pixels", "clip_pixels", "sam_embeddings", "vision_features")
        out = self.engine(**{k: batch[k] for k in keys if k in batch}, input_sizes=batch["input_sizes"])
        losses = self.loss(out.lm_loss, out.mask_logits, batch["gt_masks"], batch["positive"], batch["input_sizes"])
        self.engine.backward(losses["loss"])
        self.engine.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def run(self) -> list[dict]:
        """Train until ``epochs`` or ``max_steps``; returns the per-step loss history."""
        if self.engine is None:
            self.setup()
        collate = partial(collate_ils, pad_token_id=self.processor.tokenizer.pad_token_id)
        self._micro = self.engine.global_steps * self.grad_accum
        bar = tqdm(total=self.total_steps, initial=self.engine.global_steps, desc="training", disable=not self.progress or self.rank != 0)
        done = self.engine.global_steps >= self.total_steps
        previous = None
        while not done and self.epoch < self.epochs:
            self.dataset.set_epoch(self.epoch)
            # its own generator: creating a loader must not consume the global RNG (dropout after resume)
            generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            loader = DataLoader(
                self.dataset, batch_sampler=self.sampler, collate_fn=collate, num_workers=self.num_workers, generator=generator
            )
            self.engine.train()
            for batch in loader:
                start = time.perf_counter()
                self._record_bad(batch["errors"])
                if "input_ids" not in batch:
                    if previous is None:
                        raise RuntimeError(f"No readable sample in the first batch: {batch['errors']}")
                    batch = previous
                previous = batch
                losses = self.train_step(batch)
                self.sampler.advance()
                self._micro += 1
                if self._micro % self.grad_accum:
                    continue
                step = self.engine.global_steps
                record = {"step": step, "epoch": self.epoch, "lr": float(self.engine.get_lr()[0]), "seconds": time.perf_counter() - start, **losses}
                self.history.append(record)
                bar.update(1)
                if self.rank == 0 and self.log_every and step % self.log_every == 0:
                    logger.info("step %d loss %.4f (ce %.4f bce %.4f dice %.4f)", step, losses["loss"], losses["ce"], losses["bce"], losses["dice"])
                if self.save_every and step % self.save_every == 0:
                    self.save_checkpoint()
                if step >= self.total_steps:
                    done = True
                    break
            else:
                self.epoch += 1
                self.sampler.set_epoch(self.epoch)
        bar.close()
        self.finish()
        return self.history

    def finish(self) -> None:
        """Final checkpoint, adapters, history and (optionally) the merged export, on rank 0."""
        if not self.save_every or self.engine.global_steps % self.save_every:
            self.save_checkpoint()
        if self.rank != 0:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "history.json").write_text(json.dumps(self.history, indent=1))
        save_lora(self.model, self.output_dir / "lora")
        self.processor.save_pretrained(self.output_dir / "lora")
        if self.export_merged_model:
            merged = copy.deepcopy(self.model).float().cpu()
            export_merged(merged, self.output_dir / "merged", self.processor)


def export_checkpoint(checkpoint_dir, output_dir, model_dir=None, model=None, processor=None, tag: str | None = None, lora: Mapping | None = None, model_kwargs: Mapping | None = None) -> Path:
    """Merge the LoRA weights of a DeepSpeed checkpoint into the base model and export it (rosalia layout).

    Reads the module state of ``checkpoint_dir/<tag>`` (default: the ``latest`` tag) directly, so no
    ``zero_to_fp32`` conversion (whose output format changes between DeepSpeed versions) is needed;
    ZeRO-2 keeps full module weights there. ``lora`` must match the run's (r, alpha, targets).
    """
    checkpoint_dir = Path(checkpoint_dir)
    tag = tag or (checkpoint_dir / "latest").read_text().strip()
    states = checkpoint_dir / tag / "mp_rank_00_model_states.pt"
    if not states.exists():
        raise FileNotFoundError(f"No DeepSpeed module states at {states}.")
    if model is None:
        model, processor = load_rosalia(model_dir, **dict(model_kwargs or {}))
    apply_lora(model, **{"r": 128, "alpha": 256, "dropout": 0.05, **dict(lora or {})})
    module = torch.load(states, map_location="cpu", weights_only=False)["module"]  # your own checkpoint: it holds RNG objects
    result = model.load_state_dict(module, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise KeyError(
            f"{states} does not match the model + LoRA settings: missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}."
        )
    return export_merged(model.float(), output_dir, processor)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _get_rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(**kwargs) -> list[dict]:
    """Functional entry point: ``RosaliaTrainer(**kwargs).run()``."""
    return RosaliaTrainer(**kwargs).run()
