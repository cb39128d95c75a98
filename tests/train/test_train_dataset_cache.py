"""Dataset items, bad-sample errors, augmentation determinism and the frozen-encoder cache."""

import copy
import shutil

import numpy as np
import pytest
import torch

from monai_ils.data.ils_format import read_ils_json, write_ils_json
from monai_ils.train.cache import CacheError, FrozenEncoderCache
from monai_ils.models.processing import to_rgb_uint8
from monai_ils.train.dataset import ILSTrainingDataset, SampleError, collate_ils
from monai_ils.train.transforms import equalize_histogram_uint8, train_image_transform


def test_items_have_both_branches_and_masks(tiny, tiny_data):
    _, processor, _ = tiny
    dataset = ILSTrainingDataset.from_json(tiny_data, processor, equalize_prob=0.0)
    assert len(dataset) == 8 and len(dataset.positive_indices) == len(dataset.negative_indices) == 4
    positive, negative = dataset[0], dataset[1]
    assert positive["positive"] and not negative["positive"]
    assert positive["sam_pixels"].shape == (3, 64, 64) and positive["clip_pixels"].shape == (3, 32, 32)
    assert positive["input_size"] == (48, 64) and positive["original_size"] == (48, 64)
    assert positive["gt_mask"].sum() > 0 and negative["gt_mask"].sum() == 0
    assert positive["gt_mask"][48:].sum() == 0  # padding rows stay empty
    sample = dataset.samples[0]
    mask = np.asarray(sample.load_mask()) > 0
    assert torch.equal(positive["gt_mask"][:48].bool(), torch.from_numpy(mask))  # same size: nearest resize is identity
    answer = positive["labels"][positive["labels"] >= 0]
    assert processor.decode(answer) == sample.answer
    batch = collate_ils([positive, negative], processor.tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 2 and batch["gt_masks"].shape == (2, 64, 64)


def test_equalisation_is_random_but_reproducible(tiny, tiny_data):
    _, processor, _ = tiny
    dataset = ILSTrainingDataset.from_json(tiny_data, processor, equalize_prob=0.5, seed=3)
    variants = [[dataset.variant(i, epoch) for i in range(8)] for epoch in range(4)]
    flat = [v for row in variants for v in row]
    assert 0 < sum(flat) < len(flat)
    assert variants == [[dataset.variant(i, epoch) for i in range(8)] for epoch in range(4)]
    index = next(i for i in range(8) if dataset.variant(i, 0) == 1)
    item = dataset[index]
    rgb = equalize_histogram_uint8(to_rgb_uint8(dataset.samples[index].image_path))  # the shared image path, then equalised
    expected, _ = processor.sam_image(rgb)
    torch.testing.assert_close(item["sam_pixels"], expected)
    torch.testing.assert_close(item["clip_pixels"], processor.vlm_image(rgb))
    plain = next(i for i in range(8) if dataset.variant(i, 0) == 0)
    torch.testing.assert_close(dataset[plain]["sam_pixels"], processor.sam_image(to_rgb_uint8(dataset.samples[plain].image_path))[0])


def test_preprocessing_compose_is_the_shared_image_path(tiny, tiny_data):
    """train_image_transform: LoadCXRd + ScaleCXRIntensityd ([1, H, W] uint8), equalisation of variant 1, both branches."""
    _, processor, _ = tiny
    path = str(read_ils_json(tiny_data)[0].image_path)
    transform = train_image_transform(processor)
    loaded = transform.transforms[1](transform.transforms[0]({"image": path}))["image"]
    assert tuple(loaded.shape) == (1, 48, 64) and loaded.dtype == torch.uint8 and "filename_or_obj" in loaded.meta
    grey = loaded[0].numpy()
    out = transform({"image": path, "variant": 1})
    assert out["original_size"] == (48, 64) and out["input_size"] == (48, 64)
    equalised = np.repeat(equalize_histogram_uint8(grey)[..., None], 3, axis=-1)
    torch.testing.assert_close(out["sam_pixels"], processor.sam_image(equalised)[0])
    assert torch.equal(out["image"][0], torch.from_numpy(equalize_histogram_uint8(grey)))
    assert out["image"].meta["filename_or_obj"] == loaded.meta["filename_or_obj"]  # MetaTensor meta kept
    with pytest.raises(KeyError, match="no 'variant'"):
        transform.transforms[2]({"image": loaded})


def test_bad_samples_name_the_sample(tiny, tiny_data, tmp_path):
    _, processor, _ = tiny
    root = tmp_path / "data"
    shutil.copytree(tiny_data.parent, root)
    samples = read_ils_json(root / "dataset.json")
    (root / "masks" / "img0.png").unlink()
    (root / "images" / "img1.png").write_bytes(b"not an image")
    write_ils_json(root / "dataset.json", samples)
    dataset = ILSTrainingDataset.from_json(root / "dataset.json", processor, equalize_prob=0.0)
    with pytest.raises(SampleError, match=r"sample #0 \(train/s0, instruction 'Segment the pneumonia in the right lung.'\).*img0.png"):
        dataset[0]
    with pytest.raises(SampleError, match=r"sample #2 \(train/s1.*cannot read image .*img1.png"):
        dataset[2]


def test_skip_mode_reports_bad_samples_and_keeps_the_rest(tiny, tiny_data, tmp_path):
    _, processor, _ = tiny
    root = tmp_path / "data"
    shutil.copytree(tiny_data.parent, root)
    (root / "masks" / "img0.png").unlink()
    dataset = ILSTrainingDataset.from_json(root / "dataset.json", processor, equalize_prob=0.0, on_error="skip")
    batch = collate_ils([dataset[0], dataset[1]], processor.tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 1 and batch["index"].tolist() == [1]
    assert len(batch["errors"]) == 1 and "sample #0 (train/s0" in batch["errors"][0] and "img0.png" in batch["errors"][0]
    assert collate_ils([dataset[0]], 0) == {"errors": batch["errors"]}


def test_answer_without_exactly_one_seg_is_refused(tiny, tiny_data):
    _, processor, _ = tiny
    samples = read_ils_json(tiny_data)
    samples[0].answer = "There is no opacity."
    with pytest.raises(SampleError, match=r"sample #0 .*exactly one \[SEG\], found 0"):
        ILSTrainingDataset(samples, processor)[0]


def test_cache_gives_the_same_forward_pass(tiny, tiny_data, tmp_path):
    model, processor, _ = tiny
    plain = ILSTrainingDataset.from_json(tiny_data, processor, equalize_prob=0.5, seed=1)
    cache = FrozenEncoderCache.for_model(tmp_path / "cache", model, processor)
    images = sorted({s.image_path for s in plain.samples})
    assert cache.precompute(model, processor, images, plain.variants(), progress=False) == 2 * len(images)
    assert cache.precompute(model, processor, images, plain.variants(), progress=False) == 0  # resumable: nothing left
    cached = ILSTrainingDataset(plain.samples, processor, equalize_prob=0.5, seed=1, cache=cache)
    pad = processor.tokenizer.pad_token_id
    a = collate_ils([plain[i] for i in range(4)], pad)
    b = collate_ils([cached[i] for i in range(4)], pad)
    assert "sam_pixels" not in b and b["sam_embeddings"].shape[0] == 4
    torch.testing.assert_close(a["gt_masks"], b["gt_masks"])
    keys = ("input_ids", "attention_mask", "labels")
    with torch.no_grad():
        out_a = model(**{k: a[k] for k in keys}, sam_pixels=a["sam_pixels"], clip_pixels=a["clip_pixels"], input_sizes=a["input_sizes"])
        out_b = model(**{k: b[k] for k in keys}, sam_embeddings=b["sam_embeddings"], vision_features=b["vision_features"], input_sizes=b["input_sizes"])
    torch.testing.assert_close(out_b.lm_loss, out_a.lm_loss)
    for x, y in zip(out_a.mask_logits, out_b.mask_logits):
        torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.visual_model.image_encoder.patch_embed.proj.weight.add_(1.0)
    with pytest.raises(CacheError, match="other encoder weights"):
        FrozenEncoderCache.for_model(tmp_path / "cache", other, processor)
    # the training transform is part of the fingerprint: another preprocessing is another cache
    transform = train_image_transform(processor)
    FrozenEncoderCache.for_model(tmp_path / "with_transform", model, processor, transform=transform)
    FrozenEncoderCache.for_model(tmp_path / "with_transform", model, processor, transform=train_image_transform(processor))
    transform.transforms[0].loader.frontal_check = "raise"
    with pytest.raises(CacheError, match="other encoder weights or preprocessing"):
        FrozenEncoderCache.for_model(tmp_path / "with_transform", model, processor, transform=transform)
