"""ROSALIA model: [SEG] handling, forward/backward, inference API, LoRA merge."""

import copy

import numpy as np
import pytest
import torch

from monai_ils.models import (
    IMAGE_TOKEN_INDEX,
    SegTokenError,
    apply_lora,
    export_merged,
    load_pretrained,
    merge_lora,
    seg_token_id,
)
from monai_ils.models.testing import TINY_VISION
from monai_ils.train.dataset import ILSTrainingDataset, collate_ils
from monai_ils.train.losses import RosaliaLoss
from monai_ils.data.ils_format import read_ils_json

N_PATCHES = (TINY_VISION["image_size"] // TINY_VISION["patch_size"]) ** 2


def _batch(processor, data, indices=(0, 1)):
    dataset = ILSTrainingDataset(read_ils_json(data), processor, equalize_prob=0.0)
    return collate_ils([dataset[i] for i in indices], processor.tokenizer.pad_token_id)


def _inputs(batch):
    keys = ("input_ids", "attention_mask", "labels", "sam_pixels", "clip_pixels")
    return {k: batch[k] for k in keys} | {"input_sizes": batch["input_sizes"]}


def test_seg_is_one_token_and_survives_save(tiny):
    model, processor, folder = tiny
    tok = processor.tokenizer
    assert len(tok("[SEG]", add_special_tokens=False).input_ids) == 1
    ids = tok("[SEG] There is no edema.", add_special_tokens=False).input_ids
    assert ids[0] == processor.seg_token_id == model.seg_token_id
    reloaded = type(tok).from_pretrained(folder)
    assert reloaded("[SEG]", add_special_tokens=False).input_ids == [processor.seg_token_id]


def test_tokenizer_without_seg_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({"<unk>": 0, "SEG": 1, "[": 2, "]": 3}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")
    with pytest.raises(SegTokenError, match=r"splits '\[SEG\]' into 3 ids"):
        seg_token_id(tok)


def test_seg_position_after_image_tokens_are_inserted(tiny):
    model, processor, _ = tiny
    ids, labels = processor.encode_example("Segment the edema in the left lung.", "[SEG] There is no edema in the left lung.")
    image_at = int((ids == IMAGE_TOKEN_INDEX).nonzero())
    seg_at = int((ids == processor.seg_token_id).nonzero())
    assert image_at < seg_at
    assert labels[seg_at] == processor.seg_token_id and labels[image_at] == -100
    rgb = np.full((40, 60), 90, np.uint8)
    sam, size = processor.sam_image(rgb)
    out = model(ids[None], torch.ones_like(ids)[None], labels[None], sam_pixels=sam[None], clip_pixels=processor.vlm_image(rgb)[None], input_sizes=[size])
    # the one placeholder became N_PATCHES positions, so [SEG] moves by N_PATCHES - 1
    assert out.seg_positions[0].tolist() == [seg_at + N_PATCHES - 1]
    assert out.logits.shape[1] == len(ids) + N_PATCHES - 1
    # padding on the right and a second, shorter row do not move it
    short, _ = processor.encode_example("Segment the edema.", "[SEG] There is no edema.")
    batch_ids = torch.full((2, len(ids)), processor.tokenizer.pad_token_id)
    batch_ids[0], batch_ids[1, : len(short)] = ids, short
    attention = (torch.arange(len(ids))[None] < torch.tensor([[len(ids)], [len(short)]])).long()
    out2 = model(batch_ids, attention, sam_pixels=sam[None].repeat(2, 1, 1, 1), clip_pixels=processor.vlm_image(rgb)[None].repeat(2, 1, 1, 1))
    short_seg = int((short == processor.seg_token_id).nonzero())
    assert [p.tolist() for p in out2.seg_positions] == [[seg_at + N_PATCHES - 1], [short_seg + N_PATCHES - 1]]


def test_forward_backward_on_positive_and_negative(tiny, tiny_data):
    model, processor, _ = tiny
    model = copy.deepcopy(model)
    apply_lora(model, r=4, alpha=8, dropout=0.0)
    batch = _batch(processor, tiny_data, (0, 1))
    assert batch["positive"].tolist() == [True, False]
    out = model(**_inputs(batch))
    assert [tuple(m.shape) for m in out.mask_logits] == [(1, *s) for s in batch["input_sizes"]]
    losses = RosaliaLoss()(out.lm_loss, out.mask_logits, batch["gt_masks"], batch["positive"], batch["input_sizes"])
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    def has_grad(fragment):
        return any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if fragment in n)
    # lora_B starts at zero, so lora_A's first gradient is zero too; it must still be trainable
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_A" in n)
    for trained in ("lora_B", "text_hidden_fcs", "visual_model.mask_decoder", "embed_tokens", "lm_head"):
        assert has_grad(trained), trained
    for frozen in ("vision_tower.", "mm_projector", "visual_model.image_encoder", "visual_model.prompt_encoder"):
        assert all(g is None for n, g in grads.items() if frozen in n), frozen
        assert not any(p.requires_grad for n, p in model.named_parameters() if frozen in n)
    lora_modules = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in grads if "lora_A" in n}
    assert lora_modules == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_inference_api_segment_and_generate(tiny, tiny_data):
    model, processor, _ = tiny
    rgb = np.random.default_rng(0).integers(0, 255, (30, 50), dtype=np.uint8)
    sam, size = processor.sam_image(rgb)
    encoded = model.encode_images(sam[None], processor.vlm_image(rgb)[None], [size], [rgb.shape])
    prompt = processor.encode_prompt("Segment the opacity.", answer_prefix="[SEG]")
    assert prompt[-1] == processor.seg_token_id
    masks = model.segment(encoded, [prompt])
    assert masks[0].shape == (1, 30, 50)
    # the same as a pixel-level forward pass with output at the original size
    ids = prompt[None]
    direct = model(ids, torch.ones_like(ids), sam_pixels=sam[None], clip_pixels=processor.vlm_image(rgb)[None], input_sizes=[size], output_sizes=[(30, 50)])
    torch.testing.assert_close(direct.mask_logits[0], masks[0])
    result = model.generate(encoded, [processor.encode_prompt("Segment the opacity.")], max_new_tokens=6)[0]
    assert 1 <= len(result["output_ids"]) <= 6
    n_seg = int((result["output_ids"] == processor.seg_token_id).sum())
    assert result["mask_logits"].shape == (n_seg, 30, 50)
    assert isinstance(processor.decode(result["output_ids"]), str)


