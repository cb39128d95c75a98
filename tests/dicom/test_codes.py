"""The codes table covers the whole vocabulary, and the CTR bands split where the issue says."""

import pytest

from monai_ils import codes, vocab


def test_every_lesion_and_anatomy_label_has_one_code():
    assert set(codes.LESION_CODES) == set(vocab.LESION_TYPES)
    assert set(codes.ANATOMY_CODES) == set(vocab.CXAS_LABEL_IDS)
    sided = {label: codes.anatomy_code(label).laterality for label in vocab.CXAS_LABEL_IDS}
    assert sided["right lung base"] == codes.RIGHT and sided["left apical zone lung"] == codes.LEFT
    assert sided["heart"] is None and sided["lung middle lobe right"] is None
    assert codes.lesion_code("Effusion").value == "60046008"
    with pytest.raises(ValueError, match="Unknown lesion type"):
        codes.lesion_code("nodule")


@pytest.mark.parametrize("ctr, band", [(0.45, "normal"), (0.5099, "normal"), (0.51, "mild"), (0.549, "mild"),
                                       (0.55, "moderate"), (0.599, "moderate"), (0.6, "severe"), (0.8, "severe")])
def test_ctr_bands(ctr, band):
    assert vocab.ctr_severity(ctr) == band
    assert band in codes.SEVERITY_VALUES


def test_ctr_bands_are_configurable_and_checked():
    assert vocab.ctr_severity(0.52, (("normal", 0.5), ("severe", float("inf")))) == "severe"
    with pytest.raises(ValueError, match="increasing order"):
        vocab.ctr_severity(0.5, (("mild", 0.6), ("normal", 0.5)))
    with pytest.raises(ValueError, match="end the bands with inf"):
        vocab.ctr_severity(0.9, (("normal", 0.5),))
