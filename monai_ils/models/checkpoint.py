"""Load and save ROSALIA weights in three layouts, all from local folders.

- ``rosalia``: ours, transformers' standard layout. ``config.json`` (``"model_type": "rosalia"``),
  ``model.safetensors`` (or shards + index), tokenizer files, ``preprocessor_config.json``,
  ``rosalia_processor.json``.
- ``lisa`` (converter in ``convert_lisa.py``): the published LISA / ROSALIA layout (``LISAForCausalLM``): LLaVA v1 Llama keys
  ``model.embed_tokens``, ``model.layers.*``, ``model.norm``, ``lm_head``, ``model.mm_projector.*``,
  ``model.visual_model.*`` (SAM), ``model.text_hidden_fcs.*`` and, when present,
  ``model.vision_tower.vision_tower.*`` (CLIP ViT-L/14 224). Merged LISA exports leave the vision
  tower out and name it in ``mm_vision_tower``; give a local CLIP folder then.
- ``hf_llava`` (converter in ``convert_llava.py``): a Hugging Face ``LlavaForConditionalGeneration`` folder plus a SAM checkpoint
  (``sam_vit_h_4b8939.pth``); ``text_hidden_fcs`` starts untrained.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import torch

from monai_ils.models.lora import is_lora, merge_lora
from monai_ils.models.processing import RosaliaProcessor
from monai_ils.models.rosalia import RosaliaModel

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be read as the requested layout; the message says what is missing."""


# ------------------------------------------------------------------------------------------------
# state-dict files
# ------------------------------------------------------------------------------------------------
def read_state_dict(folder) -> dict[str, torch.Tensor]:
    """All tensors of a HF-style folder: (sharded) safetensors or (sharded) pytorch_model*.bin."""
    folder = Path(folder)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.exists():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state = {}
            for name in files:
                state.update(_read_file(folder / name))
            return state
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).exists():
            return _read_file(folder / name)
    raise CheckpointError(f"{folder}: no model.safetensors, pytorch_model.bin or shard index found.")


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def _write_state_dict(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    seen, clean = {}, {}
    for key, value in state.items():
        ptr = (value.data_ptr(), tuple(value.shape))
        if ptr in seen and value.numel() > 0:  # tied weights are stored once and re-tied on load
            continue
        seen[ptr] = key
        clean[key] = value.detach().contiguous().cpu()
    save_file(clean, str(path), metadata={"format": "pt"})


@contextmanager
def _default_dtype(dtype: torch.dtype | None):
    previous = torch.get_default_dtype()
    if dtype is not None and dtype.is_floating_point:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _load_into(model: RosaliaModel, state: dict, where: str, allow_missing: tuple[str, ...] = ()) -> None:
    result = model.load_state_dict(state, strict=False)
    tied = _tied_keys(model)
    missing = [k for k in result.missing_keys if k not in tied and not k.startswith(allow_missing)]
    if missing:
        raise CheckpointError(f"{where}: {len(missing)} weights missing, e.g. {missing[:5]}.")
    if result.unexpected_keys:
        raise CheckpointError(f"{where}: {len(result.unexpected_keys)} unexpected weights, e.g. {result.unexpected_keys[:5]}.")


def _tied_keys(model: RosaliaModel) -> set[str]:
    lm = model.language_model
    if getattr(lm.config, "tie_word_embeddings", False):
        return {"language_model.lm_head.weight"}
    return set()


# ------------------------------------------------------------------------------------------------
# our layout
# ------------------------------------------------------------------------------------------------
def save_pretrained(model: RosaliaModel, folder, processor: RosaliaProcessor | None = None) -> Path:
    """Write the full model (transformers' ``save_pretrained``: config.json + safetensors shards) and processor.

    LoRA must be merged first.
    """
    if is_lora(model):
        raise ValueError("save_pretrained: merge the LoRA adapters first (merge_lora) or save them with save_lora.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    return folder


def load_pretrained(folder, dtype: torch.dtype | None = None, device="cpu") -> tuple[RosaliaModel, RosaliaProcessor]:
    """Read a folder in our layout (``RosaliaForCausalLM.from_pretrained``: meta-device build, no random init).

    Folders written before the model became a ``PreTrainedModel`` (same config fields, one
    ``model.safetensors``) load the same way.
    """
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise CheckpointError(f"{folder}: no config.json.")
    try:
        model = RosaliaModel.from_pretrained(folder, dtype=dtype or torch.float32)
    except OSError as err:
        raise CheckpointError(f"{folder}: {err}") from err
    processor = RosaliaProcessor.from_pretrained(folder, sam_img_size=model.sam_img_size)
    _check_seg_id(model, processor, folder)
    return model.to(device), processor


def export_merged(model: RosaliaModel, folder, processor: RosaliaProcessor | None = None) -> Path:
    """Merge LoRA (in place) and write a Hugging Face-style folder in the rosalia layout."""
    return save_pretrained(merge_lora(model), folder, processor)


def _check_seg_id(model: RosaliaModel, processor: RosaliaProcessor, folder) -> None:
    if model.seg_token_id != processor.seg_token_id:
        raise CheckpointError(
            f"{folder}: the model's [SEG] id {model.seg_token_id} differs from the tokenizer's {processor.seg_token_id}."
        )
    vocab = model.get_input_embeddings().weight.shape[0]
    if len(processor.tokenizer) > vocab:
        raise CheckpointError(f"{folder}: tokenizer has {len(processor.tokenizer)} tokens but the embedding only {vocab} rows.")


# ------------------------------------------------------------------------------------------------
# one entry point
# ------------------------------------------------------------------------------------------------
def detect_layout(folder) -> str:
    """'rosalia', 'lisa' or 'hf_llava' from the folder's config.json."""
    folder = Path(folder)
    path = folder / "config.json"
    if not path.exists():
        raise CheckpointError(f"{folder}: no config.json.")
    data = json.loads(path.read_text())
    if data.get("model_type") == "rosalia":
        return "rosalia"
    if "LISAForCausalLM" in data.get("architectures", []) or "out_dim" in data:
        return "lisa"
    if "LlavaForConditionalGeneration" in data.get("architectures", []) or data.get("model_type") == "llava":
        return "hf_llava"
    raise CheckpointError(f"{folder}: config.json is neither a ROSALIA, LISA nor Hugging Face LLaVA config.")


def load_rosalia(folder, dtype: torch.dtype | None = None, device="cpu", **kwargs) -> tuple[RosaliaModel, RosaliaProcessor]:
    """Load any supported layout; extra kwargs go to the layout's loader (vision_tower_path, sam_checkpoint ...)."""
    from monai_ils.models.convert_lisa import load_lisa_checkpoint
    from monai_ils.models.convert_llava import load_hf_llava

    layout = detect_layout(folder)
    if layout == "rosalia":
        return load_pretrained(folder, dtype=dtype, device=device)
    if layout == "lisa":
        return load_lisa_checkpoint(folder, dtype=dtype, device=device, **kwargs)
    if "sam_checkpoint" not in kwargs:
        raise CheckpointError(f"{folder} is a Hugging Face LLaVA folder: pass sam_checkpoint= a local SAM .pth file.")
    return load_hf_llava(folder, dtype=dtype, device=device, **kwargs)


# The converters live in their own modules; their entry points stay importable from here.
from monai_ils.models.convert_lisa import from_lisa_key, load_lisa_checkpoint, save_lisa_checkpoint, to_lisa_key  # noqa: E402
from monai_ils.models.convert_llava import load_hf_llava, load_sam_checkpoint  # noqa: E402
