"""HybridGNet lung and heart contours (the model behind CheXmask), rebuilt in plain PyTorch.

HybridGNet (Gaggion et al.; the "HybridGNet2IGSC" variant used for CheXmask) encodes a 1024x1024 grey
image in [0, 1] with a residual CNN and decodes 120 contour landmarks with Chebyshev graph convolutions
on ring graphs (right lung 0:44, left lung 44:94, heart 94:120) plus two image-to-graph skip
connections (RoI-align lookups). Its graph layers come from torch_geometric; the graphs here are fixed
rings, so we compute the same Chebyshev filters with dense matrices: no torch_geometric needed. The
parameter names match the published state dict (config key ``hybridgnet_weights``; a
``torch.save(state_dict)`` file such as ``bestMSE.pt``) so it loads unchanged; the input size and
latent size are read from its ``encoder.fc_mu`` shape.

Pre-processing: the image is min-max scaled to [0, 1], padded to a square (centred) and resized to the
network size; landmarks are mapped back and each organ's contour is filled (cv2) into its mask. Zones
are derived from the lungs with the classical zone rule.
"""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from monai_ils import vocab
from monai_ils.cues.base import AnatomyBackend, LazyWeights, check_weights_path, finish_masks, register_backend, to_numpy_image
from monai_ils.cues.chexmask import HYBRIDGNET_SLICES

ORGAN_SIZES = (44, 50, 26)  # right lung, left lung, heart
WEIGHTS_HELP = "the HybridGNet state dict trained on CheXmask (e.g. 'bestMSE.pt' from the CheXmask-Database / HybridGNet release)"


# ----------------------------------------------------------------------------------------------
# Fixed graphs: rings per organ, their halving (pooling) and doubling (unpooling) matrices
# ----------------------------------------------------------------------------------------------
def _ring(n: int) -> np.ndarray:
    a = np.zeros((n, n))
    idx = np.arange(n)
    a[idx, idx - 1] = 1
    a[idx, (idx + 1) % n] = 1
    return a


def _unpool(n: int) -> np.ndarray:
    """Node i of the full ring takes node i//2 of the half ring (even i) or the mean of two (odd i)."""
    half = int(np.ceil(n / 2))
    u = np.zeros((n, half))
    for i in range(n):
        if i % 2 == 0:
            u[i, i // 2] = 1
        else:
            u[i, i // 2] = 0.5
            u[i, (i // 2 + 1) % half] = 0.5
    return u


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    rows, cols = sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, cols))
    r = c = 0
    for b in blocks:
        out[r : r + b.shape[0], c : c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


def graph_matrices() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adjacency of the full (120) and half (60) graphs and the unpooling matrix [120, 60]."""
    full = _block_diag([_ring(n) for n in ORGAN_SIZES])
    half = _block_diag([_ring(int(np.ceil(n / 2))) for n in ORGAN_SIZES])
    unpool = _block_diag([_unpool(n) for n in ORGAN_SIZES])
    return (torch.tensor(full, dtype=torch.float32), torch.tensor(half, dtype=torch.float32), torch.tensor(unpool, dtype=torch.float32))


def scaled_laplacian(adjacency: torch.Tensor) -> torch.Tensor:
    """Chebyshev's L_hat = 2 L / lambda_max - I with the symmetric Laplacian and lambda_max = 2."""
    degree = adjacency.sum(1)
    inv_sqrt = torch.where(degree > 0, degree.pow(-0.5), torch.zeros_like(degree))
    return -(inv_sqrt[:, None] * adjacency * inv_sqrt[None, :])


# ----------------------------------------------------------------------------------------------
# Layers (parameter names as in the published model)
# ----------------------------------------------------------------------------------------------
class ChebConv(nn.Module):
    """Chebyshev graph convolution of order K on a fixed graph: sum_k lins[k](T_k(L_hat) x) + bias."""

    def __init__(self, cin: int, cout: int, K: int, bias: bool = True):
        super().__init__()
        self.lins = nn.ModuleList([nn.Linear(cin, cout, bias=False) for _ in range(K)])
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        for lin in self.lins:
            nn.init.normal_(lin.weight, 0, 0.1)

    def forward(self, x: torch.Tensor, lap: torch.Tensor) -> torch.Tensor:
        t0 = x
        out = self.lins[0](t0)
        if len(self.lins) > 1:
            t1 = torch.matmul(lap, x)
            out = out + self.lins[1](t1)
            for lin in self.lins[2:]:
                t0, t1 = t1, 2 * torch.matmul(lap, t1) - t0
                out = out + lin(t1)
        return out if self.bias is None else out + self.bias


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.skip = None if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout, track_running_stats=False))
        self.block = nn.Sequential(
            nn.BatchNorm2d(cin, track_running_stats=False), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout, track_running_stats=False), nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1),
        )

    def forward(self, x):
        return F.relu(self.block(x) + (x if self.skip is None else self.skip(x)))


