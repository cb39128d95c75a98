"""A thin training loop around DeepSpeed's engine, with MONAI-style handlers.

:class:`DeepSpeedTrainer` takes the objects a bundle config builds (``network_def``, ``loss``,
``train#dataloader``, the DeepSpeed config file and ``train#handlers``), creates the DeepSpeed engine
(the config's ``"auto"`` values filled from the data: batch size, accumulation, total steps) and runs
micro-batches: forward, loss, ``engine.backward``, ``engine.step``. Handlers are objects with
``attach(trainer)`` that register callbacks for :class:`Events` (logging, checkpointing, validation,
export: :mod:`monai_ils.train.handlers`), as MONAI's ignite handlers do.

MONAI's ``SupervisedTrainer`` (ignite) is not used: DeepSpeed's engine owns the optimizer, scheduler,
precision and gradient accumulation (``engine.backward`` / ``engine.step``), its checkpoints are
collective calls on every rank, and an exact mid-epoch resume needs the sampler position restored,
which ignite's epoch/iteration resume does not do for a custom batch sampler.

Checkpoints carry the loss weights, the sampler position, the history and the RNG states in their
client state, so a resumed run continues with the very same next batch and loss.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from monai_ils.train.distributed import build_ds_config, init_distributed
from monai_ils.train.losses import LossWeights, RosaliaLoss
from monai_ils.train.network import prepare_for_training, seed_everything

logger = logging.getLogger(__name__)

BATCH_MODEL_KEYS = ("input_ids", "attention_mask", "labels", "sam_pixels", "clip_pixels", "sam_embeddings", "vision_features")


class Events(str, Enum):
    """Points of the loop where handlers run (``ITERATION_COMPLETED``: after an optimizer step)."""

    STARTED = "started"
    EPOCH_STARTED = "epoch_started"
    ITERATION_COMPLETED = "iteration_completed"
    EPOCH_COMPLETED = "epoch_completed"
    COMPLETED = "completed"


class DeepSpeedTrainer:
    """Train ``network`` with ``loss`` on ``train_data_loader`` under DeepSpeed.

    Args:
        network: ``(model, processor)`` (the bundle's ``network_def``; LoRA is added if the model has none).
        loss: a :class:`~monai_ils.train.losses.RosaliaLoss`.
        train_data_loader: a ``DataLoader`` whose ``batch_sampler`` is resumable (``state_dict``,
            ``load_state_dict``, ``set_epoch``, ``advance``, ``batch_size``: :class:`BalancedBatchSampler`) and
            whose dataset has ``set_epoch`` (and, with the encoder cache, ``cache``/``variants``/``transform``).
        ds_config: the DeepSpeed config (dict or JSON file; default: the bundle's ``ds_zero2.json``), the one source
            of optimizer, scheduler, precision and ZeRO settings; only its ``"auto"`` values are filled here.
        epochs / max_steps: stop after whichever comes first (``max_steps`` counts optimizer steps).
        grad_accum: micro-batches per optimizer step (fills ``gradient_accumulation_steps: "auto"``).
        seed: seeds the run and each epoch's loader generator.
        handlers: objects with ``attach(trainer)`` (``None`` entries, e.g. disabled config components, are skipped).
        output_dir: ``history.json`` and ``bad_samples.jsonl`` are written here.
        bf16: fills ``bf16.enabled: "auto"`` (default: on with CUDA).
    """

    def __init__(
        self,
        network,
        loss: RosaliaLoss,
        train_data_loader,
        ds_config=None,
        epochs: int = 15,
        max_steps: int | None = None,
        grad_accum: int = 1,
        seed: int = 0,
        handlers: Sequence | None = (),
        output_dir="./rosalia_run",
        bf16: bool | None = None,
        progress: bool = True,
    ):
        if not isinstance(network, Sequence) or len(network) != 2:
            raise TypeError("DeepSpeedTrainer: network must be (model, processor), the bundle's network_def.")
        self.model, self.processor = network
        if not isinstance(loss, RosaliaLoss):
            raise TypeError(f"DeepSpeedTrainer: loss must be a RosaliaLoss, got {type(loss).__name__}.")
        self.loss = loss
        self.loader = train_data_loader
        self.sampler = train_data_loader.batch_sampler
        self.dataset = train_data_loader.dataset
        for name in ("state_dict", "load_state_dict", "set_epoch", "advance"):
            if not hasattr(self.sampler, name):
                raise TypeError(f"DeepSpeedTrainer: the loader's batch_sampler has no {name}(); use BalancedBatchSampler (train#sampler).")
        self.ds_config, self.bf16, self.progress = ds_config, bf16, progress
        self.epochs, self.max_steps = int(epochs), (int(max_steps) if max_steps else None)
        self.grad_accum, self.seed = int(grad_accum), int(seed)
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {grad_accum}.")
        self.output_dir = Path(output_dir)
        self.handlers = [h for h in (handlers or ()) if h is not None]
        self._callbacks: dict[Events, list[Callable]] = defaultdict(list)
        self.history: list[dict] = []
        self.bad_samples: list[str] = []
        self.engine = None
        self.epoch = 0
        self.last_losses: dict = {}
        self.should_terminate = False

    # ------------------------------------------------------------------ events
    def add_event_handler(self, event: Events, handler: Callable) -> None:
        """Call ``handler(trainer)`` at ``event``; handlers of one event run in the order they were added."""
        self._callbacks[Events(event)].append(handler)

    def fire(self, event: Events) -> None:
        for handler in self._callbacks[event]:
            handler(self)

    @property
    def global_step(self) -> int:
        return int(self.engine.global_steps) if self.engine is not None else 0

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Distributed init, device, encoder cache, DeepSpeed engine; handlers attached (resume is a handler)."""
        import deepspeed

        self.rank, self.world_size = init_distributed()
        seed_everything(self.seed)
        prepare_for_training(self.model)  # a plain model passed in gets LoRA; a network_def model already has it
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.model.to(device)
        self._precompute_cache()
        micro_batch = int(getattr(self.sampler, "batch_size", 0) or getattr(self.loader, "batch_size", 0) or 0)
        if micro_batch < 1:
            raise ValueError("DeepSpeedTrainer: the loader's batch sampler has no batch_size.")
        steps_per_epoch = max(len(self.sampler) // self.grad_accum, 1)
        total = steps_per_epoch * self.epochs
        self.total_steps = min(total, self.max_steps) if self.max_steps else total
        config = build_ds_config(self.ds_config, micro_batch, self.grad_accum, self.total_steps, bf16=self.bf16)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.engine, _, _, _ = deepspeed.initialize(model=self.model, model_parameters=params, config=config)
        self.epoch = 0
        for handler in self.handlers:
            if not hasattr(handler, "attach"):
                raise TypeError(f"Handler {type(handler).__name__} has no attach(trainer).")
            handler.attach(self)

    def _precompute_cache(self) -> None:
        cache = getattr(self.dataset, "cache", None)
        if cache is None:
            return
        images = sorted({s.image_path for s in self.dataset.samples})[self.rank :: self.world_size]
        errors: list | None = [] if getattr(self.dataset, "on_error", "raise") == "skip" else None
        cache.precompute(self.model, self.processor, images, self.dataset.variants(), progress=self.progress and self.rank == 0,
                         errors=errors, transform=getattr(self.dataset, "transform", None))
        self.record_bad(errors or [])
        if self.world_size > 1:
            torch.distributed.barrier()

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, folder, tag: str | None = None) -> Path:
        """A DeepSpeed checkpoint (every rank must call it) whose client state allows an exact resume."""
        tag = tag or f"global_step{self.global_step}"
        state = {"loss_weights": self.loss.weights.to_dict(), "sampler": self.sampler.state_dict(), "rng": get_rng_state(), "history": self.history}
        self.engine.save_checkpoint(str(folder), tag=tag, client_state=state)
        return Path(folder) / tag

    def load_checkpoint(self, folder, tag: str | None = None) -> Path:
        """Engine, loss weights (the checkpoint's win), sampler position, history and RNG states."""
        path, state = self.engine.load_checkpoint(str(folder), tag=tag)
        if path is None:
            raise FileNotFoundError(f"Could not load a DeepSpeed checkpoint from {folder} (tag {tag}).")
        saved = LossWeights.from_dict(state["loss_weights"])
        if saved != self.loss.weights:
            logger.warning("Resuming with the checkpoint's loss weights %s (configured: %s).", saved, self.loss.weights)
        self.loss.weights = saved
        self.sampler.load_state_dict(state["sampler"])
        self.epoch = int(state["sampler"]["epoch"])
        self.history = list(state.get("history", []))
        set_rng_state(state["rng"])
        logger.info("Resumed from %s at step %d.", path, self.global_step)
        return Path(path)

    def record_bad(self, errors: Sequence[str]) -> None:
        """Log unreadable samples/images once each and append them to ``output_dir/bad_samples.jsonl``."""
        new = [e for e in errors if e not in self.bad_samples]
        if not new:
            return
        self.bad_samples.extend(new)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        name = f"bad_samples.rank{self.rank}.jsonl" if self.world_size > 1 else "bad_samples.jsonl"
        with (self.output_dir / name).open("a") as stream:
            for error in new:
                logger.warning("Skipping: %s", error)
                stream.write(json.dumps({"error": error}) + "\n")

    # ------------------------------------------------------------------ training
    def train_step(self, batch: Mapping) -> dict:
        """One micro-batch: forward, loss, backward, (optimizer) step. Returns float losses."""
        out = self.engine(**{k: batch[k] for k in BATCH_MODEL_KEYS if k in batch}, input_sizes=batch["input_sizes"])
        losses = self.loss(out.lm_loss, out.mask_logits, batch["gt_masks"], batch["positive"], batch["input_sizes"])
        self.engine.backward(losses["loss"])
        self.engine.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def _epoch_generator(self) -> None:
        # its own generator, reseeded per epoch: iterating the loader must not consume the global RNG
        # (a resumed run creates its iterator mid-epoch, after the RNG states were restored)
        if self.loader.generator is None:
            self.loader.generator = torch.Generator()
        self.loader.generator.manual_seed(self.seed * 100003 + self.epoch)

    def run(self) -> list[dict]:
        """Train until ``epochs`` or ``max_steps``; returns the per-step loss history."""
        if self.engine is None:
            self.setup()
        self.fire(Events.STARTED)
        micro = self.global_step * self.grad_accum
        bar = tqdm(total=self.total_steps, initial=self.global_step, desc="training", disable=not self.progress or self.rank != 0)
        done = self.global_step >= self.total_steps
        previous = None
        while not done and self.epoch < self.epochs:
            self.dataset.set_epoch(self.epoch)
            self._epoch_generator()
            self.fire(Events.EPOCH_STARTED)
            self.engine.train()
            for batch in self.loader:
                start = time.perf_counter()
                self.record_bad(batch["errors"])
                if "input_ids" not in batch:  # nothing readable: repeat the previous batch so ranks stay in step
                    if previous is None:
                        raise RuntimeError(f"No readable sample in the first batch: {batch['errors']}")
                    batch = previous
                previous = batch
                losses = self.train_step(batch)
                self.sampler.advance()
                micro += 1
                if micro % self.grad_accum:
                    continue
                self.last_losses = losses
                record = {"step": self.global_step, "epoch": self.epoch, "lr": float(self.engine.get_lr()[0]),
                          "seconds": time.perf_counter() - start, **losses}
                self.history.append(record)
                bar.update(1)
                self.fire(Events.ITERATION_COMPLETED)
                if self.global_step >= self.total_steps or self.should_terminate:
                    done = True
                    break
            else:
                self.fire(Events.EPOCH_COMPLETED)
                self.epoch += 1
                self.sampler.set_epoch(self.epoch)
        bar.close()
        if self.rank == 0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "history.json").write_text(json.dumps(self.history, indent=1))
        self.fire(Events.COMPLETED)
        return self.history


def get_rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
