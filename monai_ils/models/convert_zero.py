"""Converter: a DeepSpeed ZeRO training checkpoint (or ``zero_to_fp32``'s output) -> a merged ROSALIA folder.

Users of LISA hit three things here, each handled:

- ``zero_to_fp32`` writes one ``pytorch_model.bin`` up to DeepSpeed 0.15.2 and, from 0.15.3 on, a
  folder of shards with an index (``pytorch_model-0000i-of-0000n.bin`` or ``model-*.safetensors``);
  `read_zero_state_dict` accepts a file, a folder in either form, or the checkpoint folder itself
  (then DeepSpeed's ``get_fp32_state_dict_from_zero_checkpoint`` does the gathering).
- the weight names carry the wrappers of the run (``module.`` from the engine, ``base_model.model.``
  from PEFT); they are stripped, and names that still do not fit the model are listed in the error.
- the LoRA weights (``lora_A``/``lora_B``) must be merged into the base model; the report says which
  file holds them, and a checkpoint without any is refused when LoRA settings are given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from monai_ils.models.checkpoint import CheckpointError, _read_file, _tied_keys, export_merged, load_rosalia
from monai_ils.models.lora import LORA_DEFAULTS, apply_lora

WRAPPER_PREFIXES = ("module.", "base_model.model.")


@dataclass
class ZeroStateDict:
    """Weights under model names, where they came from, and which files hold the LoRA weights."""

    state: dict[str, torch.Tensor]
    source: str
    lora_files: list[str] = field(default_factory=list)
    stripped_prefixes: list[str] = field(default_factory=list)

    @property
    def has_lora(self) -> bool:
        return any(".lora_" in k for k in self.state)


def strip_wrappers(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove ``module.`` and ``base_model.model.`` in front of every name (in that order, each once)."""
    out, stripped = dict(state), []
    for prefix in WRAPPER_PREFIXES:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
            stripped.append(prefix)
    return out, stripped


def _files_of(path: Path) -> dict[str, Path]:
    """weight name -> file, for one file or a folder (sharded with an index, or single)."""
    if path.is_file():
        return {k: path for k in _read_file(path)}
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = path / index_name
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            return {k: path / name for k, name in weight_map.items()}
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).exists():
            return {k: path / name for k in _read_file(path / name)}
    raise CheckpointError(f"{path}: no pytorch_model.bin, model.safetensors or shard index (what zero_to_fp32 writes).")


def read_zero_state_dict(path, tag: str | None = None) -> ZeroStateDict:
    """fp32 weights from a ZeRO checkpoint folder (``latest`` + ``global_stepN/``) or from zero_to_fp32's output."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder.")
    if path.is_dir() and ((path / "latest").exists() or (tag and (path / tag).is_dir())):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        raw = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=tag)
        state, stripped = strip_wrappers(raw)
        lora = [f"{path.name}/{tag or (path / 'latest').read_text().strip()}"] if any(".lora_" in k for k in state) else []
        return ZeroStateDict(state, path.name, lora, stripped)
    files = _files_of(path)
    raw: dict[str, torch.Tensor] = {}
    for file in sorted(set(files.values())):
        raw.update(_read_file(file))
    state, stripped = strip_wrappers(raw)
    renamed = dict(zip(raw, state))
    lora_files = sorted({files[k].name for k in raw if ".lora_" in renamed[k]})
    return ZeroStateDict(state, path.name, lora_files, stripped)


def convert_zero_checkpoint(path, base_model_dir, output_dir, lora: Mapping | None = None, tag: str | None = None,
                            model_kwargs: Mapping | None = None) -> Path:
    """Load the base model, add LoRA as in the run (``lora``: r, alpha, targets), fill in the ZeRO weights,
    merge and write our layout to ``output_dir``. Refuses names that do not match, naming a few."""
    weights = read_zero_state_dict(path, tag)
    model, processor = load_rosalia(base_model_dir, **dict(model_kwargs or {}))
    if lora is not None:
        if not weights.has_lora:
            raise CheckpointError(f"{weights.source}: LoRA settings were given but the checkpoint holds no lora_A/lora_B weights.")
        apply_lora(model, **{**LORA_DEFAULTS, **dict(lora)})
    elif weights.has_lora:
        raise CheckpointError(
            f"{weights.source}: LoRA weights found in {', '.join(weights.lora_files)}; pass lora= the run's settings (r, alpha) to merge them."
        )
    result = model.load_state_dict(weights.state, strict=False)
    missing = [k for k in result.missing_keys if k not in _tied_keys(model)]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{weights.source} does not match the model (prefixes stripped: {weights.stripped_prefixes or 'none'}): "
            f"missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}."
        )
    return export_merged(model.float(), output_dir, processor)