def test_generate_masks_use_the_hidden_state_that_predicts_seg(tiny):
    """Force the LM to emit [SEG] first: generate's mask must equal the teacher-forced one."""
    model, processor, _ = tiny
    model = copy.deepcopy(model)
    head = model.language_model.get_output_embeddings()
    with torch.no_grad():
        head.bias = None
        head.weight.zero_()
        head.weight[processor.seg_token_id] = 0.0
    # a constant logit for [SEG] only: argmax picks it at every step
    with torch.no_grad():
        head.weight[:] = 0
    bias = torch.zeros(head.weight.shape[0])
    bias[processor.seg_token_id] = 10.0
    head.bias = torch.nn.Parameter(bias)
    rgb = np.full((32, 32), 120, np.uint8)
    sam, size = processor.sam_image(rgb)
    encoded = model.encode_images(sam[None], processor.vlm_image(rgb)[None], [size], [rgb.shape])
    generated = model.generate(encoded, [processor.encode_prompt("Segment the edema.")], max_new_tokens=1)[0]
    assert generated["output_ids"].tolist() == [processor.seg_token_id]
    forced = model.segment(encoded, [processor.encode_prompt("Segment the edema.", answer_prefix="[SEG]")])[0]
    torch.testing.assert_close(generated["mask_logits"], forced, atol=1e-5, rtol=1e-5)


def test_merge_lora_keeps_outputs_and_exports(tiny, tiny_data, tmp_path):
    model, processor, _ = tiny
    model = copy.deepcopy(model).eval()
    apply_lora(model, r=4, alpha=8, dropout=0.0)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    batch = _batch(processor, tiny_data, (2, 3))
    with torch.no_grad():
        before = model(**_inputs(batch))
    merged = merge_lora(copy.deepcopy(model))
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        after = merged(**_inputs(batch))
    torch.testing.assert_close(after.logits, before.logits, atol=1e-4, rtol=1e-4)
    for a, b in zip(after.mask_logits, before.mask_logits):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    export_merged(model, tmp_path / "merged", processor)
    reloaded, reloaded_processor = load_pretrained(tmp_path / "merged")
    with torch.no_grad():
        again = reloaded(**_inputs(batch))
    torch.testing.assert_close(again.logits, before.logits, atol=1e-4, rtol=1e-4)
    assert reloaded_processor.seg_token_id == processor.seg_token_id
