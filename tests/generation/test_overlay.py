"""Overlay PNG drawing: the mask is tinted, its outline opaque, the rest of the image grey."""

import numpy as np
import pytest

from monai_ils.generation.overlay import OVERLAY_COLOUR, overlay_mask, to_display


def test_overlay_tints_the_mask_and_keeps_the_rest_grey():
    image = np.tile(np.linspace(0, 1000, 40, dtype=np.float32), (30, 1))
    mask = np.zeros((30, 40), bool)
    mask[10:20, 5:15] = True
    rgb = overlay_mask(image, mask)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    outside = rgb[~mask]
    assert (outside[:, 0] == outside[:, 1]).all() and (outside[:, 1] == outside[:, 2]).all()
    assert tuple(rgb[10, 5]) == OVERLAY_COLOUR  # outline
    inner = rgb[15, 10].astype(int)
    assert inner[0] > inner[1] and inner[0] > inner[2]  # tinted red inside


def test_overlay_shrinks_large_images_and_checks_shapes():
    image = np.random.default_rng(0).normal(size=(2000, 1000)).astype(np.float32)
    mask = np.zeros((2000, 1000), bool)
    mask[:1000] = True
    rgb = overlay_mask(image, mask, max_size=500)
    assert rgb.shape == (500, 250, 3)
    assert to_display(np.ones((4, 4))).max() == 0  # flat image: no division by zero
    with pytest.raises(ValueError, match="mask shape"):
        overlay_mask(image, mask[:10])


def test_canvas_draws_what_overlay_mask_draws_and_exports_the_full_display():
    from monai_ils.generation.overlay import OverlayCanvas

    rng = np.random.default_rng(1)
    image = rng.normal(size=(1500, 1200)).astype(np.float32)
    masks = [np.zeros((1500, 1200), bool) for _ in range(3)]
    for i, mask in enumerate(masks):
        mask[100 * i: 100 * i + 400, 200:700] = True
    canvas = OverlayCanvas(image, max_size=600)
    for mask in masks:
        assert np.array_equal(canvas.draw(mask), overlay_mask(image, mask, max_size=600))
    drawn = canvas.draw(masks[0])
    assert drawn.shape == (600, 480, 3)
    assert tuple(drawn[40, 80]) == OVERLAY_COLOUR  # the outline of mask 0 (rows 100:500 -> 40:200 at 0.4)
    assert (drawn[300, :, 0] == drawn[300, :, 1]).all()  # below the mask: grey
    assert np.array_equal(canvas.full, to_display(image))
