"""Appendix D: frontal views only, the anatomy cross-check flag, the cardiothoracic ratio rule."""


from monai_ils.generation.qc import StudyQC, cardiomegaly_negative_allowed


def test_frontal_views():
    qc = StudyQC()
    assert qc.check_view("PA").passed and qc.check_view(" ap ").passed
    assert not any(qc.check_view(v).passed for v in ("LATERAL", "LL", "AP AXIAL", "", None))


def test_ctr_rule_and_verdicts():
    assert cardiomegaly_negative_allowed(0.45) and not cardiomegaly_negative_allowed(0.4501)
    assert not cardiomegaly_negative_allowed(None) and not cardiomegaly_negative_allowed(float("nan"))
    qc = StudyQC()
    lateral = qc.check_view("LATERAL")
    assert not lateral.passed and "LATERAL" in lateral.reasons[0]
    assert not qc.check_view(None).passed and StudyQC(require_view=False).check_view(None).passed