class Encoder(nn.Module):
    def __init__(self, latents: int = 64, hw: int = 32):
        super().__init__()
        self.size = [8, 16, 32, 64, 128]
        s = self.size
        self.dconv_down1, self.dconv_down2, self.dconv_down3 = ResidualBlock(1, s[0]), ResidualBlock(s[0], s[1]), ResidualBlock(s[1], s[2])
        self.dconv_down4, self.dconv_down5, self.dconv_down6 = ResidualBlock(s[2], s[3]), ResidualBlock(s[3], s[4]), ResidualBlock(s[4], s[4])
        self.fc_mu = nn.Linear(s[4] * hw * hw, latents)
        self.fc_logvar = nn.Linear(s[4] * hw * hw, latents)

    def forward(self, x):
        x = F.max_pool2d(self.dconv_down1(x), 2)
        x = F.max_pool2d(self.dconv_down2(x), 2)
        x = F.max_pool2d(self.dconv_down3(x), 2)
        x = F.max_pool2d(self.dconv_down4(x), 2)
        conv5 = self.dconv_down5(x)
        conv6 = self.dconv_down6(F.max_pool2d(conv5, 2))
        return self.fc_mu(conv6.flatten(1)), conv6, conv5


class SkipBlock(nn.Module):
    """Predict a position per node, sample the CNN feature map there (3x3 window, RoI-align)."""

    def __init__(self, cin: int, window: tuple[int, int] = (3, 3)):
        super().__init__()
        self.window = window
        self.graphConv_pre = ChebConv(cin, 2, 1, bias=False)

    def forward(self, x, lap, features):
        from torchvision.ops import roi_align

        pos = self.graphConv_pre(x, lap)
        b, n = pos.shape[:2]
        h = features.shape[-1]
        p = pos * h
        wx, wy = self.window[0] // 2, self.window[1] // 2
        boxes = [torch.cat([p[i, :, :1] - wx, p[i, :, 1:] - wy, p[i, :, :1] + wx + 1, p[i, :, 1:] + wy + 1], dim=1) for i in range(b)]
        skip = roi_align(features, boxes, output_size=(1, 1), aligned=True).view(b, n, -1)
        return torch.cat([x, skip, pos], dim=2)


