"""bench overlays alternates its off/on runs so that a change of machine load biases neither side."""

import pytest

from monai_ils.bench.overlays import run_order


def test_runs_alternate_and_each_side_runs_repeats_times():
    assert run_order(1) == [False, True]
    assert run_order(3) == [False, True, True, False, False, True]
    with pytest.raises(ValueError, match="repeats"):
        run_order(0)
