"""Appendix D: frontal views only, the anatomy cross-check flag, the cardiothoracic ratio rule."""

import numpy as np
import pytest

from monai_ils.generation.qc import StudyQC, cardiomegaly_negative_allowed, cardiothoracic_ratio


def test_frontal_views():
    qc = StudyQC()
    assert qc.check_view("PA").passed and qc.check_view(" ap ").passed
    assert not any(qc.check_view(v).passed for v in ("LATERAL", "LL", "AP AXIAL", "", None))


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
    lateral = qc.check_view("LATERAL")
    assert not lateral.passed and "LATERAL" in lateral.reasons[0]
    assert not qc.check_view(None).passed and StudyQC(require_view=False).check_view(None).passed
