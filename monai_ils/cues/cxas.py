"""CXAS anatomy segmentation (159 PAX-Ray++ classes) from its published checkpoint, without the ``cxas`` package.

The ``cxas`` PyPI package (MIT) downloads its weights from Google Drive at run time and pins
``pydicom<3``, ``pydicom_seg`` and others, so we rebuild its network here with the same parameter
names and read its checkpoint file directly (config key ``cxas_weights``): the file
``UNet_ResNet50_default.pth`` that ``cxas`` stores under ``~/.cxas/weights/``, a ``torch.save`` dict
whose ``"model"`` entry is the state dict (keys possibly prefixed ``module.``).

Network ("UNet_ResNet50"): a torchvision ResNet-50 split into ``backbone.backbone.layer0..layer4``
(layer0 = conv1, bn1, relu, maxpool) and a U-Net head ``head.up1..up4`` + ``head.out`` (1x1 conv to
159 logits), upsampled to the input size. Input: the image scaled to [0, 1], three channels, ImageNet
mean/std, resized (nearest) to 512x512. Output: per-class sigmoid > 0.5, resized back to the image.
Channel ids and names follow ``vocab.CXAS_LABEL_IDS`` (checked against CXAS's ``paxray_labels.json``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from monai_ils import vocab
from monai_ils.cues.base import AnatomyBackend, LazyWeights, check_weights_path, finish_masks, register_backend, to_numpy_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_HELP = "the CXAS checkpoint UNet_ResNet50_default.pth (from the cxas package's model_urls, normally saved to ~/.cxas/weights/)"


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, mid: int | None = None):
        super().__init__()
        self.double_conv = nn.Sequential(*_conv_bn_relu(cin, mid or cout), *_conv_bn_relu(mid or cout, cout))

    def forward(self, x):
        return self.double_conv(x)


class SingleConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(*_conv_bn_relu(cin, cout))

    def forward(self, x):
        return self.conv(x)


class UpBlock(nn.Module):
    """Upsample the deeper map to the skip's size, concatenate (skip first), double conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = DoubleConv(cin, cout, cin // 2)

    def forward(self, deep, skip):
        return self.conv(torch.cat([skip, F.interpolate(deep, skip.shape[2:], mode="bilinear")], dim=1))


class FirstUpBlock(nn.Module):
    """Reduce the deepest map's channels, then as :class:`UpBlock`."""

    def __init__(self, reduced: int, cin: int, cout: int):
        super().__init__()
        self.conv1 = SingleConv(cin, reduced)
        self.conv2 = DoubleConv(cin, cout, cin // 2)

    def forward(self, deep, skip):
        deep = F.interpolate(self.conv1(deep), skip.shape[2:], mode="bilinear")
        return self.conv2(torch.cat([skip, deep], dim=1))


class OutConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, x):
        return self.conv(x)


