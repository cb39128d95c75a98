"""The vocabulary carries the paper's numbers exactly (Table 7, Table 8, Appendix A.3, D.3)."""

import dataclasses

import pytest

from monai_ils import vocab


def test_table7_thresholds():
    general, edema = vocab.thresholds_for("pneumonia"), vocab.thresholds_for("edema")
    assert dataclasses.astuple(general) == (0.10, 0.25, 0.20, 0.20, 0.10)
    assert dataclasses.astuple(edema) == (0.01, 0.25, 0.01, 0.20, 0.10)
    assert all(vocab.thresholds_for(t) == general for t in vocab.LESION_TYPES if t != "edema")
    with pytest.raises(dataclasses.FrozenInstanceError):
        general.ano = 0.5


def test_threshold_overrides_from_config_mapping():
    assert vocab.thresholds_for("edema", {"edema": {"ano": 0.02}}).ano == 0.02
    assert vocab.thresholds_for("opacity", {"edema": {"ano": 0.02}}).ano == 0.10
    custom = vocab.GroundingThresholds(conf=0.5)
    assert vocab.thresholds_for("edema", custom) is custom
    with pytest.raises(TypeError, match="thresholds must be"):
        vocab.thresholds_for("edema", 0.3)


def test_locations_and_labels():
    assert len(vocab.LESION_TYPES) == 7 and len(vocab.LUNG_LABELS) == 15
    assert len(vocab.INSTRUCTION_LOCATIONS) == 10  # Table 8: two broad regions and eight zones
    assert set(vocab.INSTRUCTION_LOCATIONS) <= set(vocab.CXAS_LABEL_IDS)
    assert len(set(vocab.CXAS_LABEL_IDS.values())) == len(vocab.CXAS_LABEL_IDS)
    assert vocab.CXAS_LABEL_IDS["right lung"] == 135 and vocab.CXAS_LABEL_IDS["heart"] == 121
    assert vocab.join_locations(["right lung base", "left apical zone lung"]) == "right lung base and left apical zone"


def test_detector_classes():
    names = [vocab.VINBIG_CLASSES[i] for i in vocab.VINBIG_HYPERINTENSE_CLASS_IDS]
    assert len(vocab.VINBIG_CLASSES) == 14 and len(names) == 11
    assert not {"aortic enlargement", "other lesion", "pneumothorax"} & set(names)


def test_checks_name_the_bad_value():
    assert vocab.check_lesion_type(" Edema ") == "edema"
    with pytest.raises(ValueError, match="Unknown lesion type 'nodule'"):
        vocab.check_lesion_type("nodule")
    with pytest.raises(ValueError, match="Unknown anatomical label 'liver'"):
        vocab.check_anatomy_label("liver")
    assert vocab.CARDIOMEGALY_NEGATIVE_MAX_CTR == 0.45
