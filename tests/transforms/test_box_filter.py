"""Algorithm 1's four conditions, each flipped alone at and around its Table 7 threshold."""

import numpy as np
import pytest

from monai_ils import vocab
from monai_ils.transforms import FilterLesionBoxes, FilterLesionBoxesd, GroundingInputError
from tests.transforms.synthetic import SHAPE, anatomy, rect

BASE = "right lung base"  # rows 120:180, cols 10:90 -> 4800 px; right lung 160 x 80 = 12800 px


def run(boxes, scores, anomaly=None, reported=(BASE,), lesion="opacity", thresholds=None):
    anomaly = rect(120, 180, 10, 90) if anomaly is None else anomaly
    return FilterLesionBoxes(lesion, thresholds)(np.array(boxes, float), np.array(scores, float), anomaly, anatomy(), list(reported))


def test_c1_anatomy_iou_at_threshold():
    # rows 100:140 x 80 cols: |B| = 3200, |B ∩ base| = 1600, union 6400 -> IoU 0.25 exactly.
    anomaly = rect(90, 180, 10, 90)
    result = run([[10, 100, 90, 140], [10, 99, 90, 139], [10, 101, 90, 141]], [0.9] * 3, anomaly)
    np.testing.assert_allclose(result.anatomy_iou, [0.25, 1520 / 6480, 1680 / 6320])
    assert result.conditions[:, 0].tolist() == [True, False, True]
    assert result.conditions[:, 1:].all()
    assert result.keep.tolist() == [True, False, True]


def test_c2_confidence_at_threshold():
    result = run([[10, 120, 90, 180]] * 3, [0.2, 0.1999, 0.21])
    assert result.conditions[:, 1].tolist() == [True, False, True]
    assert result.keep.tolist() == [True, False, True]
    np.testing.assert_allclose(result.scores, [0.2, 0.21])


def test_c2_edema_uses_lower_confidence():
    result = run([[10, 120, 90, 180]], [0.05], lesion="edema")
    assert result.keep.tolist() == [True]
    assert run([[10, 120, 90, 180]], [0.05], lesion="pneumonia").keep.tolist() == [False]


@pytest.mark.parametrize("rows, expected", [(12, True), (11, False), (13, True)])
def test_c3_signal_ratio_at_threshold(rows, expected):
    # The box is the base (60 rows); the anomaly fills its first `rows` rows -> ratio rows / 60 around 0.2.
    result = run([[10, 120, 90, 180]], [0.9], anomaly=rect(120, 120 + rows, 10, 90))
    np.testing.assert_allclose(result.signal_ratio, [rows / 60])
    assert result.conditions[0].tolist() == [True, True, expected, True]
    assert result.keep.tolist() == [expected]


def test_c4_lung_size_at_threshold():
    # 16 x 80 = 1280 px inside the right lung -> IoU 0.1 exactly; 15 rows -> 0.094 (c1 still 0.25).
    result = run([[10, 120, 90, 136], [10, 120, 90, 135], [10, 120, 90, 137]], [0.9] * 3)
    np.testing.assert_allclose(result.lung_iou, [0.1, 1200 / 12800, 1360 / 12800])
    np.testing.assert_allclose(result.anatomy_iou[1], 0.25)
    assert result.conditions[:, 3].tolist() == [True, False, True]
    assert result.conditions[:, :3].all()
    assert result.keep.tolist() == [True, False, True]


def test_c4_passes_through_the_left_lung():
    result = run([[110, 120, 190, 180]], [0.9], anomaly=rect(120, 180, 110, 190), reported=["left lung base"])
    np.testing.assert_allclose(result.lung_iou, [4800 / 12800])
    assert result.keep.tolist() == [True]


def test_kept_boxes_report_the_labels_they_intersect():
    anomaly = rect(120, 180, 10, 90) | rect(120, 180, 110, 190)
    result = run([[10, 120, 90, 180], [110, 20, 190, 50]], [0.9, 0.9], anomaly, reported=[BASE, "left lung base"])
    assert result.keep.tolist() == [True, False]  # the second box lies in the left apex: c1 fails
    assert result.locations == [[BASE]]


def test_thresholds_can_be_overridden_by_config():
    table = vocab.ThresholdTable.from_dict({"general": {"conf": 0.5}})
    assert run([[10, 120, 90, 180]], [0.3], thresholds=table).keep.tolist() == [False]
    assert run([[10, 120, 90, 180]], [0.6], thresholds=table).keep.tolist() == [True]
    with pytest.raises(ValueError, match="must be a number in \\[0, 1\\]"):
        vocab.ThresholdTable.from_dict({"edema": {"ano": 2}})
    with pytest.raises(ValueError, match="unknown group"):
        vocab.ThresholdTable.from_dict({"pneumonia": {"ano": 0.2}})


def test_no_boxes_gives_an_empty_result():
    result = run(np.zeros((0, 4)), [])
    assert result.keep.shape == (0,) and result.boxes.shape == (0, 4) and result.locations == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(boxes=[[10, 10, 5, 5]]), "x1 >= x0"),
        (dict(boxes=[[1, 2, 3]]), r"shape \[N, 4\]"),
        (dict(scores=[0.5, 0.5]), "2 scores for 1 boxes"),
        (dict(reported=["right elbow"]), "Unknown anatomical label 'right elbow'"),
        (dict(reported=[]), "reported_locations: empty"),
        (dict(lesion="pneumothorax"), "Unknown lesion type 'pneumothorax'"),
        (dict(anomaly=np.full((1, *SHAPE), 0.5)), "anomaly: mask is not binary"),
        (dict(anomaly=np.zeros((2, *SHAPE))), r"anomaly: expected a mask of shape \[1, H, W\]"),
    ],
)
def test_bad_input_names_the_problem(kwargs, message):
    args = dict(boxes=[[10, 120, 90, 180]], scores=[0.9])
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        run(**args)


def test_empty_lung_and_missing_anatomy_are_reported():
    masks = anatomy()
    masks["left lung"] = np.zeros_like(masks["left lung"])
    with pytest.raises(GroundingInputError, match=r"anatomy\['left lung'\]: mask is empty"):
        FilterLesionBoxes()(np.array([[10, 120, 90, 180.0]]), np.array([0.9]), rect(120, 180, 10, 90), masks, [BASE])
    del masks["right lung"]
    with pytest.raises(GroundingInputError, match="no mask for anatomical label 'right lung'"):
        FilterLesionBoxes()(np.array([[10, 120, 90, 180.0]]), np.array([0.9]), rect(120, 180, 10, 90), masks, [BASE])


def test_dictionary_form_and_missing_keys():
    data = {"boxes": np.array([[10, 120, 90, 180.0]]), "box_scores": np.array([0.9]), "anomaly": rect(120, 180, 10, 90),
            "anatomy": anatomy(), "reported_locations": [BASE], "lesion_type": "atelectasis"}
    out = FilterLesionBoxesd()(data)
    np.testing.assert_array_equal(out["kept_boxes"], data["boxes"])
    assert out["kept_box_locations"] == [[BASE]] and out["box_conditions"].tolist() == [[True] * 4]
    del data["anomaly"]
    with pytest.raises(KeyError, match="FilterLesionBoxesd: missing key 'anomaly'"):
        FilterLesionBoxesd()(data)
    assert "kept_boxes" not in FilterLesionBoxesd(keys="other_boxes", allow_missing_keys=True)(data)
