"""Loss terms, the balanced sampler and histogram equalisation, checked against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from monai_ils.train import BalancedBatchSampler, EqualizeHistogram, RandEqualizeHistogramd, RosaliaLoss, equalize_histogram_uint8
from monai_ils.train.transforms import EqualizeHistogramVariantd


def test_loss_terms_by_hand():
    positive_target = torch.zeros(4, 4)
    positive_target[:2] = 1.0  # 8 of 16 pixels
    logits = [torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)]
    targets = [positive_target, torch.zeros(4, 4)]
    out = RosaliaLoss()(torch.tensor(2.0), logits, targets, [True, False])
    # p = 0.5 everywhere: BCE = ln 2 for both masks; Dice = 1 - 2*4/(8+8) = 0.5, positive only
    assert out["bce"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert out["dice"].item() == pytest.approx(0.5, abs=1e-6)
    assert out["loss"].item() == pytest.approx(0.5 * 2.0 + 5.0 * math.log(2) + 1.0 * 0.5, abs=1e-5)


def test_dice_ignores_negatives_and_negatives_pull_towards_empty():
    loss = RosaliaLoss(ce=0.0, bce=1.0, dice=1.0)
    target = torch.zeros(4, 4)
    confident_empty = loss(None, [torch.full((1, 4, 4), -20.0)], [target], [False])
    confident_lesion = loss(None, [torch.full((1, 4, 4), 20.0)], [target], [False])
    assert confident_empty["dice"].item() == 0.0 and confident_lesion["dice"].item() == 0.0
    assert confident_empty["loss"].item() < 1e-6 < 19.0 < confident_lesion["loss"].item()


def test_loss_crops_padding_and_needs_one_mask_per_sample():
    loss = RosaliaLoss()
    padded = torch.zeros(8, 8)
    padded[:2, :3] = 1.0
    out = loss(None, [torch.full((1, 2, 3), 20.0)], [padded], [True], input_sizes=[(2, 3)])
    assert out["dice"].item() < 1e-6
    with pytest.raises(ValueError, match="exactly one \\[SEG\\]"):
        loss(None, [torch.zeros(2, 2, 3)], [padded], [True], input_sizes=[(2, 3)])


def test_balanced_batches_and_resume():
    positives, negatives = list(range(0, 10)), list(range(100, 103))
    sampler = BalancedBatchSampler(positives, negatives, batch_size=4, seed=7)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    for batch in batches:
        assert sum(i < 100 for i in batch) == sum(i >= 100 for i in batch) == 2
    assert sorted(i for b in batches for i in b if i < 100) == positives  # every positive once per epoch
    sampler.advance(2)
    state = sampler.state_dict()
    resumed = BalancedBatchSampler(positives, negatives, batch_size=4, seed=7)
    resumed.load_state_dict(state)
    assert list(resumed) == batches[2:]
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new order each epoch
    with pytest.raises(ValueError, match="seed"):
        BalancedBatchSampler(positives, negatives, 4, seed=1).load_state_dict(state)


def test_balanced_sampler_shards_across_ranks_and_odd_batches():
    ranks = [list(BalancedBatchSampler(range(9), range(50, 59), 2, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}
    odd = list(BalancedBatchSampler(range(4), range(10, 14), 3, seed=0))
    flat = [i for b in odd for i in b]
    assert [i < 10 for i in flat] == [True, False] * 4
    with pytest.raises(ValueError, match="no negative"):
        BalancedBatchSampler([1], [], 2)


def test_histogram_equalisation_by_hand():
    image = np.array([[0, 0], [1, 2]], dtype=np.uint8)
    # cdf = 2, 3, 4; cdf_min = 2 -> (cdf - 2) / 2 * 255 = 0, 127.5 -> 128, 255
    assert equalize_histogram_uint8(image).tolist() == [[0, 0], [128, 255]]
    assert equalize_histogram_uint8(np.full((3, 3), 9, np.uint8)).tolist() == [[9] * 3] * 3
    tensor = EqualizeHistogram()(torch.tensor(image))
    assert isinstance(tensor, torch.Tensor) and tensor.tolist() == [[0, 0], [128, 255]]
    always = RandEqualizeHistogramd(keys="image", prob=1.0)
    never = RandEqualizeHistogramd(keys="image", prob=0.0)
    assert always({"image": image})["image"].tolist() == [[0, 0], [128, 255]]
    assert never({"image": image})["image"].tolist() == image.tolist()
    # channel-first, as the shared image path gives it: each channel on its own
    stacked = np.stack([image, np.full((2, 2), 7, np.uint8)])
    assert EqualizeHistogram(channel_dim=0)(stacked).tolist() == [[[0, 0], [128, 255]], [[7, 7], [7, 7]]]
    variant = EqualizeHistogramVariantd(keys="image")
    assert variant({"image": image[None], "variant": 1})["image"].tolist() == [[[0, 0], [128, 255]]]
    assert variant({"image": image[None], "variant": 0})["image"].tolist() == [image.tolist()]
    with pytest.raises(ValueError, match="must be 0 or 1"):
        variant({"image": image[None], "variant": 2})
