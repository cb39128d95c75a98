"""Quality control of studies before and after grounding (paper Appendix D).

Three rules: only frontal views (PA/AP) enter the pipeline (D.1); a study whose two anatomy models
disagree is dropped, the cross-check itself being done where both masks exist and handed here as a
flag (D.2); cardiomegaly negatives need a cardiothoracic ratio of at most 0.45 (D.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from monai_ils.vocab import CARDIOMEGALY_NEGATIVE_MAX_CTR, FRONTAL_VIEWS


def cardiothoracic_ratio(heart_mask, right_lung_mask, left_lung_mask) -> float | None:
    """Maximal horizontal heart width over maximal thoracic width (outer lung edges); None when a mask is empty.

    Uses :class:`monai_ils.transforms.CardiothoracicRatio` (one implementation) and turns its
    empty-mask error into None, because an unmeasurable CTR only means "no cardiomegaly negative".
    """
    from monai_ils.transforms import CardiothoracicRatio, GroundingInputError

    masks = [np.squeeze(np.asarray(m)) > 0 for m in (heart_mask, right_lung_mask, left_lung_mask)]
    if len({m.shape for m in masks}) != 1 or masks[0].ndim != 2:
        raise ValueError(f"cardiothoracic_ratio: masks must be 2-D and of one shape, got {[m.shape for m in masks]}.")
    if not masks[0].any() or not (masks[1] | masks[2]).any():
        return None
    try:
        return float(CardiothoracicRatio()(masks[1], masks[2], masks[0]))
    except GroundingInputError:
        return None  # one lung missing: the thorax cannot be measured


def cardiomegaly_negative_allowed(ctr, max_ctr: float = CARDIOMEGALY_NEGATIVE_MAX_CTR) -> bool:
    """Appendix D.3: a cardiomegaly negative is trusted only with a measured, finite CTR <= max_ctr.

    The one cardiomegaly rule: `PairGenerator` asks it (with its configured ``max_ctr``) before any
    cardiomegaly negative."""
    return ctr is not None and np.isfinite(ctr) and float(ctr) <= float(max_ctr)


@dataclass
class QCVerdict:
    """The outcome of quality control for one study; ``reasons`` says why it failed."""

    passed: bool
    reasons: list[str] = field(default_factory=list)


class StudyQC:
    """Apply Appendix D to one study.

    Args:
        frontal_views: accepted ViewPosition values (default PA and AP).
        require_view: reject studies whose view position is unknown (False keeps them, for non-DICOM inputs
            whose view is unknown but known to be frontal).
        max_ctr: accepted for configs that pass it and kept as an attribute; the cardiomegaly-negative rule itself
            (:func:`cardiomegaly_negative_allowed`) is applied by `PairGenerator` with its own ``max_ctr``.
    """

    def __init__(self, frontal_views=FRONTAL_VIEWS, require_view: bool = True, max_ctr: float = CARDIOMEGALY_NEGATIVE_MAX_CTR):
        self.frontal_views = tuple(str(v).strip().upper() for v in frontal_views)
        self.require_view = bool(require_view)
        self.max_ctr = float(max_ctr)

    def check_view(self, view_position) -> QCVerdict:
        """D.1, before any image work: is this a frontal view?"""
        if view_position is None or str(view_position).strip() == "":
            if self.require_view:
                return QCVerdict(False, ["view position unknown"])
            return QCVerdict(True)
        if str(view_position).strip().upper() not in self.frontal_views:
            return QCVerdict(False, [f"view position {view_position!r} is not frontal ({'/'.join(self.frontal_views)})"])
        return QCVerdict(True)
