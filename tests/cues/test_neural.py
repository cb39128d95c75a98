"""Neural backends: tiny randomly initialised models of each real architecture, saved as the real weights
are laid out, loaded through our loaders, run end to end on small images."""

from __future__ import annotations

import numpy as np
from pathlib import Path

import pytest
import torch
from monai.data import MetaTensor

from monai_ils import vocab
from monai_ils.cues.base import get_backend
from monai_ils.cues.transforms import AnatomyMasksd, Counterfactuald, DetectLesionBoxesd


def _image(h=70, w=60, i_max=4095.0, image_id="s1"):
    g = torch.Generator().manual_seed(0)
    return MetaTensor(torch.rand((1, h, w), generator=g) * i_max, meta={"max_intensity": i_max, "image_id": image_id})


# ------------------------------------------------------------------------------------------------ YOLO
@pytest.fixture(scope="module")
def yolo_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("yolo")
    from monai_ils.cues.yolo import prepare_offline_ultralytics

    prepare_offline_ultralytics(root / "config")
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=len(vocab.VINBIG_CLASSES), verbose=False)
    model.names = dict(enumerate(vocab.VINBIG_CLASSES))
    # Make the stride-8 anchors confident in "aortic enlargement" (excluded), the others in "nodule/mass" (kept).
    for level, branch in enumerate(model.model[-1].cv3):
        last = branch[-1]
        torch.nn.init.zeros_(last.weight)
        last.bias.data[:] = -8.0
        last.bias.data[0 if level == 0 else 8] = 8.0
    path = root / "vinbig_yolov8n.pt"
    # The layout ultralytics' Model.save / trainer write: a dict with the (half precision) module under "model".
    torch.save({"model": model.half(), "ema": None, "train_args": {"task": "detect", "imgsz": 64}, "version": "8", "date": None}, path)
    return root, path