class HybridGNet(nn.Module):
    """HybridGNet2IGSC with the published names; ``forward`` returns landmarks [B, 120, 2] in [0, 1] (x, y)."""

    def __init__(self, input_size: int = 1024, latents: int = 64, f: int = 32):
        super().__init__()
        full, half, unpool = graph_matrices()
        self.register_buffer("lap_full", scaled_laplacian(full), persistent=False)
        self.register_buffer("lap_half", scaled_laplacian(half), persistent=False)
        self.register_buffer("unpool", unpool, persistent=False)
        self.filters = [2, f, f, f, f // 2, f // 2, f // 2]
        self.encoder = Encoder(latents, input_size // 32)
        feats = self.encoder.size[4]
        fl = self.filters
        self.dec_lin = nn.Linear(latents, fl[-1] * half.shape[0])
        self.graphConv_up6 = ChebConv(fl[6], fl[5], 6)
        self.graphConv_up5 = ChebConv(fl[5], fl[4], 6)
        self.SC_1 = SkipBlock(fl[4])
        self.graphConv_up4 = ChebConv(fl[4] + feats + 2, fl[3], 6)
        self.graphConv_up3 = ChebConv(fl[3], fl[2], 6)
        self.SC_2 = SkipBlock(fl[2])
        self.graphConv_up2 = ChebConv(fl[2] + feats + 2, fl[1], 6)
        self.graphConv_up1 = ChebConv(fl[1], fl[0], 1, bias=False)

    @staticmethod
    def _norm_relu(x):
        # InstanceNorm1d over [B, nodes, features]: each node normalised across its features.
        return F.relu(F.instance_norm(x))

    def forward(self, x):
        mu, conv6, conv5 = self.encoder(x)
        g = F.relu(self.dec_lin(mu)).reshape(x.shape[0], -1, self.filters[-1])
        g = self._norm_relu(self.graphConv_up6(g, self.lap_half))
        g = self._norm_relu(self.graphConv_up5(g, self.lap_half))
        g = self.SC_1(g, self.lap_half, conv6)
        g = self._norm_relu(self.graphConv_up4(g, self.lap_half))
        g = torch.matmul(self.unpool, g)
        g = self._norm_relu(self.graphConv_up3(g, self.lap_full))
        g = self.SC_2(g, self.lap_full, conv5)
        g = self._norm_relu(self.graphConv_up2(g, self.lap_full))
        return self.graphConv_up1(g, self.lap_full)


def load_hybridgnet(path: str, map_location: str | torch.device = "cpu") -> HybridGNet:
    """Build :class:`HybridGNet` sized from the state dict and load it strictly."""
    state = torch.load(path, map_location=map_location, weights_only=False)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or "encoder.fc_mu.weight" not in state:
        raise ValueError(f"{path}: not a HybridGNet state dict (no 'encoder.fc_mu.weight').")
    latents, flat = state["encoder.fc_mu.weight"].shape
    hw = int(round((flat / 128) ** 0.5))
    f = int(state["graphConv_up2.lins.0.weight"].shape[0]) if "graphConv_up2.lins.0.weight" in state else 32
    model = HybridGNet(input_size=hw * 32, latents=int(latents), f=f)
    model.load_state_dict(state, strict=True)
    return model.eval()


def fill_contours(landmarks: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Right lung, left lung and heart masks from 120 (x, y) landmarks in image pixels."""
    masks = {}
    for label, part in HYBRIDGNET_SLICES.items():
        canvas = np.zeros(shape, dtype=np.uint8)
        cv2.drawContours(canvas, [np.round(landmarks[part]).astype(np.int32).reshape(-1, 1, 2)], -1, 1, thickness=-1)
        masks[label] = canvas.astype(bool)
    return masks


@register_backend("anatomy", "hybridgnet")
class HybridGNetAnatomy(LazyWeights, AnatomyBackend):
    """HybridGNet backend (see module doc). ``weights`` is config key ``hybridgnet_weights``: checked here, the
    network (``model``, and ``input_size`` read from it) loaded on first use (:class:`~monai_ils.cues.base.LazyWeights`)."""

    name = "hybridgnet"
    labels = (vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART)

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu", with_zones: bool = True):
        self.weights = check_weights_path(weights, "hybridgnet_weights", WEIGHTS_HELP)
        self.device = torch.device(device)
        self.with_zones = with_zones

    lazy_attributes = ("model", "input_size")

    def _load(self) -> dict[str, Any]:
        model = load_hybridgnet(self.weights).to(self.device)
        return {"model": model, "input_size": int(round((model.encoder.fc_mu.in_features // 128) ** 0.5)) * 32}

    def landmarks(self, image: Any) -> np.ndarray:
        """The 120 landmarks (x, y) in the image's pixel coordinates."""
        array = to_numpy_image(image)
        h, w = array.shape
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        unit = (array - array.min()) / max(float(array.max() - array.min()), 1e-6)
        square = np.zeros((side, side), dtype=np.float32)
        square[top : top + h, left : left + w] = unit
        net_in = cv2.resize(square, (self.input_size, self.input_size), interpolation=cv2.INTER_AREA)
        with torch.no_grad():
            out = self.model(torch.as_tensor(net_in)[None, None].to(self.device))[0].float().cpu().numpy()
        points = out * side
        points[:, 0] -= left
        points[:, 1] -= top
        return points

    def __call__(self, image: Any) -> dict[str, np.ndarray]:
        from monai_ils.cues.classical_anatomy import lung_zones

        shape = to_numpy_image(image).shape
        masks = fill_contours(self.landmarks(image), shape)
        if self.with_zones:
            for side in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG):
                masks.update(lung_zones(masks[side], side))
            masks["lung"] = masks[vocab.RIGHT_LUNG] | masks[vocab.LEFT_LUNG]
        return finish_masks(masks)
