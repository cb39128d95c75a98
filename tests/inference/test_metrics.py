"""gIoU, cIoU, N-Acc on hand-computed masks, including the empty cases."""

import math

import numpy as np
import pytest
import torch

from monai_ils.evaluation.metrics import MaskOverlapMetric, MaskStats, TextAccuracyMetric, mask_stats, sample_iou, segmentation_scores


def _mask(shape, *cells):
    m = np.zeros(shape, dtype=bool)
    for r, c in cells:
        m[r, c] = True
    return m


# target: 6 pixels, prediction: 4 pixels, 3 shared -> I=3, U=7
TARGET = _mask((4, 4), (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2))
PRED = _mask((4, 4), (0, 0), (0, 1), (1, 1), (3, 3))


def test_mask_stats_hand_computed():
    s = mask_stats(PRED, TARGET)
    assert (s.intersection, s.union, s.pred_area, s.target_area) == (3, 7, 4, 6)
    assert s.iou() == pytest.approx(3 / 7)
    # 255-valued PNG-style arrays and [1, H, W] tensors are accepted
    assert mask_stats(torch.from_numpy(PRED[None].astype(np.uint8) * 255), TARGET) == s


def test_empty_prediction_on_positive_is_zero():
    assert sample_iou(np.zeros((4, 4)), TARGET) == 0.0


def test_both_empty_counts_as_one_and_is_flagged():
    empty = np.zeros((4, 4), dtype=bool)
    assert sample_iou(empty, empty) == 1.0
    r = segmentation_scores([mask_stats(empty, empty)], [])
    assert r["giou"] == 1.0 and r["ciou"] == 1.0 and r["empty_target_positives"] == 1


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differs from target shape"):
        mask_stats(np.zeros((4, 5)), TARGET)


def test_giou_ciou_nacc_hand_computed():
    full = np.ones((2, 1), dtype=bool)
    positives = [mask_stats(PRED, TARGET), mask_stats(full, full)]  # IoU 3/7 and 2/2
    negatives = [mask_stats(np.zeros((4, 4)), np.zeros((4, 4))), mask_stats(_mask((4, 4), (2, 2)), np.zeros((4, 4)))]
    r = segmentation_scores(positives, negatives)
    assert r["giou"] == pytest.approx((3 / 7 + 1.0) / 2)
    assert r["ciou"] == pytest.approx(5 / 9)
    assert r["nacc"] == 0.5
    assert (r["n_positive"], r["n_negative"]) == (2, 2)
    assert segmentation_scores(positives, negatives, empty_threshold=1)["nacc"] == 1.0


def test_no_samples_gives_nan():
    r = segmentation_scores([], [])
    assert math.isnan(r["giou"]) and math.isnan(r["ciou"]) and math.isnan(r["nacc"])


def test_monai_metric_batch_and_list_inputs():
    metric = MaskOverlapMetric()
    y_pred = torch.from_numpy(np.stack([PRED, np.zeros((4, 4), bool)]))[:, None].float()
    y = torch.from_numpy(np.stack([TARGET, np.zeros((4, 4), bool)]))[:, None].float()
    per_sample = metric(y_pred, y)
    assert per_sample.tolist() == [[3, 7, 4, 6, 1], [0, 0, 0, 0, 0]]  # last column: positive (target not empty)
    # a list of channel-first masks of another size (images differ in size)
    metric([torch.ones(1, 2, 1)], [torch.ones(1, 2, 1)])
    r = metric.aggregate()
    assert r["giou"] == pytest.approx((3 / 7 + 1.0) / 2)
    assert r["ciou"] == pytest.approx(5 / 9)
    assert r["nacc"] == 1.0 and r["n_negative"] == 1
    metric.reset()
    assert math.isnan(metric.aggregate()["giou"])


def test_monai_metric_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differs"):
        MaskOverlapMetric()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


def test_text_accuracy_metric_by_question_type():
    metric = TextAccuracyMetric()
    metric.append(
        ["[SEG]", "[SEG] There is no edema.", "[SEG] It possibly reflects edema.", None],
        ["[SEG]", "[SEG] There is no pneumonia.", "[SEG] It possibly reflects edema.", "[SEG]"],
        ["basic", "global", "lesion_inference", "basic"],
    )
    r = metric.aggregate()
    assert r == {"basic": 0.5, "global": 0.0, "lesion_inference": 1.0, "overall": 0.5}
    with pytest.raises(ValueError, match="2 predictions, 1 references"):
        metric.append(["a", "b"], ["a"], ["basic"])


def test_maskstats_iou_property():
    assert MaskStats(0, 5, 0, 5).iou() == 0.0


def test_positive_flag_counts_a_malformed_positive_as_positive():
    """A positive whose target is empty stays a positive (IoU 1 when nothing is predicted), as the runner needs."""
    metric = MaskOverlapMetric()
    metric([torch.from_numpy(PRED)[None]], [torch.from_numpy(TARGET)[None]], positive=True)  # IoU 3/7
    metric([torch.zeros(1, 4, 4)], [torch.zeros(1, 4, 4)], positive=True)  # nothing to find, nothing found
    metric([torch.from_numpy(PRED)[None]], [torch.zeros(1, 4, 4)], positive=False)  # a negative with 4 pixels
    r = metric.aggregate()
    assert r["n_positive"] == 2 and r["n_negative"] == 1 and r["empty_target_positives"] == 1
    assert r["giou"] == pytest.approx((3 / 7 + 1.0) / 2)
    assert r["ciou"] == pytest.approx(3 / 7)
    assert r["nacc"] == 0.0
