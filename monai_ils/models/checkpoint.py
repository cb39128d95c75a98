"""Load and save ROSALIA weights in three layouts, all from local folders.

- ``rosalia``: ours. ``config.json`` (``"model_type": "rosalia"``), ``model.safetensors`` with
  RosaliaModel names, tokenizer files, ``preprocessor_config.json``, ``rosalia_processor.json``.
- ``lisa``: the published LISA / ROSALIA layout (``LISAForCausalLM``): LLaVA v1 Llama keys
  ``model.embed_tokens``, ``model.layers.*``, ``model.norm``, ``lm_head``, ``model.mm_projector.*``,
  ``model.visual_model.*`` (SAM), ``model.text_hidden_fcs.*`` and, when present,
  ``model.vision_tower.vision_tower.*`` (CLIP ViT-L/14 224). Merged LISA exports leave the vision
  tower out and name it in ``mm_vision_tower``; give a local CLIP folder then.
- ``hf_llava``: a Hugging Face ``LlavaForConditionalGeneration`` folder plus a SAM checkpoint
  (``sam_vit_h_4b8939.pth``); ``text_hidden_fcs`` starts untrained.
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path

import torch

from monai_ils.models.lora import is_lora, merge_lora
from monai_ils.models.processing import ProcessorSettings, RosaliaProcessor, add_rosalia_tokens
from monai_ils.models.rosalia import RosaliaConfig, RosaliaModel
from monai_ils.models.sam import SamConfig, build_sam, infer_sam_config

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
# LISA / ROSALIA published layout
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


# ------------------------------------------------------------------------------------------------
# Hugging Face LLaVA + SAM
# ------------------------------------------------------------------------------------------------
def load_sam_checkpoint(path, sam_config=None, decoder_num_heads: int = 8):
    """An official SAM checkpoint (``sam_vit_h_4b8939.pth``: keys ``image_encoder.*`` ...) as a Sam module."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = SamConfig.from_any(sam_config) if sam_config is not None else infer_sam_config(state, decoder_num_heads=decoder_num_heads)
    sam = build_sam(cfg)
    sam.load_state_dict(state)
    return sam, cfg


def load_hf_llava(
    folder, sam_checkpoint, sam_config=None, dtype: torch.dtype | None = None, device="cpu", processor_settings: dict | None = None
) -> tuple[RosaliaModel, RosaliaProcessor]:
    """Build ROSALIA from a local ``LlavaForConditionalGeneration`` folder and a SAM checkpoint.

    The LLaVA 1.5 conversation (no system line, no image delimiters) is the default here.
    ``text_hidden_fcs`` is freshly initialised: train it before expecting masks.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor, LlavaForConditionalGeneration

    folder = Path(folder)
    llava = LlavaForConditionalGeneration.from_pretrained(folder, dtype=dtype or torch.float32)
    lcfg = llava.config
    if getattr(lcfg, "projector_hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{folder}: projector activation {lcfg.projector_hidden_act!r} is not supported (gelu only).")
    text = lcfg.text_config.to_dict()
    language_model = AutoModelForCausalLM.from_config(lcfg.text_config, dtype=dtype or torch.float32)
    lm_state = {"model." + k: v for k, v in llava.model.language_model.state_dict().items()}
    lm_state["lm_head.weight"] = llava.lm_head.weight
    language_model.load_state_dict(lm_state, strict=not getattr(lcfg.text_config, "tie_word_embeddings", False))
    vision_tower = llava.model.vision_tower
    sam, sam_cfg = load_sam_checkpoint(sam_checkpoint, sam_config)

    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="right")
    settings = {"use_im_start_end": False, "system_prompt": "", **(processor_settings or {})}
    settings["sam_img_size"] = sam_cfg.img_size
    processor = RosaliaProcessor(tokenizer, CLIPImageProcessor.from_pretrained(folder), ProcessorSettings(**settings))
    strategy = getattr(lcfg, "vision_feature_select_strategy", "default")
    layer = lcfg.vision_feature_layer
    if not isinstance(layer, int):
        raise CheckpointError(f"{folder}: multi-layer vision features ({layer}) are not supported.")
    config = RosaliaConfig(
        text_config={**text, "model_type": text.get("model_type", "llama")},
        vision_config=vision_tower.config.to_dict(),
        sam_config=sam_cfg.to_dict(),
        projector_type="mlp2x_gelu",
        vision_select_layer=int(layer),
        vision_select_feature="patch" if strategy == "default" else "cls_patch",
        seg_token_id=processor.seg_token_id,
    )
    with _default_dtype(dtype):
        model = RosaliaModel(config, language_model=language_model, vision_tower=vision_tower)
    proj = llava.model.multi_modal_projector
    model.mm_projector[0].load_state_dict(proj.linear_1.state_dict())
    model.mm_projector[2].load_state_dict(proj.linear_2.state_dict())
    model.visual_model.load_state_dict(sam.state_dict())
    vocab = len(processor.tokenizer)
    if vocab > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(vocab)
    del llava
    logger.warning("load_hf_llava: text_hidden_fcs is randomly initialised; fine-tune before use.")
    return (model.to(device=device, dtype=dtype) if dtype else model.to(device)), processor


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
    layout = detect_layout(folder)
    if layout == "rosalia":
        return load_pretrained(folder, dtype=dtype, device=device)
    if layout == "lisa":
        return load_lisa_checkpoint(folder, dtype=dtype, device=device, **kwargs)
    if "sam_checkpoint" not in kwargs:
        raise CheckpointError(f"{folder} is a Hugging Face LLaVA folder: pass sam_checkpoint= a local SAM .pth file.")
    return load_hf_llava(folder, dtype=dtype, device=device, **kwargs)


def add_tokens_and_resize(model: RosaliaModel, processor: RosaliaProcessor) -> None:
    """After changing the tokenizer: grow the embeddings and record the [SEG] id in the config."""
    processor.seg_token_id = add_rosalia_tokens(processor.tokenizer, processor.settings.use_im_start_end)
    if len(processor.tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(processor.tokenizer))
    model.config.seg_token_id = processor.seg_token_id
