"""A 200x200 hand-built chest: lungs, zones and heart as rectangles, so every count is easy to check by hand."""

import numpy as np

SHAPE = (200, 200)
RIGHT_COLS, LEFT_COLS = (10, 90), (110, 190)  # image left = patient right
ZONE_ROWS = {"apical zone": (20, 50), "upper zone": (50, 90), "mid zone": (90, 120), "base": (120, 180)}


def rect(r0, r1, c0, c1, shape=SHAPE):
    mask = np.zeros(shape, dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask[None]


def anatomy():
    masks = {"right lung": rect(20, 180, *RIGHT_COLS), "left lung": rect(20, 180, *LEFT_COLS), "heart": rect(100, 170, 70, 130)}
    for side, cols in (("right", RIGHT_COLS), ("left", LEFT_COLS)):
        for zone, rows in ZONE_ROWS.items():
            name = f"{side} lung base" if zone == "base" else f"{side} {zone} lung"
            masks[name] = rect(*rows, *cols)
    return masks
