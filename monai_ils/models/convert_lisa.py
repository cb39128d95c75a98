"""Converter: the published LISA / ROSALIA checkpoint layout (``LISAForCausalLM``) <-> `RosaliaForCausalLM`.

LLaVA v1 Llama keys ``model.embed_tokens``, ``model.layers.*``, ``model.norm``, ``lm_head``,
``model.mm_projector.*``, ``model.visual_model.*`` (SAM), ``model.text_hidden_fcs.*`` and, when present,
``model.vision_tower.vision_tower.*`` (CLIP ViT-L/14 224). Merged LISA exports leave the vision tower
out and name it in ``mm_vision_tower``; give a local CLIP folder then.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from monai_ils.models.checkpoint import CheckpointError, _check_seg_id, _default_dtype, _load_into, read_state_dict
from monai_ils.models.lora import is_lora
from monai_ils.models.processing import ProcessorSettings, RosaliaProcessor
from monai_ils.models.rosalia import RosaliaConfig, RosaliaModel
from monai_ils.models.sam import SamConfig, infer_sam_config


# ------------------------------------------------------------------------------------------------
_LISA_PREFIXES = (  # (ours, LISA's); order matters: the first match wins
    ("language_model.lm_head.", "lm_head."),
    ("mm_projector.", "model.mm_projector."),
    ("vision_tower.", "model.vision_tower.vision_tower."),
    ("visual_model.", "model.visual_model."),
    ("text_hidden_fcs.", "model.text_hidden_fcs."),
    ("language_model.model.", "model."),
)


def to_lisa_key(key: str) -> str:
    for ours, theirs in _LISA_PREFIXES:
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    raise KeyError(f"No LISA name for weight {key!r}.")


def from_lisa_key(key: str) -> str:
    for ours, theirs in _LISA_PREFIXES:
        if key.startswith(theirs):
            return ours + key[len(theirs) :]
    raise KeyError(f"Weight {key!r} is not part of the LISA layout.")


_LLAMA_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps", "rope_theta", "rope_scaling",
    "attention_bias", "mlp_bias", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "head_dim",
    "pretraining_tp", "rope_parameters",
)


def save_lisa_checkpoint(
    model: RosaliaModel, folder, processor: RosaliaProcessor | None = None, vision_tower: str | None = None, shards: int = 1
) -> Path:
    """Write the model as LISA's ``merge_lora_weights_and_save_hf_model.py`` does (LoRA merged).

    With ``vision_tower`` (a folder), the CLIP weights are saved there and named in ``mm_vision_tower``,
    as in the published checkpoints; without it they go into the weights under LISA's names.
    """
    if is_lora(model):
        raise ValueError("save_lisa_checkpoint: merge the LoRA adapters first.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    text = {k: v for k, v in cfg.text_config.items() if k in _LLAMA_KEYS}
    lisa = {
        **text,
        "architectures": ["LISAForCausalLM"],
        "model_type": "llava",
        "mm_hidden_size": int(model.vision_tower.config.hidden_size),
        "mm_vision_select_layer": cfg.vision_select_layer,
        "mm_vision_select_feature": cfg.vision_select_feature,
        "mm_use_im_start_end": processor.settings.use_im_start_end if processor else True,
        "mm_use_im_patch_token": False,
        "image_aspect_ratio": "square",
        "use_mm_proj": True,
        "out_dim": cfg.out_dim,
        "train_mask_decoder": cfg.train_mask_decoder,
        "torch_dtype": str(model.dtype).replace("torch.", ""),
    }
    state = model.state_dict()
    if vision_tower is not None:
        model.vision_tower.save_pretrained(vision_tower)
        if processor is not None:
            processor.image_processor.save_pretrained(vision_tower)
        lisa["mm_vision_tower"] = lisa["vision_tower"] = str(vision_tower)
        state = {k: v for k, v in state.items() if not k.startswith("vision_tower.")}
    else:
        lisa["vision_config"] = model.vision_tower.config.to_dict()
    (folder / "config.json").write_text(json.dumps(lisa, indent=1))
    lisa_state = {to_lisa_key(_with_vision_model_prefix(k)): v for k, v in state.items()}
    keys = list(lisa_state)
    if shards <= 1:
        torch.save({k: v.contiguous() for k, v in lisa_state.items()}, folder / "pytorch_model.bin")
    else:
        weight_map = {}
        for i in range(shards):
            name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
            part = keys[i::shards]
            torch.save({k: lisa_state[k].contiguous() for k in part}, folder / name)
            weight_map.update({k: name for k in part})
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1))
    if processor is not None:
        processor.tokenizer.save_pretrained(folder)
    return folder


def _with_vision_model_prefix(key: str) -> str:
    """Checkpoints name CLIP weights ``vision_model.*``; transformers 5's CLIPVisionModel drops that level."""
    if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
        return "vision_tower.vision_model." + key[len("vision_tower.") :]
    return key


