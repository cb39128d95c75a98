"""Quality control of studies before and after grounding (paper Appendix D).

Three rules: only frontal views (PA/AP) enter the pipeline (D.1); a study whose two anatomy models
disagree is dropped, the cross-check itself being done where both masks exist and handed here as a
flag (D.2); cardiomegaly negatives need a cardiothoracic ratio of at most 0.45 (D.3). The ratio itself is
measured once per study, by ``StudyCardiothoracicRatiod`` of the study transforms (``CardiothoracicRatio``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from monai_ils.vocab import CARDIOMEGALY_NEGATIVE_MAX_CTR, FRONTAL_VIEWS


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

    The cardiomegaly-negative rule (:func:`cardiomegaly_negative_allowed`, D.3) is applied by `PairGenerator`
    with its ``max_ctr``, where the negatives are made.
    """

    def __init__(self, frontal_views=FRONTAL_VIEWS, require_view: bool = True):
        self.frontal_views = tuple(str(v).strip().upper() for v in frontal_views)
        self.require_view = bool(require_view)

    def check_view(self, view_position) -> QCVerdict:
        """D.1, before any image work: is this a frontal view?"""
        if view_position is None or str(view_position).strip() == "":
            if self.require_view:
                return QCVerdict(False, ["view position unknown"])
            return QCVerdict(True)
        if str(view_position).strip().upper() not in self.frontal_views:
            return QCVerdict(False, [f"view position {view_position!r} is not frontal ({'/'.join(self.frontal_views)})"])
        return QCVerdict(True)
