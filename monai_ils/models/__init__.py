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
from monai_ils.models.rosalia import EncodedImages, RosaliaConfig, RosaliaModel, RosaliaOutput, mask_from_logits, pad_sequences
from monai_ils.models.sam import SamConfig, build_sam, infer_sam_config
