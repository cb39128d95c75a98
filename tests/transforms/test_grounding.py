"""Anomaly map, components, refinement, location verification and CTR on hand-checked cases."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_ils.transforms import (
    AnomalyMap,
    AnomalyMapd,
    CardiothoracicRatio,
    CardiothoracicRatiod,
    FilterLesionBoxesd,
    GroundingInputError,
    IntersectingComponents,
    IntersectingComponentsd,
    RefineLesionMask,
    RefineLesionMaskd,
    VerifyLocations,
    VerifyLocationsd,
)
from tests.transforms.synthetic import SHAPE, anatomy, rect


def test_anomaly_map_thresholds_per_lesion_type():
    image = np.zeros((1, 4, 4), np.float32)
    image[0, 0] = [0, 10, 25, 26]  # x - x̂ over I_max = 255: 0, 0.039, 0.098, 0.102
    image[0, 1] = [200, 3, 2, 1]
    healthy = np.zeros_like(image)
    healthy[0, 1, 0] = 250  # negative difference clips to 0
    op = AnomalyMap(noise_radius=0, return_score=True)
    anomaly, score = op(image, healthy, max_intensity=255)
    assert anomaly.dtype == bool and anomaly.shape == (1, 4, 4)
    assert anomaly[0, 0].tolist() == [False, False, False, True]
    assert score[0, 1, 0] == 0.0 and score.max() <= 1.0
    edema = AnomalyMap(lesion_type="edema", noise_radius=0)(image, healthy, max_intensity=255)
    assert edema[0, 0].tolist() == [False, True, True, True] and edema[0, 1].tolist() == [False, True, False, False]


def test_anomaly_map_reads_i_max_from_metadata_and_removes_noise():
    image = MetaTensor(torch.zeros(1, 40, 40), meta={"max_intensity": 32767.0, "image_id": "x"})
    image[0, 10:20, 10:20] = 5000
    image[0, 30, 30] = 5000  # a single-pixel speck: removed by the opening
    anomaly = AnomalyMap(noise_radius=1)(image, torch.zeros(1, 40, 40))
    assert isinstance(anomaly, MetaTensor) and anomaly.meta["image_id"] == "x"
    assert int(anomaly.sum()) == 100 and not bool(anomaly[0, 30, 30])
    with pytest.raises(GroundingInputError, match="I_max unknown"):
        AnomalyMap()(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(GroundingInputError, match="counterfactual: shape"):
        AnomalyMap()(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)), max_intensity=1)


def test_components_keep_whole_islands_that_touch_a_box():
    anomaly = rect(10, 30, 10, 30) | rect(50, 60, 50, 60) | rect(100, 110, 100, 110)
    boxes = np.array([[25, 25, 27, 27], [55, 55, 56, 56.0]])
    per_box = IntersectingComponents()(anomaly, boxes)  # one channel per kept box (Algorithm 1 line 9)
    np.testing.assert_array_equal(per_box, np.concatenate([rect(10, 30, 10, 30), rect(50, 60, 50, 60)]))
    pooled = IntersectingComponents(per_box=False)(anomaly, boxes)
    np.testing.assert_array_equal(pooled, rect(10, 30, 10, 30) | rect(50, 60, 50, 60))
    assert IntersectingComponents()(anomaly, np.zeros((0, 4))).shape == (0, *SHAPE)
    assert not IntersectingComponents(per_box=False)(anomaly, np.zeros((0, 4))).any()
    # a component touching two boxes is in both channels
    both = IntersectingComponents()(anomaly, np.array([[12, 12, 13, 13], [28, 28, 29, 29.0]]))
    np.testing.assert_array_equal(both, np.concatenate([rect(10, 30, 10, 30)] * 2))


def test_components_use_8_connectivity():
    anomaly = np.zeros((1, 10, 10), bool)
    anomaly[0, 2, 2] = anomaly[0, 3, 3] = True  # diagonal neighbours: one component
    out = IntersectingComponents()(anomaly, np.array([[2, 2, 3, 3.0]]))
    assert out.shape == (1, 10, 10) and int(out.sum()) == 2


def test_refine_removes_noise_and_small_components():
    mask = rect(20, 40, 20, 40) | rect(80, 82, 80, 120) | rect(100, 104, 100, 104)  # a 2-px strip and a 4x4 blob
    out = RefineLesionMask(noise_radius=1, min_component_size=20, expand_iterations=0)(mask)
    np.testing.assert_array_equal(out, rect(20, 40, 20, 40))


def test_refine_expands_to_similar_intensity_inside_the_region():
    image = np.full((1, *SHAPE), 200.0, np.float32)
    image[0, 120:170, 20:80] = 100.0  # the lesion's true extent, darker surroundings are brighter here
    image[0, 120:170, 80:100] = 102.0  # similar intensity but outside the right lung (cols 10:90)
    mask = rect(130, 150, 30, 50)
    region = anatomy()["right lung"]
    out = RefineLesionMask(noise_radius=0, expand_iterations=100, intensity_tolerance=0.02)(mask, image, region, max_intensity=255)
    np.testing.assert_array_equal(out, rect(120, 170, 20, 90))
    few = RefineLesionMask(noise_radius=0, expand_iterations=2, intensity_tolerance=0.02)(mask, image, region, max_intensity=255)
    np.testing.assert_array_equal(few, rect(128, 152, 28, 52))


def test_refine_fills_effusion_down_to_the_costophrenic_angle():
    masks = anatomy()  # right lung rows 20:180, cols 10:90; its base zone rows 120:180
    lung, zone = {"right lung": masks["right lung"]}, {"right lung": masks["right lung base"]}
    refine = RefineLesionMask(noise_radius=0, expand_iterations=0)
    # inside the base zone: the lung from the effusion's top row (150) down to the lung's lowest row
    np.testing.assert_array_equal(refine(rect(150, 160, 30, 60), base_lungs=lung, base_zones=zone), rect(150, 180, 10, 90))
    # an effusion reaching up to row 100 (mid zone): the fill stops at the base zone's top row (120), so the
    # mid zone beside the lesion (rows 100:120, cols 10:30 and 60:90) is not added; the old rule added it
    out = refine(rect(100, 130, 30, 60), base_lungs=lung, base_zones=zone)
    np.testing.assert_array_equal(out, rect(100, 130, 30, 60) | rect(120, 180, 10, 90))
    assert int(out.sum()) == 30 * 30 + 60 * 80 - 10 * 30
    # a lesion that does not reach the base zone gets no fill
    np.testing.assert_array_equal(refine(rect(60, 80, 30, 60), base_lungs=lung, base_zones=zone), rect(60, 80, 30, 60))
    with pytest.raises(GroundingInputError, match=r"base_zones: no base-zone mask for base lung\(s\) \['right lung'\]"):
        refine(rect(150, 160, 30, 60), base_lungs=lung)


def _dense_and_faint():
    """A dense lesion (200) in the right lung and a faint one (100) in the left, background 50; the anomaly
    map holds a 20x20 core of the dense one and a 10x10 core of the faint one, one kept box on each."""
    image = np.full((1, *SHAPE), 50.0, np.float32)
    image[0, 30:70, 20:60] = 200.0  # the dense lesion's true extent (right lung)
    image[0, 120:150, 130:170] = 100.0  # the faint lesion's true extent (left lung)
    anomaly = rect(40, 60, 30, 50) | rect(130, 140, 140, 150)
    boxes = np.array([[30, 40, 50, 60], [140, 130, 150, 140.0]])  # xyxy
    return image, anomaly, boxes


def test_refine_per_box_grows_a_faint_lesion_beside_a_dense_one():
    image, anomaly, boxes = _dense_and_faint()
    region = anatomy()["right lung"] | anatomy()["left lung"]
    # tolerance 0.1 * 255 = 25.5 grey levels
    refine = RefineLesionMask(noise_radius=0, min_component_size=0, expand_iterations=100, intensity_tolerance=0.1)
    per_box = refine(IntersectingComponents()(anomaly, boxes), image, region, max_intensity=255)
    # each box's components grow with their own mean: 200 into the dense extent, 100 into the faint one
    np.testing.assert_array_equal(per_box, rect(30, 70, 20, 60) | rect(120, 150, 130, 170))
    # pooled (the old behaviour): one mean (400 * 200 + 100 * 100) / 500 = 180; |200 - 180| = 20 <= 25.5 grows the
    # dense one, |100 - 180| = 80 keeps the faint one at its 10x10 core
    pooled = refine(IntersectingComponents(per_box=False)(anomaly, boxes), image, region, max_intensity=255)
    np.testing.assert_array_equal(pooled, rect(30, 70, 20, 60) | rect(130, 140, 140, 150))


def test_refine_dictionary_refines_each_kept_box_and_fills_only_the_base_boxes():
    image, anomaly, boxes = _dense_and_faint()
    masks = anatomy()
    data = {"image": image, "anomaly": anomaly, "kept_boxes": boxes, "anatomy": masks, "lesion_type": "effusion",
            "kept_box_locations": [["right upper zone lung"], ["left lung base"]]}
    chain = Compose([IntersectingComponentsd(), RefineLesionMaskd(noise_radius=0, min_component_size=0, expand_iterations=100,
                                                                  intensity_tolerance=0.1, max_intensity=255)])
    out = chain(data)
    assert out["components"].shape == (2, *SHAPE)
    # box 1 (upper zone): the dense lesion grown, no fill; box 2 (left base): faint lesion grown to rows 120:150,
    # then the left lung (cols 110:190) from row 120 (its top, = the base zone's top) to 180
    np.testing.assert_array_equal(out["lesion_mask"], rect(30, 70, 20, 60) | rect(120, 180, 110, 190))


def test_verify_locations_grounded_ungrounded_and_empty():
    masks = anatomy()
    result = VerifyLocations()(
        rect(130, 150, 20, 60), masks, ["right lung base", "right mid zone lung"], [["right lung base"]],
        ["right lung base", "right mid zone lung", "left lung base"],
    )
    assert result.grounded == ["right lung base"] and result.ungrounded == ["right mid zone lung"]
    assert sorted(result.empty) == sorted(
        ["right apical zone lung", "right upper zone lung", "left apical zone lung", "left upper zone lung", "left mid zone lung"]
    )
    # a box that intersects the label is not enough: the final mask must overlap it too
    assert VerifyLocations()(rect(30, 40, 20, 60), masks, ["right lung base"], [["right lung base"]]).grounded == []


def test_ctr():
    masks = anatomy()  # lungs span cols 10..190 (180 px); heart cols 70..130 (60 px)
    assert CardiothoracicRatio()(masks["right lung"], masks["left lung"], masks["heart"]) == pytest.approx(1 / 3)
    assert CardiothoracicRatiod()({"anatomy": masks})["ctr"] == pytest.approx(1 / 3)
    with pytest.raises(GroundingInputError, match="heart: mask is empty"):
        CardiothoracicRatio()(masks["right lung"], masks["left lung"], np.zeros((1, *SHAPE)))


def test_dictionary_chain_in_compose_keeps_metadata():
    image = np.full((1, *SHAPE), 1000.0, np.float32)
    image[0, 130:160, 30:70] = 9000.0  # a bright opacity in the right lung base
    image[0, 60:70, 130:140] = 9000.0  # another one in the left upper zone, no box there
    meta = {"max_intensity": 32767.0, "study_id": "s1", "image_id": "i1"}
    data = {
        "image": MetaTensor(torch.from_numpy(image), meta=meta),
        "counterfactual": MetaTensor(torch.full((1, *SHAPE), 1000.0), meta=meta),
        "anatomy": anatomy(),
        "boxes": np.array([[25, 125, 75, 165.0]]),
        "box_scores": np.array([0.8]),
        "lesion_type": "pneumonia",
        "reported_locations": ["right lung base"],
        "all_reported_locations": ["right lung base"],
    }
    chain = Compose([AnomalyMapd(score_keys="anomaly_score"), FilterLesionBoxesd(), IntersectingComponentsd(),
                     RefineLesionMaskd(expand_iterations=0), VerifyLocationsd()])
    out = chain(data)
    assert isinstance(out["lesion_mask"], MetaTensor) and out["lesion_mask"].meta["study_id"] == "s1"
    np.testing.assert_array_equal(np.asarray(out["lesion_mask"]), rect(130, 160, 30, 70))
    assert out["grounded_locations"] == ["right lung base"]
    assert "left upper zone lung" in out["empty_locations"] and "right lung" not in out["empty_locations"]
    assert float(out["anomaly_score"].max()) == pytest.approx(8000 / 32767, rel=1e-5)


def test_refine_dictionary_needs_region_masks():
    data = {"components": rect(10, 20, 10, 20), "image": np.zeros((1, *SHAPE)), "anatomy": {}}
    with pytest.raises(GroundingInputError, match=r"no mask for region label\(s\) \['right lung', 'left lung'\]"):
        RefineLesionMaskd(max_intensity=255)(data)
