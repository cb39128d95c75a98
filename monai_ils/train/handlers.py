"""MONAI-style handlers for :class:`~monai_ils.train.workflow.DeepSpeedTrainer`: each has ``attach(trainer)``
and is listed in the rosalia bundle's ``train#handlers`` (logging, checkpoint resume and saving, validation, export).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import torch

from monai_ils.train.workflow import BATCH_MODEL_KEYS, Events

logger = logging.getLogger(__name__)


def _check_interval(name: str, interval) -> int:
    interval = int(interval or 0)
    if interval < 0:
        raise ValueError(f"{name}: interval must be >= 0 (0 turns it off), got {interval}.")
    return interval


class StepLogger:
    """Log the losses every ``interval`` optimizer steps on rank 0 (0: never)."""

    def __init__(self, interval: int = 10, name: str = "monai_ils.train"):
        self.interval = _check_interval("StepLogger", interval)
        self.logger = logging.getLogger(name)

    def attach(self, trainer) -> None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, trainer) -> None:
        step = trainer.global_step
        if trainer.rank != 0 or not self.interval or step % self.interval:
            return
        losses = trainer.last_losses
        self.logger.info("step %d loss %.4f (ce %.4f bce %.4f dice %.4f)", step, losses["loss"], losses["ce"], losses["bce"], losses["dice"])


class DeepSpeedCheckpointLoader:
    """Resume at the start of the run from a DeepSpeed checkpoint folder (its ``latest`` tag, or ``tag``).

    ``required=False`` starts from scratch when the folder holds no checkpoint yet (``resume: true`` in the
    bundle); ``required=True`` (``resume: <folder>``) raises instead.
    """

    def __init__(self, load_dir, tag: str | None = None, required: bool = False):
        self.load_dir, self.tag, self.required = Path(load_dir), tag, bool(required)

    def attach(self, trainer) -> None:
        trainer.add_event_handler(Events.STARTED, self)

    def __call__(self, trainer) -> None:
        if self.tag is None and not (self.load_dir / "latest").exists():
            if self.required:
                raise FileNotFoundError(f"No DeepSpeed checkpoint ('latest' file) in {self.load_dir}.")
            return
        trainer.load_checkpoint(self.load_dir, self.tag)


def resume_handler(resume, checkpoint_dir, tag: str | None = None) -> DeepSpeedCheckpointLoader | None:
    """The bundle's ``resume`` setting as a handler: true: the run's ``checkpoint_dir`` if it holds a checkpoint;
    a folder: that folder (it must hold one); false: None (no resume)."""
    from monai_ils.utils.config import FALSE_WORDS, TRUE_WORDS

    word = resume.strip().lower() if isinstance(resume, str) else resume
    if word is None or word is False or word == 0 or word in FALSE_WORDS:
        return None
    if word is True or word == 1 or word in TRUE_WORDS:
        return DeepSpeedCheckpointLoader(checkpoint_dir, tag, required=tag is not None)
    if isinstance(resume, (str, os.PathLike)):
        return DeepSpeedCheckpointLoader(resume, tag, required=True)
    raise ValueError(f"resume must be true, false or a checkpoint folder, got {resume!r}.")


class DeepSpeedCheckpointSaver:
    """Save a DeepSpeed checkpoint every ``interval`` optimizer steps (0: only the final one) and, with
    ``save_final``, at the end of the run when the last step was not just saved. Runs on every rank (collective)."""

    def __init__(self, save_dir, interval: int = 500, save_final: bool = True):
        self.save_dir = Path(save_dir)
        self.interval = _check_interval("DeepSpeedCheckpointSaver", interval)
        self.save_final = bool(save_final)

    def attach(self, trainer) -> None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        trainer.add_event_handler(Events.COMPLETED, self.completed)

    def iteration_completed(self, trainer) -> None:
        if self.interval and trainer.global_step % self.interval == 0:
            trainer.save_checkpoint(self.save_dir)

    def completed(self, trainer) -> None:
        if self.save_final and (not self.interval or trainer.global_step % self.interval):
            trainer.save_checkpoint(self.save_dir)


class ValidationLoss:
    """Every ``interval`` optimizer steps (and at the end with ``at_end``), the mean losses over ``dataloader``
    (teacher-forced, no gradients, model in eval mode), logged and appended to ``trainer.validation`` as
    ``{"step", "loss", "ce", "bce", "dice", "samples"}`` (and written to ``output_file`` as JSON on rank 0).
    The global RNG is left as it was, so validation does not change the training run."""

    def __init__(self, dataloader, interval: int = 500, at_end: bool = True, output_file=None):
        self.dataloader = dataloader
        self.output_file = Path(output_file) if output_file is not None else None
        self.interval = _check_interval("ValidationLoss", interval)
        self.at_end = bool(at_end)

    def attach(self, trainer) -> None:
        if not hasattr(trainer, "validation"):
            trainer.validation = []
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        trainer.add_event_handler(Events.COMPLETED, self.completed)

    def iteration_completed(self, trainer) -> None:
        if self.interval and trainer.global_step % self.interval == 0:
            self.validate(trainer)

    def completed(self, trainer) -> None:
        if self.at_end and not (trainer.validation and trainer.validation[-1]["step"] == trainer.global_step):
            self.validate(trainer)

    @torch.no_grad()
    def validate(self, trainer) -> dict:
        from monai_ils.train.workflow import get_rng_state, set_rng_state

        rng = get_rng_state()
        engine = trainer.engine
        engine.eval()
        totals: dict[str, float] = {}
        count = 0
        try:
            for batch in self.dataloader:
                trainer.record_bad(batch["errors"])
                if "input_ids" not in batch:
                    continue
                out = engine(**{k: batch[k] for k in BATCH_MODEL_KEYS if k in batch}, input_sizes=batch["input_sizes"])
                losses = trainer.loss(out.lm_loss, out.mask_logits, batch["gt_masks"], batch["positive"], batch["input_sizes"])
                n = int(batch["input_ids"].shape[0])
                for key, value in losses.items():
                    totals[key] = totals.get(key, 0.0) + float(value) * n
                count += n
        finally:
            engine.train()
            set_rng_state(rng)
        if not count:
            raise RuntimeError("ValidationLoss: no readable validation sample.")
        record = {"step": trainer.global_step, **{k: v / count for k, v in totals.items()}, "samples": count}
        trainer.validation.append(record)
        if trainer.rank == 0:
            logger.info("validation at step %d: loss %.4f over %d samples", record["step"], record["loss"], count)
            if self.output_file is not None:
                self.output_file.parent.mkdir(parents=True, exist_ok=True)
                self.output_file.write_text(json.dumps(trainer.validation, indent=1))
        return record


class ModelExporter:
    """At the end of the run, on rank 0: the LoRA adapters (PEFT format) and the processor in ``output_dir/lora``
    and, with ``export_merged``, the merged model in ``output_dir/merged`` (rosalia layout)."""

    def __init__(self, output_dir, export_merged: bool = True):
        self.output_dir, self.export_merged = Path(output_dir), bool(export_merged)

    def attach(self, trainer) -> None:
        trainer.add_event_handler(Events.COMPLETED, self)

    def __call__(self, trainer) -> None:
        from monai_ils.models.checkpoint import export_merged
        from monai_ils.models.lora import save_lora

        if trainer.rank != 0:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        save_lora(trainer.model, self.output_dir / "lora")
        trainer.processor.save_pretrained(self.output_dir / "lora")
        if self.export_merged:
            merged = copy.deepcopy(trainer.model).float().cpu()
            export_merged(merged, self.output_dir / "merged", trainer.processor)
