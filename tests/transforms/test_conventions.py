"""MONAI conventions of the loading, intensity and grounding transforms: a truthful `backend` class attribute,
D/Dict aliases exported from the package, several keys each transformed, `allow_missing_keys`, [H, W] in ->
[H, W] out, channel-first in -> channel-first out, MetaTensor metadata kept."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from PIL import Image

import monai_ils.transforms as T
from tests.transforms.synthetic import SHAPE, anatomy, rect

DICT_TRANSFORMS = ["AnomalyMapd", "FilterLesionBoxesd", "IntersectingComponentsd", "RefineLesionMaskd", "VerifyLocationsd",
                   "CardiothoracicRatiod", "LoadCXRd", "ScaleCXRIntensityd"]
ARRAY_TRANSFORMS = ["AnomalyMap", "FilterLesionBoxes", "IntersectingComponents", "RefineLesionMask", "VerifyLocations",
                    "CardiothoracicRatio", "LoadCXR", "ScaleCXRIntensity"]


@pytest.mark.parametrize("name", ARRAY_TRANSFORMS + DICT_TRANSFORMS)
def test_every_transform_declares_its_backend(name):
    cls = getattr(T, name)
    assert issubclass(cls, Transform)
    assert cls.backend and all(isinstance(b, TransformBackends) for b in cls.backend)
    if name.endswith("d"):
        assert cls.backend == getattr(T, name[:-1]).backend  # the dictionary form computes with its array form


@pytest.mark.parametrize("name", DICT_TRANSFORMS)
def test_dictionary_transforms_have_d_and_dict_aliases_exported(name):
    cls = getattr(T, name)
    assert issubclass(cls, MapTransform)
    assert getattr(T, name[:-1] + "D") is cls and getattr(T, name[:-1] + "Dict") is cls


def _lesion_pair(shape=(40, 40), box=(10, 20, 10, 20), value=100.0):
    image = np.zeros(shape, np.float32)
    image[box[0]:box[1], box[2]:box[3]] = value
    return image, np.zeros_like(image)


def test_numpy_backend_is_truthful_numpy_in_numpy_out_torch_in_torch_out():
    image, healthy = _lesion_pair()
    op = T.AnomalyMap(noise_radius=0, max_intensity=255.0)
    assert T.AnomalyMap.backend == [TransformBackends.NUMPY]
    out_np = op(image[None], healthy[None])
    out_t = op(torch.from_numpy(image)[None], torch.from_numpy(healthy)[None])
    assert isinstance(out_np, np.ndarray) and isinstance(out_t, torch.Tensor)
    np.testing.assert_array_equal(out_t.numpy(), out_np)  # the same computation (numpy) for both


def test_scale_intensity_computes_in_torch_and_numpy_as_declared():
    assert set(T.ScaleCXRIntensity.backend) == {TransformBackends.TORCH, TransformBackends.NUMPY}
    image = np.array([[0.0, 50.0], [100.0, 200.0]], np.float32)
    out_np, out_t = T.ScaleCXRIntensity()(image), T.ScaleCXRIntensity()(torch.from_numpy(image))
    assert isinstance(out_np, np.ndarray) and isinstance(out_t, torch.Tensor)
    assert out_np.tolist() == out_t.tolist() == [[0, 64], [128, 255]]  # round(255 * x / 200)


def test_load_cxr_produces_torch_as_declared(tmp_path):
    assert T.LoadCXR.backend == [TransformBackends.TORCH]
    Image.fromarray(np.full((40, 36), 7, np.uint8)).save(tmp_path / "a.png")
    assert isinstance(T.LoadCXR()(tmp_path / "a.png"), MetaTensor)


@pytest.mark.parametrize("layout", ["hw", "chw", "meta"])
def test_mask_transforms_keep_the_layout_and_metadata(layout):
    image, healthy = _lesion_pair()
    expected = np.zeros((40, 40), bool)
    expected[10:20, 10:20] = True

    def wrap(x):
        if layout == "hw":
            return x
        if layout == "chw":
            return x[None]
        return MetaTensor(torch.from_numpy(np.ascontiguousarray(x))[None], meta={"image_id": "i7", "max_intensity": 255.0})

    anomaly = T.AnomalyMap(noise_radius=0, max_intensity=255.0)(wrap(image), wrap(healthy))
    components = T.IntersectingComponents(per_box=False)(anomaly, np.array([[12, 12, 14, 14.0]]))
    refined = T.RefineLesionMask(noise_radius=0, min_component_size=0, expand_iterations=0)(components)
    scaled = T.ScaleCXRIntensity()(wrap(image))
    want = (40, 40) if layout == "hw" else (1, 40, 40)
    for out in (anomaly, components, refined, scaled):
        assert tuple(out.shape) == want
    for out in (anomaly, components, refined):
        np.testing.assert_array_equal(np.asarray(out).reshape(40, 40), expected)
    if layout == "meta":
        for out in (anomaly, components, refined, scaled):
            assert isinstance(out, MetaTensor) and out.meta["image_id"] == "i7"
    # the per-box stack is channel-first whatever the anomaly's layout; refining it gives the anomaly's layout back
    stack = T.IntersectingComponents()(anomaly, np.array([[12, 12, 14, 14.0], [0, 0, 2, 2.0]]))
    assert tuple(stack.shape) == (2, 40, 40) and not np.asarray(stack)[1].any()
    assert tuple(T.RefineLesionMask(noise_radius=0, min_component_size=0, expand_iterations=0)(stack).shape) == (1, 40, 40)
    if layout == "meta":
        assert stack.meta["image_id"] == "i7"


def test_anomaly_map_dictionary_transforms_each_key():
    a, healthy = _lesion_pair(box=(10, 20, 10, 20))
    b, _ = _lesion_pair(box=(25, 35, 5, 15))
    data = {"image": a[None], "image2": b[None], "counterfactual": healthy[None]}
    op = T.AnomalyMapd(keys=["image", "image2"], output_keys=["anomaly", "anomaly2"], noise_radius=0, max_intensity=255.0)
    out = op(data)
    np.testing.assert_array_equal(out["anomaly"], a[None] > 0)  # the shared counterfactual is used for both
    np.testing.assert_array_equal(out["anomaly2"], b[None] > 0)
    with pytest.raises(ValueError, match="give one output_keys per key"):
        T.AnomalyMapd(keys=["image", "image2"])  # both maps would go to "anomaly"


def test_components_and_refine_dictionaries_transform_each_key():
    a, b = rect(30, 40, 20, 40), rect(130, 150, 120, 150)
    data = {"anomaly": a, "anomaly2": b, "kept_boxes": np.array([[25, 32, 26, 33.0]]), "kept_boxes2": np.array([[125, 135, 126, 136.0]]),
            "anatomy": anatomy(), "image": np.zeros((1, *SHAPE), np.float32)}
    out = T.IntersectingComponentsd(keys=["anomaly", "anomaly2"], boxes_key=["kept_boxes", "kept_boxes2"],
                                    output_key=["components", "components2"])(data)
    np.testing.assert_array_equal(out["components"], a)
    np.testing.assert_array_equal(out["components2"], b)
    out = T.RefineLesionMaskd(keys=["components", "components2"], output_key=["mask", "mask2"], noise_radius=0,
                              min_component_size=0, expand_iterations=0)(out)
    np.testing.assert_array_equal(out["mask"], a)
    np.testing.assert_array_equal(out["mask2"], b)
    out = T.VerifyLocationsd(keys=["mask", "mask2"], reported_key="reported", grounded_key=["g1", "g2"], empty_key=["e1", "e2"],
                             box_locations_key=["loc1", "loc2"])(
        {**out, "reported": ["right apical zone lung", "left lung base"], "loc1": [["right apical zone lung"]], "loc2": [["left lung base"]]})
    assert out["g1"] == ["right apical zone lung"] and out["g2"] == ["left lung base"]
    with pytest.raises(ValueError, match="give one output_key per key"):
        T.IntersectingComponentsd(keys=["anomaly", "anomaly2"])


def test_several_box_sets_are_filtered_apart():
    masks = anatomy()
    boxes_a, boxes_b = np.array([[10.0, 120, 90, 180]]), np.array([[110.0, 20, 120, 30]])  # a base box, a tiny one
    data = {"boxes": boxes_a, "boxes_b": boxes_b, "box_scores": np.array([0.9]), "anomaly": rect(120, 180, 10, 90),
            "anatomy": masks, "reported_locations": ["right lung base", "left apical zone lung"]}
    out = T.FilterLesionBoxesd(keys=["boxes", "boxes_b"], kept_boxes_key=["kept", "kept_b"], kept_scores_key=["s", "s_b"],
                               locations_key=["loc", "loc_b"], conditions_key=["c", "c_b"])(data)
    assert out["kept"].tolist() == boxes_a.tolist() and out["loc"] == [["right lung base"]]
    assert len(out["kept_b"]) == 0 and out["c_b"].tolist() == [[False, True, False, False]]


def test_ctr_and_scale_and_load_dictionaries_transform_each_key(tmp_path):
    masks = anatomy()
    narrow = dict(masks, heart=rect(100, 170, 85, 115))  # 30 px heart over a 180 px thorax
    out = T.CardiothoracicRatiod(keys=["anatomy", "narrow"], output_key=["ctr", "ctr_narrow"])({"anatomy": masks, "narrow": narrow})
    assert out["ctr"] == pytest.approx(60 / 180) and out["ctr_narrow"] == pytest.approx(30 / 180)
    for name, value in (("a.png", 10), ("b.png", 200)):
        Image.fromarray(np.full((40, 36), value, np.uint8)).save(tmp_path / name)
    loaded = T.LoadCXRd(keys=["a", "b"])({"a": tmp_path / "a.png", "b": tmp_path / "b.png"})
    assert float(loaded["a"].max()) == 10 and float(loaded["b"].max()) == 200 and tuple(loaded["b"].shape) == (1, 40, 36)
    scaled = T.ScaleCXRIntensityd(keys=["a", "b"])({"a": np.array([0.0, 5.0]), "b": np.array([2.0, 4.0, 6.0])})
    assert scaled["a"].tolist() == [0, 255] and scaled["b"].tolist() == [0, 128, 255]


@pytest.mark.parametrize("name", DICT_TRANSFORMS)
def test_allow_missing_keys(name):
    cls = getattr(T, name)
    data = {"anatomy": anatomy(), "image": np.zeros((1, *SHAPE), np.float32)}
    out = cls(keys="absent", allow_missing_keys=True)(data)
    assert set(out) == set(data) and all(out[k] is data[k] for k in data)  # nothing computed, nothing written
    with pytest.raises(KeyError, match="absent"):
        cls(keys="absent")(data)
