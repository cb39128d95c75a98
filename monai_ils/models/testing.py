"""A tiny ROSALIA (random weights, offline tokenizer) for tests and CPU benchmarks.

``build_tiny_rosalia(folder)`` writes a complete model folder in the real layout and loads it back
through the real loader, so tests exercise the same code as real checkpoints.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from monai_ils.models.processing import (
    IM_END_TOKEN,
    IM_START_TOKEN,
    LLAVA_V1_SYSTEM,
    ProcessorSettings,
    RosaliaProcessor,
)
from monai_ils.models.rosalia import RosaliaConfig, RosaliaModel
from monai_ils.models.sam import SamConfig
from monai_ils.vocab import ANSWER_TEMPLATES, INSTRUCTION_LOCATIONS, INSTRUCTION_TEMPLATES, LESION_TYPES, SEG_TOKEN

TINY_SAM = SamConfig(
    img_size=64,
    patch_size=16,
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    window_size=2,
    prompt_embed_dim=32,
    mask_in_chans=8,
    decoder_depth=1,
    decoder_mlp_dim=64,
    decoder_num_heads=8,
    iou_head_hidden_dim=32,
)
TINY_TEXT = dict(
    model_type="llama",
    hidden_size=48,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)


def _corpus() -> list[str]:
    words = [LLAVA_V1_SYSTEM, "USER : ASSISTANT", "the a of in and , . : ?"]
    words += list(INSTRUCTION_TEMPLATES.values()) + list(ANSWER_TEMPLATES.values())
    words += list(LESION_TYPES) + list(INSTRUCTION_LOCATIONS.values()) + list(INSTRUCTION_LOCATIONS)
    return [re.sub(r"\{\w+\}", " ", w).replace(SEG_TOKEN, " ") for w in words]


def build_tiny_tokenizer():
    """A WordLevel tokenizer over the template words, as a PreTrainedTokenizerFast (BOS added like Llama)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(_corpus(), trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"]))
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>", padding_side="right"
    )
    tokenizer.add_tokens([SEG_TOKEN])
    tokenizer.add_tokens([IM_START_TOKEN, IM_END_TOKEN], special_tokens=True)
    return tokenizer


def tiny_processor(sam_img_size: int = TINY_SAM.img_size, vision_size: int = TINY_VISION["image_size"]) -> RosaliaProcessor:
    from transformers import CLIPImageProcessor

    image_processor = CLIPImageProcessor(size={"shortest_edge": vision_size}, crop_size={"height": vision_size, "width": vision_size})
    return RosaliaProcessor(build_tiny_tokenizer(), image_processor, ProcessorSettings(sam_img_size=sam_img_size))


def tiny_config(processor: RosaliaProcessor, sam: SamConfig = TINY_SAM) -> RosaliaConfig:
    text = dict(TINY_TEXT, vocab_size=len(processor.tokenizer))
    text.update(bos_token_id=processor.tokenizer.bos_token_id, eos_token_id=processor.tokenizer.eos_token_id)
    return RosaliaConfig(text_config=text, vision_config=dict(TINY_VISION), sam_config=sam.to_dict(), seg_token_id=processor.seg_token_id)


def build_tiny_rosalia(folder, layout: str = "rosalia", seed: int = 0):
    """Write a tiny random ROSALIA to ``folder`` in ``layout`` ('rosalia' or 'lisa') and load it back.

    Returns (model, processor, folder). In the LISA layout the CLIP tower goes to ``folder/clip``, named
    by ``mm_vision_tower``, as in the published checkpoints.
    """
    from monai_ils.models.checkpoint import load_lisa_checkpoint, load_pretrained, save_lisa_checkpoint, save_pretrained

    folder = Path(folder)
    torch.manual_seed(seed)
    processor = tiny_processor()
    model = RosaliaModel(tiny_config(processor))
    if layout == "rosalia":
        save_pretrained(model, folder, processor)
        model, processor = load_pretrained(folder)
    elif layout == "lisa":
        save_lisa_checkpoint(model, folder, processor, vision_tower=folder / "clip")
        model, processor = load_lisa_checkpoint(folder)
    else:
        raise ValueError(f"Unknown layout {layout!r}; expected 'rosalia' or 'lisa'.")
    return model, processor, folder


def write_tiny_ils_dataset(folder, n_images: int = 4, size: tuple[int, int] = (48, 64), seed: int = 0):
    """A small MIMIC-ILS dataset: grey images with one bright blob, a positive and a negative pair each.

    Written with ``write_ils_json`` and mask PNGs, so it goes through the real reader. Returns the JSON path.
    """
    import numpy as np
    from PIL import Image

    from monai_ils.data.ils_format import ILSSample, save_mask_png, write_ils_json
    from monai_ils.data.templates import render_answer, render_instruction

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    lesions = ["pneumonia", "edema", "opacity", "effusion"]
    sides = ["right lung", "left lung"]
    samples = []
    for i in range(n_images):
        cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
        blob = ((yy - cy) / (h / 6)) ** 2 + ((xx - cx) / (w / 6)) ** 2 <= 1.0
        image = rng.normal(70, 15, size).clip(0, 255)
        image[blob] += 120
        image_path = folder / "images" / f"img{i}.png"
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(image_path)
        mask_path = save_mask_png(blob, folder / "masks" / f"img{i}.png")
        lesion, side, other = lesions[i % len(lesions)], sides[i % 2], sides[(i + 1) % 2]
        common = dict(split="train", study_key=f"s{i}", image_path=str(image_path), question_type="basic", target=lesion)
        samples.append(
            ILSSample(
                **common,
                instruction=render_instruction("basic", lesion, [side]),
                answer=render_answer("basic", "positive", lesion, [side]),
                positive=True,
                seg_mask_path=str(mask_path),
                location=[side],
            )
        )
        samples.append(
            ILSSample(
                **common,
                instruction=render_instruction("basic", lesion, [other]),
                answer=render_answer("basic", "negative", lesion, [other]),
                positive=False,
                location=[other],
            )
        )
    return write_ils_json(folder / "dataset.json", samples)
