"""The small study-chain transforms: working resize, binary anatomy, lobes from zones, merged anatomy, the study CTR."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_ils.generation.study_transforms import (
    LOBE_ZONE_APPROXIMATION,
    BinaryAnatomyd,
    LobesFromZonesd,
    MergeAnatomyd,
    StudyCardiothoracicRatiod,
    WorkingResized,
)


def _box(shape, rows, cols, value=1):
    mask = np.zeros((1, *shape), np.uint8)
    mask[0, rows[0]:rows[1], cols[0]:cols[1]] = value
    return mask


def test_working_resize_shrinks_only_a_larger_image_and_keeps_the_original():
    image = MetaTensor(torch.arange(40 * 80, dtype=torch.float32).reshape(1, 40, 80))
    out = WorkingResized(max_size=20)({"image": image})
    assert tuple(out["image"].shape) == (1, 10, 20)  # longest side 80 -> 20, aspect kept
    assert out["original_image"] is image  # kept, not copied
    # area mode: each working pixel is the mean of a 4 x 4 block
    assert float(out["image"][0, 0, 0]) == pytest.approx(float(image[0, :4, :4].mean()))
    small = WorkingResized(max_size=100)({"image": image})
    assert small["image"] is image  # never upsampled
    assert tuple(WorkingResized(max_size=None)({"image": image})["image"].shape) == (1, 40, 80)
    with pytest.raises(ValueError, match="max_size"):
        WorkingResized(max_size=0)


def test_binary_anatomy_and_lobes_from_zones():
    shape = (10, 12)
    anatomy = {"right lung base": _box(shape, (6, 10), (0, 5), 255), "right mid zone lung": _box(shape, (3, 6), (0, 5), 7)[0]}
    d = BinaryAnatomyd()({"anatomy": anatomy})
    assert all(m.dtype == bool and m.shape == (1, *shape) for m in d["anatomy"].values())
    d = LobesFromZonesd()(d)
    assert np.array_equal(d["anatomy"]["lung lower lobe right"], d["anatomy"]["right lung base"])
    assert np.array_equal(d["anatomy"]["lung middle lobe right"], d["anatomy"]["right mid zone lung"])
    assert "lung upper lobe right" not in d["anatomy"]  # its apical and upper zones are missing
    own = {**d["anatomy"], "lung lower lobe right": np.zeros((1, *shape), bool)}
    kept = LobesFromZonesd()({"anatomy": own})["anatomy"]["lung lower lobe right"]
    assert not kept.any()  # a backend's own lobe mask is not replaced
    assert set(LOBE_ZONE_APPROXIMATION) == {"lung upper lobe right", "lung middle lobe right", "lung lower lobe right",
                                            "lung upper lobe left", "lung lower lobe left"}


def test_merge_anatomy_first_source_wins_and_labels_from_restricts():
    a = {"right lung": "A-right", "heart": "A-heart"}
    b = {"right lung": "B-right", "right lung base": "B-base", "heart": "B-heart"}
    d = MergeAnatomyd(keys=["a", "b"])({"a": a, "b": b})
    assert d["anatomy"] == {"right lung": "A-right", "heart": "A-heart", "right lung base": "B-base"}
    d = MergeAnatomyd(keys=["b", "a"], labels_from={"b": ["right lung base"]})({"a": a, "b": b})
    assert d["anatomy"] == {"right lung base": "B-base", "right lung": "A-right", "heart": "A-heart"}
    with pytest.raises(ValueError, match="not among keys"):
        MergeAnatomyd(keys=["a"], labels_from={"c": ["heart"]})


def test_study_ctr_hand_computed_and_none_when_unmeasurable():
    shape = (20, 40)
    anatomy = {
        "heart": _box(shape, (10, 16), (14, 26)),  # 12 columns wide
        "right lung": _box(shape, (2, 18), (5, 18)),
        "left lung": _box(shape, (2, 18), (22, 35)),  # thorax from column 5 to 34: 30 columns
    }
    assert StudyCardiothoracicRatiod()({"anatomy": anatomy})["ctr"] == pytest.approx(12 / 30)
    assert StudyCardiothoracicRatiod()({"anatomy": {**anatomy, "heart": np.zeros((1, *shape))}})["ctr"] is None
    assert StudyCardiothoracicRatiod()({"anatomy": {"heart": anatomy["heart"]}})["ctr"] is None
