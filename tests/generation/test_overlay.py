"""Overlay PNG drawing: the mask is tinted, its outline opaque, the rest of the image grey, at the overlay size."""

import numpy as np
import pytest

from monai_ils.generation.overlay import (OVERLAY_ALPHA, OVERLAY_COLOUR, OVERLAY_SIZE, OverlayCanvas, overlay_mask,
                                          overlay_shape, to_display)


def _blend(grey: int) -> tuple:
    return tuple(int(round(grey * (1 - OVERLAY_ALPHA) + c * OVERLAY_ALPHA)) for c in OVERLAY_COLOUR)


def test_hand_made_mask_lands_on_its_pixels_at_full_size():
    # a two-level image: 0 on the left half, 1000 on the right: display grey 0 and 255
    image = np.zeros((30, 40), np.float32)
    image[:, 20:] = 1000
    mask = np.zeros((30, 40), bool)
    mask[10:20, 15:25] = True  # straddles the two halves
    rgb = overlay_mask(image, mask, max_size=None)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (0, 0, 0) and tuple(rgb[0, 39]) == (255, 255, 255)  # outside: the grey image
    outside = rgb[~mask]
    assert (outside[:, 0] == outside[:, 1]).all() and (outside[:, 1] == outside[:, 2]).all()
    for row, col in [(10, 15), (19, 24), (10, 20), (15, 15)]:  # the outline: opaque colour
        assert tuple(rgb[row, col]) == OVERLAY_COLOUR
    assert tuple(rgb[15, 17]) == _blend(0) == (102, 16, 16)  # inside, on black: 0.6 * 0 + 0.4 * colour
    assert tuple(rgb[15, 22]) == _blend(255) == (255, 169, 169)  # inside, on white: 0.6 * 255 + 0.4 * colour


def test_overlay_at_its_size_has_the_mask_colour_where_the_mask_is():
    # 1000 x 800 shrunk to a longer side of 100 (factor 10): a mask of rows 300:600, cols 200:500 becomes 30:60, 20:50
    image = np.zeros((1000, 800), np.float32)
    image[:, 400:] = 1000
    mask = np.zeros((1000, 800), bool)
    mask[300:600, 200:500] = True
    canvas = OverlayCanvas(image, max_size=100)
    rgb = canvas.draw(mask)
    assert rgb.shape == (100, 80, 3) == canvas.overlay_shape + (3,)
    small = np.zeros((100, 80), bool)
    small[30:60, 20:50] = True
    assert np.array_equal(canvas.shrink_mask(mask), small)
    outline = small & ~np.pad(small, 1)[2:, 1:-1] | small & ~np.pad(small, 1)[:-2, 1:-1]
    outline |= small & ~np.pad(small, 1)[1:-1, 2:] | small & ~np.pad(small, 1)[1:-1, :-2]
    assert (rgb[outline] == OVERLAY_COLOUR).all()
    inner = small & ~outline
    assert (rgb[inner & (np.arange(80) < 40)] == _blend(0)).all()
    assert (rgb[inner & (np.arange(80) >= 40)] == _blend(255)).all()
    grey = np.where(np.arange(80) < 40, 0, 255).astype(np.uint8)
    assert (rgb[~small] == np.broadcast_to(grey, (100, 80))[~small][:, None]).all()  # elsewhere: the grey image


def test_overlay_size_default_and_shapes():
    assert OVERLAY_SIZE == 512
    assert overlay_shape((1955, 1841)) == (512, 482)  # the sample DICOM
    assert overlay_shape((300, 200)) == (300, 200)  # never enlarged
    assert overlay_shape((2000, 1000), None) == (2000, 1000)
    image = np.random.default_rng(0).normal(size=(2000, 1000)).astype(np.float32)
    mask = np.zeros((2000, 1000), bool)
    mask[:1000] = True
    assert overlay_mask(image, mask).shape == (512, 256, 3)
    assert overlay_mask(image, mask, max_size=500).shape == (500, 250, 3)
    assert to_display(np.ones((4, 4))).max() == 0  # flat image: no division by zero
    with pytest.raises(ValueError, match="mask shape"):
        overlay_mask(image, mask[:10])


def test_canvas_draws_what_overlay_mask_draws():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(1500, 1200)).astype(np.float32)
    masks = [np.zeros((1500, 1200), np.uint8) for _ in range(3)]  # 0/1 masks of another dtype than bool
    for i, mask in enumerate(masks):
        mask[100 * i: 100 * i + 400, 200:700] = 1
    canvas = OverlayCanvas(image, max_size=600)
    for mask in masks:
        assert np.array_equal(canvas.draw(mask), overlay_mask(image, mask, max_size=600))
    drawn = canvas.draw(masks[0])
    assert drawn.shape == (600, 480, 3)
    assert tuple(drawn[40, 80]) == OVERLAY_COLOUR  # the outline of mask 0 (rows 100:500 -> 40:200 at 0.4)
    assert (drawn[300, :, 0] == drawn[300, :, 1]).all()  # below the mask: grey


def test_processor_draws_overlays_at_its_overlay_size():
    from monai_ils.generation.processor import PairsProcessor

    with pytest.raises(ValueError, match="overlay_size"):
        PairsProcessor(lambda record: None, overlay_size=0)
    assert PairsProcessor(lambda record: None).overlay_size == OVERLAY_SIZE
    assert PairsProcessor(lambda record: None, overlay_size=None).overlay_size is None