class UNetHead(nn.Module):
    def __init__(self, cin: int = 2048, ngf: int = 128, num_classes: int = vocab.CXAS_NUM_CLASSES):
        super().__init__()
        self.up1 = FirstUpBlock(cin // 2, cin, cin // 4)
        self.up2 = UpBlock(cin // 4 * 2, cin // 8)
        self.up3 = UpBlock(cin // 8 * 2, cin // 32)
        self.up4 = UpBlock(cin // 32 * 2, ngf)
        self.out = OutConv(ngf, num_classes)


class ResNetBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        import torchvision

        net = torchvision.models.resnet50(weights=None)
        self.backbone = nn.Sequential(OrderedDict([
            ("layer0", nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)),
            ("layer1", net.layer1), ("layer2", net.layer2), ("layer3", net.layer3), ("layer4", net.layer4),
        ]))

    def forward(self, x) -> list[torch.Tensor]:
        feats = []
        for layer in self.backbone:
            x = layer(x)
            feats.append(x)
        return feats


class CXASUNet(nn.Module):
    """CXAS's "UNet_ResNet50" with its parameter names; ``forward`` returns logits [B, 159, H, W]."""

    def __init__(self, num_classes: int = vocab.CXAS_NUM_CLASSES):
        super().__init__()
        self.backbone = ResNetBackbone()
        self.head = UNetHead(2048, 128, num_classes)

    def forward(self, x):
        f1, f2, f3, f4, f5 = self.backbone(x)
        up = self.head.up4(self.head.up3(self.head.up2(self.head.up1(f5, f4), f3), f2), f1)
        return self.head.out(F.interpolate(up, x.shape[2:], mode="bilinear"))


def load_cxas_checkpoint(path: str, map_location: str | torch.device = "cpu") -> CXASUNet:
    """Build :class:`CXASUNet` and load a CXAS checkpoint into it (strictly: a mismatch is an error)."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    state = checkpoint["model"] if isinstance(checkpoint, dict) and "model" in checkpoint else checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a CXAS checkpoint (expected a dict with a 'model' state dict).")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    with torch.device("meta"):  # no random initialisation of 73 M parameters that are overwritten anyway
        model = CXASUNet()
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: not a CXAS UNet_ResNet50 checkpoint ({len(missing)} missing keys e.g. {missing[:3]}, "
                         f"{len(unexpected)} unexpected e.g. {unexpected[:3]}).")
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta:  # num_batches_tracked absent from older checkpoints
            module = model.get_submodule(name.rsplit(".", 1)[0])
            module.register_buffer(name.rsplit(".", 1)[1], torch.zeros((), dtype=torch.long))
    return model.eval()


@register_backend("anatomy", "cxas")
class CXASAnatomy(LazyWeights, AnatomyBackend):
    """CXAS backend (see module doc). The checkpoint path is checked here, the network loaded on first use
    (``model``; see :class:`~monai_ils.cues.base.LazyWeights`).

    Args:
        weights: checkpoint path (config key ``cxas_weights``).
        labels: which labels to return (default: every label of ``vocab.CXAS_LABEL_IDS``).
        size: network input size (512). device: "cpu" or "cuda:0". batch_size: images per forward pass.
    """

    name = "cxas"

    def __init__(self, weights: str | os.PathLike | None = None, labels: Sequence[str] | None = None, size: int = 512,
                 device: str = "cpu", batch_size: int = 4, threshold: float = 0.5):
        self.weights = check_weights_path(weights, "cxas_weights", WEIGHTS_HELP)
        self.device = torch.device(device)
        self.labels = tuple(vocab.check_anatomy_label(label) for label in labels) if labels else tuple(vocab.CXAS_LABEL_IDS)
        self.size, self.batch_size, self.threshold = int(size), int(batch_size), float(threshold)
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    lazy_attributes = ("model",)

    def _load(self) -> dict[str, Any]:
        return {"model": load_cxas_checkpoint(self.weights).to(self.device)}

    def _prepare(self, array: np.ndarray) -> torch.Tensor:
        lo, hi = float(array.min()), float(array.max())
        unit = torch.as_tensor((array - lo) / max(hi - lo, 1e-6), dtype=torch.float32)[None, None].repeat(1, 3, 1, 1)
        return F.interpolate((unit - self._mean) / self._std, size=(self.size, self.size))

    @torch.no_grad()
    def batch(self, images: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        arrays = [to_numpy_image(image) for image in images]
        ids = [vocab.CXAS_LABEL_IDS[label] for label in self.labels]
        out = []
        for start in range(0, len(arrays), self.batch_size):
            chunk = arrays[start : start + self.batch_size]
            x = torch.cat([self._prepare(a) for a in chunk]).to(self.device)
            probs = self.model(x)[:, ids].sigmoid().float().cpu()
            for array, prob in zip(chunk, probs):
                full = F.interpolate(prob[None], size=array.shape, mode="bilinear", align_corners=False)[0] > self.threshold
                out.append(finish_masks({label: full[i].numpy() for i, label in enumerate(self.labels)}))
        return out

    def __call__(self, image: Any) -> dict[str, np.ndarray]:
        return self.batch([image])[0]
