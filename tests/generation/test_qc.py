"""Appendix D: frontal views only, the anatomy cross-check flag, the cardiothoracic ratio rule."""

import numpy as np
import pytest

from monai_ils.generation.qc import QCVerdict, StudyQC, cardiomegaly_negative_allowed, cardiothoracic_ratio, is_frontal_view


def test_frontal_views():
    assert is_frontal_view("PA") and is_frontal_view(" ap ")
    assert not any(is_frontal_view(v) for v in ("LATERAL", "LL", "AP AXIAL", "", None))


def test_cardiothoracic_ratio_hand_computed():
    heart = np.zeros((20, 40), bool)
    heart[10:16, 14:26] = True  # 12 columns wide
    right = np.zeros((20, 40), bool)
    right[2:18, 5:18] = True
    left = np.zeros((20, 40), bool)
    left[2:18, 22:35] = True  # thorax from column 5 to 34: 30 columns
    assert cardiothoracic_ratio(heart, right, left) == pytest.approx(12 / 30)
    assert cardiothoracic_ratio(np.zeros_like(heart), right, left) is None
    with pytest.raises(ValueError, match="one shape"):
        cardiothoracic_ratio(heart, right[:10], left)


def test_ctr_rule_and_verdicts():
    assert cardiomegaly_negative_allowed(0.45) and not cardiomegaly_negative_allowed(0.4501)
    assert not cardiomegaly_negative_allowed(None) and not cardiomegaly_negative_allowed(float("nan"))
    qc = StudyQC()
    assert qc("PA", True, 0.4) == QCVerdict(True, [], 0.4)
    assert qc("PA", True, 0.4).cardiomegaly_negative_allowed
    lateral = qc("LATERAL", True, 0.4)
    assert not lateral.passed and "LATERAL" in lateral.reasons[0]
    disagree = qc("AP", False, 0.5)
    assert not disagree.passed and "anatomy" in disagree.reasons[0] and not disagree.cardiomegaly_negative_allowed
    assert qc("AP", None, None).passed  # cross-check not run: not a failure
    assert not qc.check_view(None).passed and StudyQC(require_view=False).check_view(None).passed
