"""ROSALIA: a LLaVA-style vision-language model whose [SEG] token prompts SAM (see docs/model.md)."""

from monai_ils.models.checkpoint import (
    CheckpointError,
    detect_layout,
    export_merged,
    load_hf_llava,
    load_lisa_checkpoint,
    load_pretrained,
    load_rosalia,
    save_lisa_checkpoint,
    save_pretrained,
)
from monai_ils.models.lora import apply_lora, load_lora, merge_lora, save_lora
from monai_ils.models.processing import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    ProcessorSettings,
    RosaliaProcessor,
    SegTokenError,
    seg_token_id,
)
from monai_ils.models.rosalia import (
    EncodedImages,
    RosaliaConfig,
    RosaliaForCausalLM,
    RosaliaModel,
    RosaliaOutput,
    lisa_7b_config,
    mask_from_logits,
    pad_sequences,
)
from monai_ils.models.sam import SamConfig, build_sam, infer_sam_config


def _register_auto_classes() -> None:
    """``AutoConfig`` / ``AutoModel`` / ``AutoModelForCausalLM`` know "rosalia" once monai_ils is imported."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    try:
        AutoConfig.register(RosaliaConfig.model_type, RosaliaConfig)
    except ValueError:  # already registered (module reloaded)
        pass
    for auto in (AutoModel, AutoModelForCausalLM):
        try:
            auto.register(RosaliaConfig, RosaliaForCausalLM)
        except ValueError:
            pass


_register_auto_classes()