def _align_vision_keys(state: dict, model: RosaliaModel) -> dict:
    """Match ``vision_tower.vision_model.*`` names in a file to the installed CLIPVisionModel's names."""
    ours = set(model.vision_tower.state_dict())
    if any(k.startswith("vision_model.") for k in ours):
        return {_with_vision_model_prefix(k): v for k, v in state.items()}
    prefix = "vision_tower.vision_model."
    return {("vision_tower." + k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def load_lisa_checkpoint(
    folder,
    vision_tower_path=None,
    sam_config=None,
    dtype: torch.dtype | None = None,
    device="cpu",
    processor_settings: dict | None = None,
) -> tuple[RosaliaModel, RosaliaProcessor]:
    """Load a LISA / ROSALIA checkpoint folder (e.g. xinlai/LISA-7B-v1, hangyulmd/rosalia, downloaded).

    vision_tower_path: local CLIP folder when the weights lack the vision tower (default: the
    ``mm_vision_tower`` entry when it is a local folder). sam_config: override the SAM architecture
    (default: read from the weights).
    """
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{folder}: no config.json; is this a LISA/ROSALIA checkpoint folder?")
    data = json.loads(config_path.read_text())
    raw = read_state_dict(folder)
    if not any(k.startswith("model.visual_model.") for k in raw):
        raise CheckpointError(f"{folder}: no 'model.visual_model.*' (SAM) weights; not a LISA/ROSALIA checkpoint.")
    state = {}
    for key, value in raw.items():
        if re.search(r"rotary_emb\.inv_freq$", key):
            continue
        state[from_lisa_key(key)] = value
    del raw

    has_tower = any(k.startswith("vision_tower.") for k in state)
    tower_source = None
    if not has_tower:
        tower_source = _resolve_local(vision_tower_path or data.get("mm_vision_tower") or data.get("vision_tower"), folder)
        if tower_source is None:
            raise CheckpointError(
                f"{folder}: the weights have no vision tower and {data.get('mm_vision_tower')!r} is not a local folder; "
                "pass vision_tower_path= a local CLIP ViT-L/14 folder (e.g. a download of openai/clip-vit-large-patch14)."
            )
        vision_config = CLIPVisionConfig.from_pretrained(tower_source).to_dict()
    elif "vision_config" in data:
        vision_config = data["vision_config"]
    else:
        source = _resolve_local(vision_tower_path or data.get("mm_vision_tower"), folder)
        if source is None:
            raise CheckpointError(f"{folder}: cannot tell the vision tower's architecture; pass vision_tower_path.")
        vision_config = CLIPVisionConfig.from_pretrained(source).to_dict()

    sam = SamConfig.from_any(sam_config) if sam_config is not None else (
        SamConfig.from_any(data["sam_config"]) if "sam_config" in data else infer_sam_config(state, prefix="visual_model.")
    )
    projector = "linear" if "mm_projector.weight" in state else "mlp2x_gelu"  # LLaVA v1 / v1.5 projectors
    text = {k: data[k] for k in _LLAMA_KEYS if k in data}
    text["model_type"] = "llama"
    text["vocab_size"] = int(state["language_model.model.embed_tokens.weight"].shape[0])

    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="right")
    settings = ProcessorSettings(use_im_start_end=bool(data.get("mm_use_im_start_end", True)), **(processor_settings or {}))
    settings.sam_img_size = sam.img_size
    image_processor = CLIPImageProcessor.from_pretrained(tower_source or _resolve_local(vision_tower_path, folder) or folder)
    processor = RosaliaProcessor(tokenizer, image_processor, settings)

    config = RosaliaConfig(
        text_config=text,
        vision_config=vision_config,
        sam_config=sam.to_dict(),
        projector_type=projector,
        vision_select_layer=int(data.get("mm_vision_select_layer", -2)),
        vision_select_feature=data.get("mm_vision_select_feature", "patch"),
        seg_token_id=processor.seg_token_id,
        train_mask_decoder=bool(data.get("train_mask_decoder", True)),
    )
    with _default_dtype(dtype):
        model = RosaliaModel(config, vision_tower=CLIPVisionModel.from_pretrained(tower_source) if tower_source else None)
    _load_into(model, _align_vision_keys(state, model), str(folder), allow_missing=("vision_tower.",) if tower_source else ())
    _check_seg_id(model, processor, folder)
    return (model.to(device=device, dtype=dtype) if dtype else model.to(device)), processor


def _resolve_local(path, folder: Path) -> Path | None:
    if not path:
        return None
    for candidate in (Path(path), folder / str(path)):
        if candidate.is_dir() and (candidate / "config.json").exists():
            return candidate
    return None
