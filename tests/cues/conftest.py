"""Shared fixtures: the real chest X-ray with its classical cues (computed once per session)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def rg1_overlay(tmp_path_factory):
    """RG1_UNCR.dcm loaded with LoadCXR, its classical cues, and the overlay PNG written by the script."""
    from monai_ils.cues.overlay import write_overlay

    return write_overlay(tmp_path_factory.mktemp("overlay"))


def phantom(h: int = 256, w: int = 240, lesion: tuple[int, int, int] | None = (120, 70, 10), i_max: float = 4095.0) -> np.ndarray:
    """A crude PA chest: bright body, two dark elliptic lung fields, a bright mediastinum, optional round opacity.

    lesion = (row, col, radius) inside the right lung (image left).
    """
    rows, cols = np.mgrid[:h, :w]
    img = np.full((h, w), 0.85 * i_max, dtype=np.float32)
    img[:, :10] = img[:, -10:] = 0.05 * i_max  # air outside the body
    for cx in (0.3 * w, 0.7 * w):
        inside = ((rows - 0.42 * h) / (0.3 * h)) ** 2 + ((cols - cx) / (0.13 * w)) ** 2 <= 1
        img[inside] = 0.35 * i_max
    if lesion is not None:
        r, c, rad = lesion
        img[(rows - r) ** 2 + (cols - c) ** 2 <= rad**2] = 0.6 * i_max
    return img[None]