def test_yolo_offline_end_to_end(yolo_checkpoint, monkeypatch):
    root, path = yolo_checkpoint
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("ultralytics tried to reach the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    import sys

    first_import = "ultralytics" not in sys.modules  # ultralytics reads YOLO_CONFIG_DIR once, at its first import
    backend = get_backend("boxes", "yolo", weights=path, imgsz=64, conf=0.25, config_dir=root / "config")
    assert not backend.loaded
    backend.load()  # ultralytics is imported and made offline when the detector loads
    import ultralytics.utils as uu

    assert (Path(uu.USER_CONFIG_DIR) / "Arial.ttf").is_file()  # the font it would download, in the folder it uses
    if first_import:
        assert Path(uu.USER_CONFIG_DIR) == root / "config" / "Ultralytics"
    from PIL import Image, UnidentifiedImageError

    junk = root / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(UnidentifiedImageError):  # PIL's own open again, not ultralytics' pi_heif wrapper
        Image.open(junk)
    data = DetectLesionBoxesd(backend=backend)({"image": _image()})
    assert "cue_errors" not in data
    boxes, scores, classes = data["boxes"], data["box_scores"], data["box_classes"]
    assert boxes.dtype == np.float32 and scores.dtype == np.float32 and classes.dtype == np.int64
    assert len(boxes) > 0 and set(classes.tolist()) == {8}  # class 0 was detected too (stride 8), and dropped
    raw = backend.model.predict(np.zeros((70, 60, 3), np.uint8), imgsz=64, conf=0.25, verbose=False)[0]
    assert 0 in raw.boxes.cls.tolist()
    assert ((scores > 0.99) & (scores <= 1)).all()
    assert (boxes[:, [0, 2]] <= 60).all() and (boxes[:, [1, 3]] <= 70).all() and (boxes >= 0).all()
    batched = DetectLesionBoxesd(backend=backend).batch([{"image": _image()}, {"image": _image(80, 50)}])
    assert batched[0]["boxes"].tolist() == boxes.tolist() and (batched[1]["boxes"][:, 2] <= 50).all()


# ---------------------------------------------------------------------------------------------- RadEdit
@pytest.fixture(scope="module")
def radedit_folders(tmp_path_factory):
    from tests.generation.tiny_neural import write_radedit

    root = tmp_path_factory.mktemp("radedit")
    write_radedit(root)  # unet/, vae/, text_encoder/ in their real layouts
    return root


def test_radedit_edits_only_inside_the_region(radedit_folders):
    backend = get_backend("counterfactual", "radedit", unet=radedit_folders / "unet", vae=radedit_folders / "vae",
                          text_encoder=radedit_folders / "text_encoder", num_inference_steps=2, size=32)
    assert backend.unet.device.type == "cpu" and backend.vae_factor == 2
    tokens = backend.tokenizer(["No acute cardiopulmonary process"]).input_ids[0]
    assert tokens[1:-1] == [5, 6, 7, 8, 9]  # the prompt is tokenised by the saved vocabulary, not [UNK]s
    image = _image(50, 40)
    anatomy = {name: np.zeros((1, 50, 40), np.uint8) for name in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART)}
    anatomy[vocab.RIGHT_LUNG][0, 10:40, 4:18] = 1
    anatomy[vocab.LEFT_LUNG][0, 10:40, 22:36] = 1
    anatomy[vocab.HEART][0, 30:45, 15:25] = 1
    data = Counterfactuald(backend=backend)({"image": image, "anatomy": anatomy})
    assert "cue_errors" not in data
    x_hat = data["counterfactual"]
    assert isinstance(x_hat, MetaTensor) and x_hat.dtype == torch.float32 and x_hat.shape == (1, 50, 40)
    assert x_hat.meta["image_id"] == "s1"
    region = (anatomy[vocab.RIGHT_LUNG] | anatomy[vocab.LEFT_LUNG] | anatomy[vocab.HEART]).astype(bool)
    assert torch.equal(x_hat[~torch.as_tensor(region)], image[~torch.as_tensor(region)])  # keep region untouched
    assert float(x_hat.min()) >= 0 and float(x_hat.max()) <= 4095
    assert not torch.allclose(x_hat[torch.as_tensor(region)], image[torch.as_tensor(region)])
    # Without anatomy RadEdit has no edit region: recorded, not raised.
    assert "edit region" in Counterfactuald(backend=backend)({"image": image})["cue_errors"][0]["error"]


# ------------------------------------------------------------------------------------------------- CXAS
def _random_cxas():
    from tests.generation.tiny_neural import random_cxas

    return random_cxas(on=("heart", "left lung"))


def test_cxas_checkpoint_loads_and_maps_channel_ids(tmp_path):
    model = _random_cxas()
    path = tmp_path / "UNet_ResNet50_default.pth"
    # The cxas package's checkpoint: {"model": state_dict}, here saved from DataParallel ("module." keys).
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    backend = get_backend("anatomy", "cxas", weights=path, size=64)
    assert next(backend.model.parameters()).device.type == "cpu"
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert torch.allclose(backend.model(x), model(x), atol=1e-5)
    results = AnatomyMasksd(backend=backend).batch([{"image": _image()}, {"image": _image(90, 40)}])
    masks = results[0]["anatomy"]
    assert set(masks) == set(vocab.CXAS_LABEL_IDS)
    assert masks["heart"].shape == (1, 70, 60) and masks["heart"].dtype == np.uint8
    assert masks["heart"].all() and masks["left lung"].all() and not masks["right lung"].any() and not masks["lung upper lobe right"].any()
    assert results[1]["anatomy"]["heart"].shape == (1, 90, 40)
    torch.save({"model": {k: v for k, v in model.state_dict().items() if not k.startswith("head.out")}}, tmp_path / "partial.pth")
    partial = get_backend("anatomy", "cxas", weights=tmp_path / "partial.pth")  # the file exists: checked on load
    with pytest.raises(ValueError, match="missing keys"):
        partial(_image())


