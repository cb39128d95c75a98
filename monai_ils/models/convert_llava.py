"""Converter: a Hugging Face ``LlavaForConditionalGeneration`` folder + an official SAM checkpoint -> `RosaliaForCausalLM`.

``text_hidden_fcs`` starts untrained (LLaVA has no [SEG] head): fine-tune before expecting masks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from monai_ils.models.checkpoint import CheckpointError, _default_dtype
from monai_ils.models.processing import ProcessorSettings, RosaliaProcessor
from monai_ils.models.rosalia import RosaliaConfig, RosaliaModel
from monai_ils.models.sam import SamConfig, build_sam, infer_sam_config

logger = logging.getLogger(__name__)


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
