"""Interfaces, registry, dictionary transforms (error recording, metadata) and the anatomy cross-check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_ils import vocab
from monai_ils.cues import base
from monai_ils.cues.base import Boxes, CueError, MissingWeightsError, get_backend
from monai_ils.cues.transforms import (
    AnatomyMasks,
    AnatomyMasksd,
    Counterfactual,
    DetectLesionBoxes,
    Counterfactuald,
    CrossCheckAnatomy,
    CrossCheckAnatomyd,
    DetectLesionBoxesd,
)
from monai_ils.transforms import AnomalyMapd

from .conftest import phantom


def test_registry_lists_and_builds_backends():
    assert {"classical", "cxas", "hybridgnet", "chexmask", "png_folder"} <= set(base.available_backends("anatomy"))
    assert {"classical", "radedit", "folder"} <= set(base.available_backends("counterfactual"))
    assert {"classical", "yolo", "csv"} <= set(base.available_backends("boxes"))
    assert type(get_backend("anatomy", "Classical")).__name__ == "ClassicalAnatomy"
    with pytest.raises(ValueError, match="available: .*classical"):
        get_backend("boxes", "detr")
    with pytest.raises(ValueError, match="Unknown cue kind"):
        get_backend("segmentation", "classical")


@pytest.mark.parametrize("kind, name, key", [("boxes", "yolo", "yolo_weights"), ("anatomy", "cxas", "cxas_weights"),
                                            ("anatomy", "hybridgnet", "hybridgnet_weights"), ("counterfactual", "radedit", "radedit_unet")])
def test_missing_weights_name_the_config_key(kind, name, key, tmp_path):
    with pytest.raises(MissingWeightsError, match=f"'{key}' is not set"):
        get_backend(kind, name)
    arg = {"boxes": "weights", "anatomy": "weights", "counterfactual": "unet"}[kind]
    with pytest.raises(MissingWeightsError, match=f"'{key}' points to .*does not exist: download"):
        get_backend(kind, name, **{arg: tmp_path / "nothing.pt"})


def test_image_checks():
    with pytest.raises(ValueError, match=r"shape \[1, H, W\]"):
        base.to_numpy_image(np.zeros((3, 64, 64)))
    with pytest.raises(ValueError, match="at least 32x32"):
        base.to_numpy_image(np.zeros((1, 16, 64)))
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        base.to_numpy_image([[0.0]])
    with pytest.raises(ValueError, match="NaN"):
        base.to_numpy_image(np.full((1, 40, 40), np.nan))
    assert base.max_intensity_of(MetaTensor(torch.zeros(1, 40, 40), meta={"max_intensity": 4095})) == 4095.0
    assert base.max_intensity_of(np.full((1, 40, 40), 200.0)) == 255.0


def test_boxes_container():
    boxes = Boxes([[0, 0, 10, 10], [5, 5, 50, 60], [1, 1, 2, 2]], [0.9, 0.5, 0.3], [0, 8, 12])
    kept = boxes.drop_excluded()
    assert kept.classes.tolist() == [8] and kept.boxes.tolist() == [[5, 5, 50, 60]]
    clipped = kept.clip((40, 30))
    assert clipped.boxes.tolist() == [[5, 5, 30, 40]]
    with pytest.raises(ValueError, match="scores must lie"):
        Boxes([[0, 0, 1, 1]], [1.5], [1])
    with pytest.raises(ValueError, match="class ids"):
        Boxes([[0, 0, 1, 1]], [0.5], [14])


def test_classical_chain_on_a_phantom_feeds_the_anomaly_map():
    image = MetaTensor(torch.as_tensor(phantom()), meta={"max_intensity": 4095.0, "image_id": "p1"})
    data = {"image": image}
    for transform in (AnatomyMasksd(), Counterfactuald(), DetectLesionBoxesd()):
        data = transform(data)
    assert "cue_errors" not in data
    anatomy = data["anatomy"]
    ry, rx = np.argwhere(anatomy["right lung"][0]).mean(0)
    ly, lx = np.argwhere(anatomy["left lung"][0]).mean(0)
    assert rx < 120 < lx
    x_hat = data["counterfactual"]
    assert isinstance(x_hat, MetaTensor) and x_hat.meta["image_id"] == "p1" and x_hat.shape == image.shape
    assert len(data["boxes"]) >= 1
    x0, y0, x1, y1 = data["boxes"][0]
    assert x0 <= 70 <= x1 and y0 <= 120 <= y1  # the opacity at row 120, column 70
    assert data["box_classes"][0] == vocab.VINBIG_CLASSES.index("nodule/mass")
    data["lesion_type"] = "opacity"
    data = AnomalyMapd(score_keys="anomaly_score")(data)
    anomaly = np.asarray(data["anomaly"])[0].astype(bool)
    assert anomaly[115:126, 65:76].all() and not anomaly[:, 120:].any()


def test_a_failing_study_is_recorded_and_the_run_goes_on():
    flat = {"image": np.full((1, 64, 64), 100.0, dtype=np.float32)}
    out = AnatomyMasksd()(flat)
    assert "anatomy" not in out
    (error,) = out["cue_errors"]
    assert error["cue"] == "anatomy" and error["backend"] == "ClassicalAnatomy" and "CueError" in error["error"]
    with pytest.raises(CueError):
        AnatomyMasksd(on_error="raise")(flat)
    good = {"image": phantom(lesion=None)}
    results = AnatomyMasksd().batch([flat, good])
    assert "cue_errors" in results[0] and "anatomy" in results[1]
    with pytest.raises(ValueError, match="on_error"):
        AnatomyMasksd(on_error="ignore")


def _anatomy(shape, right=(10, 40), left=(60, 90), heart_bottom=70):
    masks = {name: np.zeros((1, *shape), dtype=np.uint8) for name in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART)}
    masks[vocab.RIGHT_LUNG][0, 20:60, right[0] : right[1]] = 1
    masks[vocab.LEFT_LUNG][0, 20:60, left[0] : left[1]] = 1
    masks[vocab.HEART][0, 45 : heart_bottom + 1, 40:60] = 1
    return masks


def test_cross_check_compares_outer_lung_x_and_lowest_heart_y():
    shape = (100, 100)  # tolerance 0.05 -> 5 pixels
    a = _anatomy(shape)
    result = CrossCheckAnatomy(0.05)(a, _anatomy(shape, right=(14, 40), heart_bottom=74), shape)
    assert result["passed"] and result["differences"] == {"right_lung_outer_x": 4.0, "left_lung_outer_x": 0.0, "heart_lowest_y": 4.0}
    result = CrossCheckAnatomy(0.05)(a, _anatomy(shape, left=(60, 96), heart_bottom=80), shape)
    assert not result["passed"] and result["failed"] == ["left_lung_outer_x", "heart_lowest_y"]
    empty = _anatomy(shape)
    empty[vocab.HEART][:] = 0
    assert CrossCheckAnatomy()(a, empty, shape)["failed"] == ["heart_lowest_y"]
    d = CrossCheckAnatomyd(tolerance=0.05)({"image": np.zeros((1, *shape)), "anatomy": a, "anatomy_reference": _anatomy(shape, right=(30, 40))})
    assert d["anatomy_qc"]["passed"] is False and d["anatomy_qc"]["failed"] == ["right_lung_outer_x"]
    d = CrossCheckAnatomyd()({"anatomy": a})
    assert d["anatomy_qc"] == {"passed": False, "failed": ["missing anatomy"], "missing": ["anatomy_reference"]}


def test_contrast_reference_makes_the_anomaly_signal_window_invariant():
    from monai_ils.cues.classical_counterfactual import ClassicalCounterfactual

    image = phantom(i_max=4095.0)
    stretched = np.clip((image - 1000.0) * 1.5, 0, 4095).astype(np.float32)  # a harder window, same I_max
    plain, normalised = ClassicalCounterfactual(), ClassicalCounterfactual(contrast_reference=0.36)
    raw = [(x - plain(x, None, 4095.0)).max() for x in (image, stretched)]
    assert raw[1] == pytest.approx(1.5 * raw[0], rel=0.05)  # in image units the residual grows with the window
    ref = [(x - normalised(x, None, 4095.0)).max() for x in (image, stretched)]
    assert ref[1] == pytest.approx(ref[0], rel=0.05)
    with pytest.raises(ValueError, match="contrast_reference"):
        ClassicalCounterfactual(contrast_reference=3)


# ----------------------------------------------------------------------------------------------
# MONAI conventions
# ----------------------------------------------------------------------------------------------
def test_cue_backend_object_is_cue_backend_and_backend_is_monais_attribute():
    from monai.utils import TransformBackends

    from monai_ils.cues.classical_anatomy import ClassicalAnatomy

    own = ClassicalAnatomy()
    for transform, kind in ((AnatomyMasks(own), "ClassicalAnatomy"), (Counterfactual(), "ClassicalCounterfactual"),
                            (DetectLesionBoxes(), "ClassicalBoxes")):
        assert type(transform.cue_backend).__name__ == kind
        assert transform.backend == [TransformBackends.NUMPY]  # the class attribute, not shadowed by the cue backend
    assert AnatomyMasks(own).cue_backend is own  # an object passed as `backend` is used as is
    for cls in (AnatomyMasksd, Counterfactuald, DetectLesionBoxesd, CrossCheckAnatomy, CrossCheckAnatomyd):
        assert cls.backend == [TransformBackends.NUMPY]


@pytest.mark.parametrize("name", ["AnatomyMasks", "Counterfactual", "DetectLesionBoxes", "CrossCheckAnatomy"])
def test_cue_dictionary_aliases_are_exported(name):
    import monai_ils.cues as cues

    cls = getattr(cues, name + "d")
    assert getattr(cues, name + "D") is cls and getattr(cues, name + "Dict") is cls


def test_hw_image_gives_hw_cues_equal_to_the_channel_first_ones():
    image = phantom()
    masks_chw, masks_hw = AnatomyMasks()(image), AnatomyMasks()(image[0])
    assert masks_chw["right lung"].shape == (1, 256, 240) and masks_hw["right lung"].shape == (256, 240)
    for label in masks_chw:
        np.testing.assert_array_equal(masks_hw[label], masks_chw[label][0])
    x_chw, x_hw = Counterfactual()(image, masks_chw), Counterfactual()(image[0], masks_hw)
    assert x_chw.shape == (1, 256, 240) and x_hw.shape == (256, 240)
    np.testing.assert_array_equal(x_hw, x_chw[0])
    boxes_chw, boxes_hw = DetectLesionBoxes()(image, counterfactual=x_chw), DetectLesionBoxes()(image[0], counterfactual=x_hw)
    np.testing.assert_array_equal(boxes_hw.boxes, boxes_chw.boxes)


def test_cue_dictionaries_transform_each_key_and_batch_each_key():
    plain, shifted = phantom(lesion=None), phantom(lesion=(150, 170, 12))  # no opacity / one in the left lung
    data = {"image": plain, "image2": shifted}
    keys = ["image", "image2"]
    chain = [AnatomyMasksd(keys=keys, anatomy_key=["anatomy", "anatomy2"]),
             Counterfactuald(keys=keys, counterfactual_key=["cf", "cf2"], anatomy_key=["anatomy", "anatomy2"]),
             DetectLesionBoxesd(keys=keys, boxes_key=["b", "b2"], scores_key=["s", "s2"], classes_key=["c", "c2"],
                                counterfactual_key=["cf", "cf2"], anatomy_key=["anatomy", "anatomy2"])]
    out = dict(data)
    for transform in chain:
        out = transform(out)
    # each key's cues are the single-key cues of that image
    alone = DetectLesionBoxesd()(Counterfactuald()(AnatomyMasksd()({"image": shifted})))
    for label in alone["anatomy"]:
        np.testing.assert_array_equal(out["anatomy2"][label], alone["anatomy"][label])
    np.testing.assert_array_equal(out["cf2"], alone["counterfactual"])
    np.testing.assert_array_equal(out["b2"], alone["boxes"])
    assert len(out["b"]) == 0 and len(out["b2"]) >= 1
    x0, y0, x1, y1 = out["b2"][0]
    assert x0 <= 170 <= x1 and y0 <= 150 <= y1
    batched = [data]
    for transform in chain:
        batched = transform.batch(batched)
    np.testing.assert_array_equal(batched[0]["b2"], out["b2"])
    with pytest.raises(ValueError, match="give one anatomy_key per key"):
        AnatomyMasksd(keys=keys)


@pytest.mark.parametrize("cls", [AnatomyMasksd, Counterfactuald, DetectLesionBoxesd])
def test_cue_dictionaries_allow_missing_keys(cls):
    data = {"image": phantom()}
    out = cls(keys="absent", allow_missing_keys=True)(data)
    assert set(out) == {"image"}
    assert cls(keys="absent", allow_missing_keys=True).batch([data]) == [data]
    with pytest.raises(KeyError, match="absent"):
        cls(keys="absent")(data)
    with pytest.raises(KeyError, match="absent"):
        cls(keys="absent").batch([data])