# -------------------------------------------------------------------------------------------- HybridGNet
def test_chebconv_matches_the_chebyshev_recursion():
    from monai_ils.cues.hybridgnet import ChebConv, _ring, scaled_laplacian

    lap = scaled_laplacian(torch.tensor(_ring(4), dtype=torch.float32))
    assert torch.allclose(lap, -torch.tensor(_ring(4), dtype=torch.float32) / 2)  # degree 2 everywhere
    conv = ChebConv(3, 2, K=3)
    x = torch.randn(1, 4, 3)
    t0, t1 = x, lap @ x
    t2 = 2 * lap @ t1 - t0
    expected = t0 @ conv.lins[0].weight.T + t1 @ conv.lins[1].weight.T + t2 @ conv.lins[2].weight.T + conv.bias
    assert torch.allclose(conv(x, lap), expected, atol=1e-6)


def test_hybridgnet_loads_state_dict_and_fills_contours(tmp_path):
    from monai_ils.cues.hybridgnet import HybridGNet, fill_contours

    torch.manual_seed(0)
    model = HybridGNet(input_size=64).eval()
    path = tmp_path / "bestMSE.pt"
    torch.save(model.state_dict(), path)
    backend = get_backend("anatomy", "hybridgnet", weights=path)
    assert backend.input_size == 64
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        out = backend.model(x)
        assert out.shape == (1, 120, 2) and torch.allclose(out, model(x))
    # With a zero last layer every landmark sits at the square's origin: (-left pad, -top pad) in the image.
    backend.model.graphConv_up1.lins[0].weight.data.zero_()
    assert np.allclose(backend.landmarks(_image(90, 70)), [[-10, 0]])
    def rectangle(x0, y0, x1, y1, n):  # n contour points visiting the four corners in order
        return np.repeat([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], int(np.ceil(n / 4)), axis=0)[:n]

    landmarks = np.concatenate([rectangle(5, 5, 20, 30, 44), rectangle(40, 5, 55, 30, 50), rectangle(22, 25, 38, 35, 26)])
    masks = fill_contours(landmarks, (40, 60))
    assert masks["right lung"].sum() == 16 * 26 and masks["right lung"][5:31, 5:21].all()
    assert masks["heart"][25:36, 22:39].all() and masks["heart"].sum() == 11 * 17
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pt")
    bad = get_backend("anatomy", "hybridgnet", weights=tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a HybridGNet state dict"):
        bad.load()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_radedit_and_cxas_run_on_cuda(radedit_folders, tmp_path):
    backend = get_backend("counterfactual", "radedit", unet=radedit_folders / "unet", vae=radedit_folders / "vae",
                          text_encoder=radedit_folders / "text_encoder", num_inference_steps=2, size=32, device="cuda", dtype="float16")
    assert backend.unet.device.type == "cuda" and backend.unet.dtype == torch.float16
    region = np.zeros((50, 40), bool)
    region[10:40, 5:35] = True
    x_hat = backend(_image(50, 40), region)
    assert isinstance(x_hat, np.ndarray) and x_hat.dtype == np.float32 and np.isfinite(x_hat).all()
    path = tmp_path / "cxas.pth"
    torch.save({"model": _random_cxas().state_dict()}, path)
    cxas = get_backend("anatomy", "cxas", weights=path, size=64, device="cuda:0")
    assert next(cxas.model.parameters()).device.type == "cuda"
    assert cxas(_image())["heart"].all()


# ------------------------------------------------------------------------------------- lazy weights
def _rss_mib() -> float:
    import os

    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    if hasattr(a, "boxes") and hasattr(a, "classes"):
        return np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores) and np.array_equal(a.classes, b.classes)
    return np.array_equal(np.asarray(a), np.asarray(b))


