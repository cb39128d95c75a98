"""Overlay PNGs: a mask drawn over its chest X-ray, for looking at what the generator produced."""

from __future__ import annotations

import numpy as np

OVERLAY_COLOUR = (255, 40, 40)


def _as_2d(image) -> np.ndarray:
    array = np.squeeze(np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)).astype(np.float32)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].mean(axis=-1)
    if array.ndim != 2:
        raise ValueError(f"to_display: expected a 2-D image, got shape {array.shape}.")
    return array


def to_display(image) -> np.ndarray:
    """Any 2-D image (or [1, H, W]) -> uint8 [H, W] scaled from its 0.5th to 99.5th percentile."""
    array = _as_2d(image)
    low, high = np.percentile(array, (0.5, 99.5))
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return (np.clip((array - low) / (high - low), 0, 1) * 255).astype(np.uint8)


class OverlayCanvas:
    """One study's display image, computed once, on which every mask of the study is drawn.

    The percentile scaling of the full-resolution image (the costly part) and the shrink to the overlay's
    size (longer side ``max_size``) happen once per study, not once per mask. ``full`` is the full-size
    8-bit display image (what ``export_images`` writes).
    """

    def __init__(self, image, max_size: int | None = 1024):
        self.image = image
        array = _as_2d(image)
        self.shape = array.shape
        self.size = None  # (width, height) of the overlays when they are shrunk
        if max_size and max(self.shape) > max_size:
            import cv2

            scale = max_size / max(self.shape)
            self.size = (max(1, round(self.shape[1] * scale)), max(1, round(self.shape[0] * scale)))
            array = cv2.resize(array, self.size, interpolation=cv2.INTER_AREA)
        self.grey = to_display(array)  # percentiles of the overlay-sized image: once per study
        self._full = self.grey if self.size is None else None

    @property
    def full(self) -> np.ndarray:
        """The full-size 8-bit display image (computed on first use)."""
        if self._full is None:
            self._full = to_display(self.image)
        return self._full

    def draw(self, mask, colour=OVERLAY_COLOUR, alpha: float = 0.4) -> np.ndarray:
        """RGB uint8: the grey image with ``mask`` blended in ``colour`` and its outline opaque."""
        mask = np.squeeze(np.asarray(mask)) > 0
        if mask.shape != self.shape:
            raise ValueError(f"overlay_mask: mask shape {mask.shape} differs from image shape {self.shape}.")
        if self.size is not None:
            from PIL import Image

            mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(self.size, Image.NEAREST)) > 0
        rgb = np.repeat(self.grey[..., None], 3, axis=-1)  # uint8; only the mask's pixels are blended in float
        colour = np.asarray(colour, dtype=np.float32)
        rgb[mask] = (rgb[mask].astype(np.float32) * (1 - alpha) + colour * alpha).astype(np.uint8)
        edge = mask & ~_erode(mask)
        rgb[edge] = colour.astype(np.uint8)
        return rgb


def overlay_mask(image, mask, colour=OVERLAY_COLOUR, alpha: float = 0.4, max_size: int | None = 1024) -> np.ndarray:
    """RGB uint8 [H, W, 3]: the image in grey with the mask blended in ``colour`` and its outline opaque.

    ``max_size`` shrinks the longer side (nearest neighbour for the mask) to keep the PNGs small. For several
    masks on one image, draw them on one :class:`OverlayCanvas` instead.
    """
    return OverlayCanvas(image, max_size).draw(mask, colour, alpha)


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, mode="constant")
    return padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
