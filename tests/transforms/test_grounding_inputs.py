"""Issue 15.13-15.15: empty reported anatomy, NaN boxes, the opening at the image border, inputs left untouched."""

import numpy as np
import pytest

from monai_ils.transforms import AnomalyMap, FilterLesionBoxes, FilterLesionBoxesd, GroundingInputError, IntersectingComponents, RefineLesionMask
from tests.transforms.synthetic import anatomy, rect

BASE = "right lung base"


def test_all_empty_reported_masks_give_iou_zero_and_keep_no_box():
    masks = anatomy()
    masks[BASE] = np.zeros_like(masks[BASE])
    result = FilterLesionBoxes("opacity")(np.array([[10.0, 120, 90, 180]]), np.array([0.9]), rect(120, 180, 10, 90), masks, [BASE])
    assert result.anatomy_iou.tolist() == [0.0]
    assert result.keep.tolist() == [False] and len(result.boxes) == 0 and result.locations == []


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_box_is_named_in_box_filter(bad):
    boxes = np.array([[10.0, 120, 90, 180], [10.0, bad, 90, 180]])
    with pytest.raises(GroundingInputError, match=r"boxes\[1\]: box \[10\.0, (nan|inf), 90\.0, 180\.0\].*not a finite number"):
        FilterLesionBoxes("opacity")(boxes, np.array([0.9, 0.9]), rect(120, 180, 10, 90), anatomy(), [BASE])
    with pytest.raises(GroundingInputError, match=r"boxes\[1\]"):
        FilterLesionBoxesd()({"boxes": boxes, "box_scores": np.array([0.9, 0.9]), "anomaly": rect(120, 180, 10, 90),
                              "anatomy": anatomy(), "reported_locations": [BASE]})


def test_non_finite_box_is_named_in_intersecting_components():
    with pytest.raises(GroundingInputError, match=r"kept_boxes\[0\]: box \[nan, 0\.0, 5\.0, 5\.0\]"):
        IntersectingComponents()(rect(0, 10, 0, 10, (20, 20)), np.array([[np.nan, 0.0, 5.0, 5.0]]))


def test_opening_removes_a_thin_strip_at_the_image_border():
    image = np.zeros((1, 40, 40), np.float32)
    image[0, :, :2] = 100.0  # a 2-px strip along the left border, thinner than the 3-px opening
    image[0, 10:30, 15:35] = 100.0  # a blob that survives it
    anomaly = AnomalyMap(noise_radius=1, max_intensity=255.0)(image, np.zeros_like(image))[0]
    expected = np.zeros((40, 40), bool)
    expected[10:30, 15:35] = True
    assert np.array_equal(anomaly, expected)
    refined = RefineLesionMask(noise_radius=1, min_component_size=0, expand_iterations=0)(image[0] > 0)
    assert refined.shape == (40, 40) and np.array_equal(refined, expected)  # [H, W] in, [H, W] out


def test_refine_never_writes_into_the_callers_arrays():
    mask = np.zeros((200, 200), bool)
    mask[150:160, 20:40] = True
    lung, zone = rect(20, 180, 10, 90), rect(120, 180, 10, 90)
    before, lung_before, zone_before = mask.copy(), lung.copy(), zone.copy()
    out = RefineLesionMask(noise_radius=0, min_component_size=0, expand_iterations=0)(
        mask, base_lungs={"right lung": lung}, base_zones={"right lung": zone})
    assert out.sum() > before.sum()  # the base fill grew the output ...
    assert np.array_equal(mask, before) and np.array_equal(lung, lung_before) and np.array_equal(zone, zone_before)  # ... not the inputs
