"""Overlays: a mask drawn over its chest X-ray, for looking at what the generator produced.

Overlays are quick-look images, drawn at the *overlay size*: the longer side shrunk to ``OVERLAY_SIZE`` pixels
(512 by default; ``PairsProcessor(overlay_size=...)``, None for full size). Per study the display image
(percentile scaling, area shrink) is computed once, on an :class:`OverlayCanvas`; each mask is then shrunk to
the overlay size (nearest neighbour: the mask pixel at each overlay pixel's centre) and blended through a 256-entry
lookup table, in uint8, without a float copy of the image. At 512 px an overlay costs a quarter of one at 1024 px
to draw, and the writer encodes it as JPEG (4x faster than PNG): overlays add ~7 % to the generation time
(docs/generation.md, Benchmark).
"""

from __future__ import annotations

import numpy as np

OVERLAY_COLOUR = (255, 40, 40)
OVERLAY_SIZE = 512  # longer side of an overlay, in pixels
OVERLAY_ALPHA = 0.4


def _as_2d(image) -> np.ndarray:
    """[H, W] float32 view of an image (torch or numpy, [H, W], [1, H, W] or RGB); copies only to convert."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    array = np.squeeze(np.asarray(image))
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].mean(axis=-1)
    if array.ndim != 2:
        raise ValueError(f"to_display: expected a 2-D image, got shape {array.shape}.")
    return array.astype(np.float32, copy=False)


def to_display(image) -> np.ndarray:
    """Any 2-D image (or [1, H, W]) -> uint8 [H, W] scaled from its 0.5th to 99.5th percentile."""
    array = _as_2d(image)
    low, high = np.percentile(array, (0.5, 99.5))
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return (np.clip((array - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def overlay_shape(shape, max_size: int | None = OVERLAY_SIZE) -> tuple[int, int]:
    """(height, width) of the overlay of an image of ``shape``: the longer side at most ``max_size``."""
    height, width = int(shape[0]), int(shape[1])
    if not max_size or max(height, width) <= max_size:
        return height, width
    scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def tint_table(colour=OVERLAY_COLOUR, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """uint8 [256, 3]: grey level g blended with ``colour``, ``round(g * (1 - alpha) + colour * alpha)``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be in [0, 1], got {alpha}.")
    levels = np.arange(256, dtype=np.float32)[:, None]
    return np.rint(levels * (1 - alpha) + np.asarray(colour, dtype=np.float32)[None, :] * alpha).clip(0, 255).astype(np.uint8)


class OverlayCanvas:
    """One study's display image at the overlay size, computed once, on which every mask of the study is drawn.

    Args:
        image: the study's [H, W] (or [1, H, W]) image at full size, the size of its masks.
        max_size: longer side of the overlays (:data:`OVERLAY_SIZE`); None or 0: full size.

    ``grey`` is the uint8 display image at the overlay size (percentiles of the shrunk image).
    """

    def __init__(self, image, max_size: int | None = OVERLAY_SIZE):
        if max_size is not None and max_size < 0:
            raise ValueError(f"overlay max_size must be positive or None, got {max_size}.")
        self.image = image
        array = _as_2d(image)
        self.shape = array.shape
        self.overlay_shape = overlay_shape(self.shape, max_size)
        self.shrunk = self.overlay_shape != self.shape
        if self.shrunk:
            import cv2

            # INTER_AREA: each overlay pixel the mean of the pixels it covers; float32 in, no float64 copy
            array = cv2.resize(np.ascontiguousarray(array), self.overlay_shape[::-1], interpolation=cv2.INTER_AREA)
        # nearest-neighbour sample positions: the centre of each overlay pixel, in full-size pixels
        self._rows = ((np.arange(self.overlay_shape[0]) + 0.5) * self.shape[0] / self.overlay_shape[0]).astype(np.intp)
        self._cols = ((np.arange(self.overlay_shape[1]) + 0.5) * self.shape[1] / self.overlay_shape[1]).astype(np.intp)
        self.grey = to_display(array)  # percentiles of the overlay-sized image: once per study
        self._base = np.repeat(self.grey[..., None], 3, axis=-1)  # the grey RGB every overlay starts from
        self._tables: dict = {}

    def shrink_mask(self, mask) -> np.ndarray:
        """bool mask at the overlay size, nearest neighbour: each overlay pixel takes the mask pixel at its centre."""
        mask = np.squeeze(np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask))
        if mask.shape != self.shape:
            raise ValueError(f"overlay_mask: mask shape {mask.shape} differs from image shape {self.shape}.")
        if self.shrunk:
            mask = mask[self._rows][:, self._cols]  # gather the overlay's pixels only, then compare
        return mask if mask.dtype == bool else mask > 0

    def draw(self, mask, colour=OVERLAY_COLOUR, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
        """RGB uint8 [h, w, 3] at the overlay size: the grey image, ``mask`` blended in ``colour``, its outline opaque."""
        mask = self.shrink_mask(mask)
        key = (tuple(int(c) for c in colour), float(alpha))
        if key not in self._tables:
            self._tables[key] = tint_table(colour, alpha)
        rgb = self._base.copy()
        rgb[mask] = self._tables[key][self.grey[mask]]
        rgb[mask & ~_erode(mask)] = key[0]
        return rgb


def overlay_mask(image, mask, colour=OVERLAY_COLOUR, alpha: float = OVERLAY_ALPHA, max_size: int | None = OVERLAY_SIZE) -> np.ndarray:
    """RGB uint8 [h, w, 3]: the image in grey with the mask blended in ``colour`` and its outline opaque.

    ``max_size`` is the overlay's longer side (:data:`OVERLAY_SIZE`; None: full size). For several masks on one
    image, draw them on one :class:`OverlayCanvas` instead.
    """
    return OverlayCanvas(image, max_size).draw(mask, colour, alpha)


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, mode="constant")
    return padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
