"""PEFT LoRA on the language model of ROSALIA: apply, save/load adapters, merge."""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from monai_ils.models.rosalia import RosaliaModel

ADAPTER_DIR = "lora_adapter"
EXTRA_WEIGHTS = "trainable_weights.safetensors"


def default_lora_targets(model: RosaliaModel) -> list[str]:
    """Leaf names of every nn.Linear in the language model except the output head.

    Nothing in the vision tower, projector, SAM or text_hidden_fcs is targeted: LoRA is applied to the
    language model object only. ``lm_head`` is trained in full instead (it grows with the added tokens).
    """
    names = {name.rsplit(".", 1)[-1] for name, m in _base_lm(model).named_modules() if isinstance(m, nn.Linear)}
    names.discard("lm_head")
    return sorted(names)


def is_lora(model: RosaliaModel) -> bool:
    from peft import PeftModel

    return isinstance(model.language_model, PeftModel)


def _base_lm(model: RosaliaModel) -> nn.Module:
    return model.language_model.get_base_model() if is_lora(model) else model.language_model


# LISA's LoRA settings, the one place they are written down (trainer, ZeRO converter and this function use them)
LORA_DEFAULTS: dict = {"r": 128, "alpha": 256, "dropout": 0.05, "target_modules": None, "train_embeddings": True}


def apply_lora(
    model: RosaliaModel,
    r: int = LORA_DEFAULTS["r"],
    alpha: int = LORA_DEFAULTS["alpha"],
    dropout: float = LORA_DEFAULTS["dropout"],
    target_modules: list[str] | None = LORA_DEFAULTS["target_modules"],
    train_embeddings: bool = LORA_DEFAULTS["train_embeddings"],
) -> RosaliaModel:
    """Wrap ``model.language_model`` with PEFT LoRA (in place) and set what else trains.

    Trainable afterwards: the LoRA weights, ``text_hidden_fcs``, SAM's mask decoder and, with
    ``train_embeddings`` (LISA's choice, needed for the new [SEG] row), the input embeddings and lm_head.
    """
    from peft import LoraConfig, get_peft_model

    if is_lora(model):
        raise ValueError("apply_lora: the language model already carries LoRA adapters.")
    targets = list(target_modules) if target_modules else default_lora_targets(model)
    config = LoraConfig(r=int(r), lora_alpha=int(alpha), lora_dropout=float(dropout), target_modules=targets, bias="none", task_type="CAUSAL_LM")
    model.language_model = get_peft_model(model.language_model, config)
    if train_embeddings:
        base = _base_lm(model)
        base.get_input_embeddings().requires_grad_(True)
        base.get_output_embeddings().requires_grad_(True)
    model.freeze_encoders()
    return model


def merge_lora(model: RosaliaModel) -> RosaliaModel:
    """Fold the adapters into the base weights (in place); a model without adapters is returned as is."""
    if is_lora(model):
        model.language_model = model.language_model.merge_and_unload()
    return model


def trainable_extra_state(model: RosaliaModel) -> dict:
    """Trainable weights outside the LoRA adapters, under RosaliaModel names (base-model names for the LM)."""
    state = {}
    base = _base_lm(model)
    for prefix, module in (("language_model.", base), ("", model)):
        for name, param in module.named_parameters():
            if not param.requires_grad or "lora_" in name or (prefix == "" and name.startswith("language_model.")):
                continue
            state[prefix + name] = param.detach().contiguous().cpu()
    return state


def save_lora(model: RosaliaModel, folder) -> Path:
    """Save the adapters (PEFT format, in ``lora_adapter/``) and the other trained weights beside them."""
    from safetensors.torch import save_file

    if not is_lora(model):
        raise ValueError("save_lora: the model has no LoRA adapters; use save_pretrained for full weights.")
    folder = Path(folder)
    model.language_model.save_pretrained(folder / ADAPTER_DIR)
    save_file(trainable_extra_state(model), str(folder / EXTRA_WEIGHTS))
    return folder


def load_lora(model: RosaliaModel, folder, is_trainable: bool = False) -> RosaliaModel:
    """Attach adapters saved by :func:`save_lora` and restore the other trained weights."""
    from peft import PeftModel
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / ADAPTER_DIR).is_dir():
        raise FileNotFoundError(f"No LoRA adapter folder {folder / ADAPTER_DIR}.")
    model.language_model = PeftModel.from_pretrained(model.language_model, folder / ADAPTER_DIR, is_trainable=is_trainable)
    extra = load_file(str(folder / EXTRA_WEIGHTS)) if (folder / EXTRA_WEIGHTS).exists() else {}
    base = _base_lm(model)
    lm_state = {k[len("language_model.") :]: v for k, v in extra.items() if k.startswith("language_model.")}
    other = {k: v for k, v in extra.items() if not k.startswith("language_model.")}
    if lm_state:
        base.load_state_dict(lm_state, strict=False)
    if other:
        missing = set(other) - set(dict(model.named_parameters()))
        if missing:
            raise KeyError(f"load_lora: unknown weights in {folder / EXTRA_WEIGHTS}: {sorted(missing)[:5]}")
        model.load_state_dict(other, strict=False)
    model.freeze_encoders()
    return model