def _check_lazy(backend, call):
    """Not loaded when built, nothing heavy pickled, loaded by the first call with the output of an eager load,
    and a used backend pickles without its weights and reloads in the copy."""
    import pickle

    names = type(backend).lazy_attributes
    assert names and not backend.loaded and not set(names) & set(vars(backend))
    unused = pickle.dumps(backend)
    assert len(unused) < 4096, len(unused)  # paths and settings only
    eager = pickle.loads(unused).load()
    assert eager.loaded
    out = call(backend)
    assert backend.loaded and set(names) <= set(vars(backend))
    assert _same(out, call(eager))
    used = pickle.dumps(backend)
    assert len(used) < 4096, len(used)  # the loaded weights stayed behind
    copy = pickle.loads(used)
    assert not copy.loaded and backend.loaded
    assert _same(call(copy), out)
    backend.unload()
    assert not backend.loaded and _same(call(backend), out)


def test_cxas_loads_on_first_use_only(tmp_path):
    model = _random_cxas()  # full size: 73 M parameters, ~280 MiB of float32
    path = tmp_path / "UNet_ResNet50_default.pth"
    torch.save({"model": model.state_dict()}, path)
    del model
    before = _rss_mib()
    backend = get_backend("anatomy", "cxas", weights=path, size=64, labels=["heart", "left lung"])
    assert _rss_mib() - before < 20 and not backend.loaded  # built without reading the checkpoint
    masks = backend(_image())
    # the first call read it (RSS growth is not asserted: in a long test session the allocator reuses freed memory)
    assert backend.loaded and sum(p.numel() for p in backend.model.parameters()) > 70_000_000
    assert masks["heart"].all() and masks["left lung"].all()
    backend.unload()
    _check_lazy(backend, lambda b: b(_image()))


def test_hybridgnet_loads_on_first_use_only(tmp_path):
    from monai_ils.cues.hybridgnet import HybridGNet

    torch.manual_seed(0)
    path = tmp_path / "bestMSE.pt"
    torch.save(HybridGNet(input_size=64).state_dict(), path)
    backend = get_backend("anatomy", "hybridgnet", weights=path)
    _check_lazy(backend, lambda b: b(_image(90, 70)))
    assert backend.input_size == 64  # read from the loaded network's encoder


def test_radedit_loads_on_first_use_only(radedit_folders):
    backend = get_backend("counterfactual", "radedit", unet=radedit_folders / "unet", vae=radedit_folders / "vae",
                          text_encoder=radedit_folders / "text_encoder", num_inference_steps=2, size=32)
    assert backend.vae_factor == 2  # read from the VAE's config.json, no weights loaded
    region = np.zeros((50, 40), bool)
    region[10:40, 5:35] = True
    _check_lazy(backend, lambda b: b(_image(50, 40), region))


def test_yolo_loads_on_first_use_only(yolo_checkpoint):
    root, path = yolo_checkpoint
    backend = get_backend("boxes", "yolo", weights=path, imgsz=64, conf=0.25, config_dir=root / "config")
    _check_lazy(backend, lambda b: b(_image()))


def test_missing_weights_fail_at_construction_naming_them(radedit_folders, tmp_path):
    import shutil

    from monai_ils.cues.base import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="cxas_weights.*nowhere.pth.*does not exist"):
        get_backend("anatomy", "cxas", weights=tmp_path / "nowhere.pth")
    with pytest.raises(MissingWeightsError, match="hybridgnet_weights' is not set"):
        get_backend("anatomy", "hybridgnet")
    with pytest.raises(MissingWeightsError, match="yolo_weights.*missing.pt"):
        get_backend("boxes", "yolo", weights=tmp_path / "missing.pt")
    folders = {name: tmp_path / name for name in ("unet", "vae", "text_encoder")}
    for name, folder in folders.items():
        shutil.copytree(radedit_folders / name, folder)
    (folders["vae"] / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(MissingWeightsError, match="radedit_vae.*has no weights file .diffusion_pytorch_model"):
        get_backend("counterfactual", "radedit", **{k: str(v) for k, v in folders.items()})
    shutil.copy(radedit_folders / "vae" / "diffusion_pytorch_model.safetensors", folders["vae"])
    (folders["unet"] / "config.json").unlink()
    with pytest.raises(MissingWeightsError, match="radedit_unet.*has no config.json"):
        get_backend("counterfactual", "radedit", **{k: str(v) for k, v in folders.items()})
