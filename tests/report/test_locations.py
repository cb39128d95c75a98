"""Two-step location mapping: term -> category -> lung labels, with the entity-aware rules."""

import pytest

from monai_ils.report.locations import (
    LocationMapper,
    find_location_terms,
    labels_for_terms,
    parse_location_term,
    parse_location_terms,
)
from monai_ils.vocab import ANATOMY_LABELS, LOCATION_CATEGORIES


@pytest.mark.parametrize(
    "term, category, labels",
    [
        ("lower lung", "lung", ["right lung base", "left lung base"]),
        ("bibasilar", "lung", ["right lung base", "left lung base"]),
        ("left base", "lung", ["left lung base"]),
        ("base of the right lung", "lung", ["right lung base"]),
        ("right costophrenic angle", "lung", ["right lung base"]),
        ("retrocardiac", "lateral view location", []),
        ("left retrocardiac", "lateral view location", []),
        ("retrosternal space", "lateral view location", []),
        ("left", "lung", ["left lung"]),
        ("right", "lung", ["right lung"]),
        ("bilateral", "lung", ["right lung", "left lung"]),
        ("right lower lobe", "lung", ["lung lower lobe right"]),
        ("right middle and lower lobes", "lung", ["lung middle lobe right", "lung lower lobe right"]),
        ("upper lobes", "lung", ["lung upper lobe left", "lung upper lobe right"]),
        ("middle lobe", "lung", ["lung middle lobe right"]),
        ("lingula", "lung", ["lung upper lobe left"]),
        ("left mid lung", "lung", ["left mid zone lung"]),
        ("mid and lower lungs", "lung", ["right mid zone lung", "right lung base", "left mid zone lung", "left lung base"]),
        ("right upper zone", "lung", ["right upper zone lung"]),
        ("left apical", "lung", ["left apical zone lung"]),
        ("biapical", "lung", ["right apical zone lung", "left apical zone lung"]),
        ("perihilar", "lung", ["right mid zone lung", "left mid zone lung"]),
        ("right hemithorax", "lung", ["right lung"]),
        ("lungs", "lung", ["right lung", "left lung"]),
        ("left pleural", "pleura", ["left lung"]),
        ("mediastinal", "mediastinum", []),
        ("left hemidiaphragm", "diaphragm", []),
        ("aortic arch", "vessels", []),
        ("stomach", "abdomen", []),
        ("right 7th rib", "rib", []),
        ("thoracic spine", "thoracic spine", []),
        ("cardiac", "heart", []),
    ],
)
def test_rule_table(term, category, labels):
    parsed = parse_location_term(term)
    assert parsed is not None and parsed.category == category
    assert parsed.category in LOCATION_CATEGORIES
    assert labels_for_terms([parsed], "opacity") == labels


def test_unknown_terms_are_none():
    assert parse_location_term("elbow") is None
    assert parse_location_term("") is None


@pytest.mark.parametrize(
    "terms, lesion, labels",
    [
        (["right"], "effusion", ["right lung base"]),  # pleural fluid collects at the base
        (["bilateral"], "effusion", ["right lung base", "left lung base"]),
        ([], "effusion", ["right lung base", "left lung base"]),
        ([], "edema", ["right lung", "left lung"]),  # pulmonary edema without a location is bilateral
        ([], "pneumonia", []),
        ([], "cardiomegaly", ["heart"]),
        (["right lower lobe"], "cardiomegaly", ["heart"]),
        (["right lung", "right lower lobe"], "opacity", ["right lung"]),  # no overlapping labels
        (["retrocardiac"], "atelectasis", []),
    ],
)
def test_entity_aware_step_two(terms, lesion, labels):
    assert labels_for_terms([parse_location_term(t) for t in terms], lesion) == labels


def test_find_terms_in_sentence_skips_blocked_spans():
    sentence = "Small left pleural effusion and right lower lobe opacity."
    entity = sentence.index("pleural effusion")
    terms = find_location_terms(sentence, [(entity, entity + len("pleural effusion"))])
    assert [(t.text, t.kind) for t in terms] == [("left", "side"), ("right lower lobe", "lobe")]
    assert sentence[terms[1].start:terms[1].end] == "right lower lobe"


def test_bilaterally_refines_the_term_before():
    terms = find_location_terms("Opacities in the upper lungs bilaterally.")
    assert len(terms) == 1 and labels_for_terms(terms, "opacity") == ["right upper zone lung", "left upper zone lung"]


def test_mapper_uses_llm_for_unknown_terms_and_labels_are_vocabulary():
    calls = []

    def fake_llm(term, entity):  # a plain callable: the LLM mapper itself is tested over HTTP in test_llm.py
        calls.append((term, entity))
        return None

    mapper = LocationMapper(llm=fake_llm)
    categories, labels = mapper.map_terms(["right lower lobe", "axilla"], "opacity", "opacity")
    assert categories == ["lung", None] and labels == ["lung lower lobe right"]
    assert calls == [("axilla", "opacity")] and mapper.unknown == ["axilla"]
    assert set(labels) <= set(ANATOMY_LABELS)


def test_joined_terms_are_read_as_parts():
    parts = parse_location_terms("right lower lobe and lingula")
    assert [p.text for p in parts] == ["right lower lobe", "lingula"]
    assert labels_for_terms(parts, "opacity") == ["lung upper lobe left", "lung lower lobe right"]
    assert parse_location_terms("right lower lobe near the elbow") is None
    categories, labels = LocationMapper().map_terms(["left base, right apex"], "opacity", "opacity")
    assert categories == ["lung"] and labels == ["right apical zone lung", "left lung base"]
