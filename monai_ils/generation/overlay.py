"""Overlay PNGs: a mask drawn over its chest X-ray, for looking at what the generator produced."""

from __future__ import annotations

import numpy as np

OVERLAY_COLOUR = (255, 40, 40)


def to_display(image) -> np.ndarray:
    """Any 2-D image (or [1, H, W]) -> uint8 [H, W] scaled from its 0.5th to 99.5th percentile."""
    array = np.squeeze(np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)).astype(np.float32)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].mean(axis=-1)
    if array.ndim != 2:
        raise ValueError(f"to_display: expected a 2-D image, got shape {array.shape}.")
    low, high = np.percentile(array, (0.5, 99.5))
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return (np.clip((array - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def overlay_mask(image, mask, colour=OVERLAY_COLOUR, alpha: float = 0.4, max_size: int | None = 1024) -> np.ndarray:
    """RGB uint8 [H, W, 3]: the image in grey with the mask blended in ``colour`` and its outline opaque.

    ``max_size`` shrinks the longer side (nearest neighbour for the mask) to keep the PNGs small.
    """
    grey = to_display(image)
    mask = np.squeeze(np.asarray(mask)) > 0
    if mask.shape != grey.shape:
        raise ValueError(f"overlay_mask: mask shape {mask.shape} differs from image shape {grey.shape}.")
    if max_size and max(grey.shape) > max_size:
        from PIL import Image

        scale = max_size / max(grey.shape)
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = np.asarray(Image.fromarray(grey).resize(size, Image.BILINEAR))
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
    rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    colour = np.asarray(colour, dtype=np.float32)
    rgb[mask] = rgb[mask] * (1 - alpha) + colour * alpha
    edge = mask & ~_erode(mask)
    rgb[edge] = colour
    return rgb.astype(np.uint8)


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, mode="constant")
    return padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
