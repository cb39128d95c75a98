"""Checkpoint layouts: LISA/ROSALIA published layout, Hugging Face LLaVA + SAM, our own."""

import json

import numpy as np
import pytest
import torch

from monai_ils.models import CheckpointError, detect_layout, load_lisa_checkpoint, load_rosalia, save_lisa_checkpoint
from monai_ils.models.sam import build_sam, infer_sam_config
from monai_ils.models.testing import TINY_SAM, build_tiny_rosalia


def _outputs(model, processor):
    rgb = np.random.default_rng(3).integers(0, 255, (36, 52), dtype=np.uint8)
    sam, size = processor.sam_image(rgb)
    ids = processor.encode_prompt("Segment the pneumonia in the right lung.", answer_prefix="[SEG]")
    with torch.no_grad():
        return model(ids[None], torch.ones_like(ids)[None], sam_pixels=sam[None], clip_pixels=processor.vlm_image(rgb)[None], input_sizes=[size])


def test_tiny_checkpoint_in_lisa_layout_loads(tiny, tmp_path):
    model, processor, _ = tiny
    folder = save_lisa_checkpoint(model, tmp_path / "lisa", processor, vision_tower=tmp_path / "lisa" / "clip", shards=2)
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())["weight_map"]
    for key in (
        "model.visual_model.image_encoder.patch_embed.proj.weight",
        "model.visual_model.mask_decoder.output_upscaling.0.weight",
        "model.visual_model.prompt_encoder.no_mask_embed.weight",
        "model.text_hidden_fcs.0.0.weight",
        "model.text_hidden_fcs.0.2.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.embed_tokens.weight",
        "model.norm.weight",
        "model.mm_projector.weight",
        "lm_head.weight",
    ):
        assert key in index, key
    assert not any("vision_tower" in k for k in index)  # as in LISA's merged exports
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LISAForCausalLM"] and config["mm_use_im_start_end"] is True
    assert detect_layout(folder) == "lisa"

    loaded, loaded_processor = load_rosalia(folder)
    assert loaded.config.sam_config == TINY_SAM.to_dict()  # recovered from the weights alone
    assert loaded_processor.seg_token_id == processor.seg_token_id
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(theirs[key], ours[key], msg=key)
    a, b = _outputs(model, processor), _outputs(loaded, loaded_processor)
    torch.testing.assert_close(b.logits, a.logits)
    torch.testing.assert_close(b.mask_logits[0], a.mask_logits[0])


def test_lisa_layout_without_local_vision_tower_is_explained(tiny, tmp_path):
    model, processor, _ = tiny
    folder = save_lisa_checkpoint(model, tmp_path / "lisa", processor, vision_tower=tmp_path / "lisa" / "clip")
    config = json.loads((folder / "config.json").read_text())
    config["mm_vision_tower"] = config["vision_tower"] = "openai/clip-vit-large-patch14"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="vision_tower_path"):
        load_lisa_checkpoint(folder)
    loaded, _ = load_lisa_checkpoint(folder, vision_tower_path=tmp_path / "lisa" / "clip")
    theirs = loaded.vision_tower.state_dict()
    for key, value in model.vision_tower.state_dict().items():
        torch.testing.assert_close(theirs[key], value, msg=key)


def test_lisa_layout_with_vision_tower_inside(tmp_path):
    model, processor, folder = build_tiny_rosalia(tmp_path / "lisa", layout="lisa")
    save_lisa_checkpoint(model, tmp_path / "inside", processor)  # vision tower kept in the weights
    state = torch.load(tmp_path / "inside" / "pytorch_model.bin", weights_only=True)
    assert any(k.startswith("model.vision_tower.vision_tower.vision_model.") for k in state)
    loaded, loaded_processor = load_lisa_checkpoint(tmp_path / "inside", vision_tower_path=folder / "clip")
    torch.testing.assert_close(_outputs(loaded, loaded_processor).logits, _outputs(model, processor).logits)


def test_infer_sam_config_from_official_key_names():
    sam = build_sam(TINY_SAM)
    assert infer_sam_config(sam.state_dict()) == TINY_SAM


def test_hf_llava_checkpoint_loads(tiny, tmp_path):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    _, processor, _ = tiny
    tokenizer = processor.tokenizer
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
        text_config=LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4, vocab_size=len(tokenizer), tie_word_embeddings=False),
        image_token_id=0,
    )
    torch.manual_seed(0)
    llava = LlavaForConditionalGeneration(config).eval()
    llava.save_pretrained(tmp_path / "llava")
    tokenizer.save_pretrained(tmp_path / "llava")
    processor.image_processor.save_pretrained(tmp_path / "llava")
    torch.save(build_sam(TINY_SAM).state_dict(), tmp_path / "sam_tiny.pth")
    assert detect_layout(tmp_path / "llava") == "hf_llava"
    with pytest.raises(CheckpointError, match="sam_checkpoint"):
        load_rosalia(tmp_path / "llava")
    model, llava_processor = load_rosalia(tmp_path / "llava", sam_checkpoint=tmp_path / "sam_tiny.pth")
    assert llava_processor.settings.use_im_start_end is False
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    with torch.no_grad():
        expected = llava(input_ids=ids).logits
        got = model.language_model(input_ids=ids).logits
        torch.testing.assert_close(got, expected)
        pixels = torch.randn(1, 3, 32, 32)
        ref = llava.model.get_image_features(pixel_values=pixels, vision_feature_layer=-2, vision_feature_select_strategy="default")
        ref = ref.pooler_output if hasattr(ref, "pooler_output") else ref
        ref = torch.cat(list(ref), 0) if isinstance(ref, (list, tuple)) else ref
        ours = model.mm_projector(model.vision_features(pixels))
        torch.testing.assert_close(ours.reshape(ref.shape), ref)


def test_lisa_7b_architecture_maps_onto_the_published_names():
    from monai_ils.models.checkpoint import from_lisa_key, to_lisa_key
    from monai_ils.models.rosalia import RosaliaModel, lisa_7b_config

    with torch.device("meta"):
        model = RosaliaModel(lisa_7b_config())
    shapes = {to_lisa_key(k): tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["model.embed_tokens.weight"] == (32003, 4096) and shapes["lm_head.weight"] == (32003, 4096)
    assert shapes["model.layers.31.mlp.gate_proj.weight"] == (11008, 4096)
    assert shapes["model.mm_projector.weight"] == (4096, 1024)  # LLaVA v1: one Linear from CLIP-L's 1024
    assert shapes["model.text_hidden_fcs.0.0.weight"] == (4096, 4096) and shapes["model.text_hidden_fcs.0.2.weight"] == (256, 4096)
    assert shapes["model.visual_model.image_encoder.pos_embed"] == (1, 64, 64, 1280)
    assert shapes["model.visual_model.image_encoder.blocks.31.attn.rel_pos_h"] == (127, 80)  # global block of ViT-H
    assert shapes["model.visual_model.mask_decoder.iou_token.weight"] == (1, 256)
    assert all(from_lisa_key(k) in model.state_dict() for k in shapes)
    n_params = sum(v.numel() for v in model.state_dict().values())
    assert 7.5e9 < n_params < 7.8e9  # Llama-7B + CLIP-L + SAM-H
