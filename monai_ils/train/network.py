"""The network to train (the rosalia bundle's ``network_def``) and the merge of a DeepSpeed checkpoint's LoRA weights."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from monai_ils.models.checkpoint import export_merged, load_rosalia
from monai_ils.models.lora import LORA_DEFAULTS, apply_lora, is_lora


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_network(model_dir, lora: Mapping | None = None, bf16: bool | None = None, gradient_checkpointing: bool = False,
                  model_kwargs: Mapping | None = None, seed: int = 0):
    """``(model, processor)`` ready to train, the bundle's ``network_def``: loaded from any layout of
    ``load_rosalia`` (the [SEG] token in the tokenizer and embeddings), LoRA added through PEFT.

    bf16 (default: on with CUDA) loads the weights in bfloat16 (a 7B model in fp32 is 28 GB).
    ``seed`` seeds the LoRA initialisation.
    """
    seed_everything(int(seed))
    bf16 = bf16 if bf16 is not None else torch.cuda.is_available()
    model, processor = load_rosalia(model_dir, **{"dtype": torch.bfloat16 if bf16 else None, **dict(model_kwargs or {})})
    prepare_for_training(model, lora, gradient_checkpointing)
    return model, processor


def prepare_for_training(model, lora: Mapping | None = None, gradient_checkpointing: bool = False):
    """Add LoRA (``LORA_DEFAULTS`` updated by ``lora``) unless the model has it, and optionally gradient checkpointing."""
    if gradient_checkpointing:  # LISA trains the 7B model this way: recompute LM activations in backward
        model.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not is_lora(model):
        apply_lora(model, **{**LORA_DEFAULTS, **dict(lora or {})})
    return model


def export_checkpoint(checkpoint_dir, output_dir, model_dir=None, model=None, processor=None, tag: str | None = None,
                      lora: Mapping | None = None, model_kwargs: Mapping | None = None) -> Path:
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
    apply_lora(model, **{**LORA_DEFAULTS, **dict(lora or {})})
    module = torch.load(states, map_location="cpu", weights_only=False)["module"]  # your own checkpoint: it holds RNG objects
    result = model.load_state_dict(module, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise KeyError(
            f"{states} does not match the model + LoRA settings: missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}."
        )
    return export_merged(model.float(), output_dir, processor)
