"""Every pair rule of Sec. 3.2 / Appendix C on hand-built findings and masks."""

import numpy as np
import pytest
from tests.generation.gen_fixtures import box

from monai_ils.data.templates import parse_answer, parse_instruction
from monai_ils.generation import GroundedFinding, PairGenerator, StudyGrounding, generate_pairs, instruction_locations

RLB, LLB = "right lung base", "left lung base"
ALL_TABLE8 = None  # StudyGrounding.empty_locations=None with no findings means every region is free


def study(findings=(), empty=(), ctr=None, key="s1", **kw):
    return StudyGrounding(key, "/data/img.png", "train", list(findings), empty, ctr, **kw)


def by_text(pairs):
    return {(s.instruction, s.answer): s for s in pairs.samples}


def texts(pairs, positive=None, question_type=None):
    return sorted(
        (s.instruction, s.answer)
        for s in pairs.samples
        if (positive is None or s.positive == positive) and (question_type is None or s.question_type == question_type)
    )


# ----------------------------------------------------------------------------------------------
# positives
# ----------------------------------------------------------------------------------------------
def test_definitive_basic_positive_inference_and_no_global_when_partly_grounded():
    mask = box(22, 30, 2, 14)
    finding = GroundedFinding("pneumonia", "positive", "definitive", [RLB, LLB], [RLB], mask)
    pairs = generate_pairs(study([finding]))
    assert texts(pairs, positive=True) == [
        ("Segment the opacity in the right lung base and predict its type.", "[SEG] It is highly suggestive of pneumonia."),
        ("Segment the pneumonia in the right lung base.", "[SEG]"),
    ]
    basic = by_text(pairs)[("Segment the pneumonia in the right lung base.", "[SEG]")]
    assert basic.target == "pneumonia" and basic.location == [RLB] and basic.certainty == "definitive"
    assert np.array_equal(pairs.masks[basic.seg_mask_path], mask)
    inference = [s for s in pairs.positives if s.question_type == "lesion_inference"][0]
    assert inference.seg_mask_path == basic.seg_mask_path and inference.lesion == "pneumonia"
    assert len(pairs.masks) == 1  # one mask shared by both pairs


def test_tentative_finding_says_opacity_and_possibly_reflects():
    finding = GroundedFinding("atelectasis", "positive", "tentative", [RLB, LLB], [RLB, LLB], box(22, 30, 2, 30))
    pairs = generate_pairs(study([finding]))
    assert texts(pairs, positive=True) == [
        ("Segment the opacity in the right lung base and left lung base and predict its type.", "[SEG] It possibly reflects atelectasis."),
        ("Segment the opacity in the right lung base and left lung base.", "[SEG]"),
    ]
    # the pair is about atelectasis (Tables 9-11 count it there); no global for a tentative finding
    assert {s.target for s in pairs.positives} == {"atelectasis"}
    assert not [s for s in pairs.positives if s.question_type == "global"]


def test_global_positive_only_when_grounded_equals_reported():
    mask = box(22, 30, 18, 30)
    full = GroundedFinding("effusion", "positive", "definitive", [LLB], [LLB], mask)
    pairs = generate_pairs(study([full]))
    assert texts(pairs, positive=True) == [
        ("Segment the effusion in the left lung base.", "[SEG]"),
        ("Segment the effusion.", "[SEG] It is located in the left lung base."),
    ]
    glob = by_text(pairs)[("Segment the effusion.", "[SEG] It is located in the left lung base.")]
    assert glob.question_type == "global" and glob.location == [LLB]
    # effusion is not an inferable lesion: no lesion-inference pair
    assert not [s for s in pairs.positives if s.question_type == "lesion_inference"]

    partial = GroundedFinding("effusion", "positive", "definitive", [LLB, RLB], [LLB], mask)
    assert not [s for s in generate_pairs(study([partial])).positives if s.question_type == "global"]


def test_global_positive_needs_every_finding_of_the_lesion_fully_grounded():
    a = GroundedFinding("effusion", "positive", "definitive", [LLB], [LLB], box(22, 30, 18, 30))
    b = GroundedFinding("effusion", "positive", "definitive", [RLB], [], None)  # reported, not grounded
    pairs = generate_pairs(study([a, b]))
    assert not [s for s in pairs.positives if s.question_type == "global"]
    c = GroundedFinding("effusion", "positive", "definitive", [RLB], [RLB], box(22, 30, 2, 14))
    pairs = generate_pairs(study([a, c]))
    glob = [s for s in pairs.positives if s.question_type == "global"]
    assert [g.answer for g in glob] == ["[SEG] It is located in the right lung base and left lung base."]
    assert pairs.masks[glob[0].seg_mask_path].sum() == a.mask.sum() + c.mask.sum()


def test_global_opacity_positive_is_blocked_by_other_lung_findings():
    opacity = GroundedFinding("opacity", "positive", "definitive", [RLB], [RLB], box(22, 30, 2, 14))
    alone = generate_pairs(study([opacity]))
    assert [s.instruction for s in alone.positives if s.question_type == "global"] == ["Segment the opacity."]
    atelectasis = GroundedFinding("atelectasis", "positive", "definitive", [LLB], [], None)
    both = generate_pairs(study([opacity, atelectasis]))
    assert not [s for s in both.positives if s.question_type == "global" and s.target == "opacity"]


def test_cardiomegaly_is_always_global_with_the_heart_mask():
    heart = box(16, 26, 10, 22)
    pairs = generate_pairs(study([GroundedFinding("cardiomegaly", "positive", "definitive", [], [], heart)]))
    assert texts(pairs, positive=True) == [("Segment the cardiomegaly.", "[SEG] It is located in the heart.")]
    sample = pairs.positives[0]
    assert np.array_equal(pairs.masks[sample.seg_mask_path], heart)
    assert not [s for s in pairs.negatives if s.target == "cardiomegaly"]  # present: never a negative


def test_lobes_map_to_their_lung_and_broad_regions_absorb_zones():
    assert instruction_locations(["lung lower lobe right"]) == ("right lung",)
    assert instruction_locations(["lung upper lobe left", "left apical zone lung", RLB]) == ("left lung", RLB)
    assert instruction_locations([LLB, RLB, "right apical zone lung"]) == ("right apical zone lung", RLB, LLB)
    assert instruction_locations(["lung"]) == ("right lung", "left lung")
    assert instruction_locations(["heart"]) == ()
    finding = GroundedFinding("edema", "positive", "definitive", ["lung lower lobe right"], ["lung lower lobe right"], box(20, 30, 2, 14))
    pairs = generate_pairs(study([finding]))
    assert ("Segment the edema in the right lung.", "[SEG]") in texts(pairs, positive=True)
    assert ("Segment the edema.", "[SEG] It is located in the right lung.") in texts(pairs, positive=True)


def test_predicted_lesion_type_is_the_target():
    finding = GroundedFinding("opacity", "positive", "tentative", [RLB], [RLB], box(22, 30, 2, 14), predicted_lesion_type="atelectasis")
    pairs = generate_pairs(study([finding]))
    assert {s.target for s in pairs.positives} == {"atelectasis"}
    assert ("Segment the opacity in the right lung base and predict its type.", "[SEG] It possibly reflects atelectasis.") in texts(pairs)


def test_same_instruction_twice_merges_masks_and_conflicting_inference_is_dropped():
    a = GroundedFinding("pneumonia", "positive", "tentative", [RLB], [RLB], box(22, 26, 2, 14))
    b = GroundedFinding("atelectasis", "positive", "tentative", [RLB], [RLB], box(26, 30, 2, 14))
    pairs = generate_pairs(study([a, b]))
    basics = [s for s in pairs.positives if s.question_type == "basic"]
    assert len(basics) == 1 and basics[0].instruction == "Segment the opacity in the right lung base."
    assert pairs.masks[basics[0].seg_mask_path].sum() == a.mask.sum() + b.mask.sum()
    # "predict its type" would have two answers: no lesion-inference pair
    assert not [s for s in pairs.positives if s.question_type == "lesion_inference"]


def test_ungrounded_or_empty_mask_gives_no_positive():
    no_mask = GroundedFinding("pneumonia", "positive", "definitive", [RLB], [], None)
    empty_mask = GroundedFinding("edema", "positive", "definitive", [RLB], [RLB], np.zeros((8, 8), bool))
    pairs = generate_pairs(study([no_mask, empty_mask], empty=[LLB]))
    assert pairs.positives == []


# ----------------------------------------------------------------------------------------------
# negatives
# ----------------------------------------------------------------------------------------------
def test_cardiomegaly_negatives_follow_the_one_rule_with_the_generators_threshold():
    from monai_ils.generation.qc import cardiomegaly_negative_allowed

    strict = PairGenerator(seed=3, max_ctr=0.40)
    for ctr in (0.39, 0.40, 0.41, None, float("inf")):
        has = any(s.target == "cardiomegaly" for s in strict(study([], empty=None, ctr=ctr)).negatives)
        assert has == cardiomegaly_negative_allowed(ctr, 0.40) == (ctr is not None and ctr <= 0.40)


def test_normal_study_one_negative_per_lesion_and_cardiomegaly_needs_ctr():
    generator = PairGenerator(seed=3)
    for ctr, expect_cardio in ((0.40, True), (0.45, True), (0.46, False), (None, False), (float("nan"), False)):
        pairs = generator(study([], empty=None, ctr=ctr))
        targets = [s.target for s in pairs.negatives if s.question_type != "lesion_inference"]
        assert sorted(targets) == sorted(t for t in
                                         ["cardiomegaly", "pneumonia", "atelectasis", "opacity", "consolidation", "edema", "effusion"]
                                         if t != "cardiomegaly" or expect_cardio)
        cardio = [s for s in pairs.negatives if s.target == "cardiomegaly"]
        if expect_cardio:
            assert [(s.instruction, s.answer, s.question_type) for s in cardio] == [("Segment the cardiomegaly.", "[SEG] There is no cardiomegaly.", "global")]
        assert all(s.seg_mask_path is None for s in pairs.negatives)


def test_negative_texts_basic_global_and_inference():
    pairs = PairGenerator(seed=0, global_negative_probability=0.0)(study([], empty=["left apical zone lung"]))
    got = texts(pairs, positive=False)
    assert ("Segment the effusion in the left apical zone.", "[SEG] There is no effusion in the left apical zone.") in got
    # an opacity basic negative comes with its lesion-inference negative at the same location
    assert ("Segment the opacity in the left apical zone.", "[SEG] There is no opacity in the left apical zone.") in got
    assert ("Segment the opacity in the left apical zone and predict its type.", "[SEG] There is no opacity in the left apical zone.") in got
    pairs = PairGenerator(seed=0, global_negative_probability=1.0)(study([], empty=["left apical zone lung"]))
    assert ("Segment the edema.", "[SEG] There is no edema.") in texts(pairs, positive=False)
    assert not [s for s in pairs.negatives if s.question_type == "lesion_inference"]
    off = PairGenerator(seed=0, global_negative_probability=0.0, lesion_inference_negatives=False)(study([], empty=[LLB]))
    assert not [s for s in off.negatives if s.question_type == "lesion_inference"]


def test_at_most_one_negative_per_lesion_type():
    for seed in range(20):
        pairs = PairGenerator(seed=seed)(study([], empty=None, ctr=0.3, key=f"k{seed}"))
        targets = [s.target for s in pairs.negatives if s.question_type != "lesion_inference"]
        assert len(targets) == len(set(targets)) == 7


def test_negated_definitive_gives_a_negative_tentative_does_not():
    negated = GroundedFinding("effusion", "negative", "definitive")
    pairs = PairGenerator(global_negative_probability=1.0)(study([negated], empty=[]))
    assert ("Segment the effusion.", "[SEG] There is no effusion.") in texts(pairs, positive=False)
    unlikely = GroundedFinding("effusion", "negative", "tentative")
    pairs = PairGenerator(global_negative_probability=1.0)(study([unlikely], empty=[LLB]))
    assert not [s for s in pairs.negatives if s.target == "effusion"]
    possible = GroundedFinding("effusion", "positive", "tentative", [LLB], [], None)
    pairs = PairGenerator(global_negative_probability=1.0)(study([possible], empty=[RLB]))
    assert not [s for s in pairs.negatives if s.target == "effusion"]


def test_empty_location_replaces_the_location_of_a_positive():
    finding = GroundedFinding("atelectasis", "positive", "definitive", [RLB], [RLB], box(22, 30, 2, 14))
    pairs = generate_pairs(study([finding], empty=["left apical zone lung"]))
    assert ("Segment the atelectasis in the left apical zone.", "[SEG] There is no atelectasis in the left apical zone.") in texts(pairs, positive=False)
    # tentative: the negative keeps the basic instruction's word "opacity"
    tentative = GroundedFinding("atelectasis", "positive", "tentative", [RLB], [RLB], box(22, 30, 2, 14))
    pairs = generate_pairs(study([tentative], empty=["left apical zone lung"]))
    negatives = texts(pairs, positive=False)
    assert ("Segment the opacity in the left apical zone.", "[SEG] There is no opacity in the left apical zone.") in negatives
    assert not [s for s in pairs.negatives if s.target == "atelectasis"]
    # no empty location: a present lesion gets no negative at all
    pairs = generate_pairs(study([finding], empty=[]))
    assert not [s for s in pairs.negatives if s.target == "atelectasis"]


def test_negatives_never_use_a_non_empty_location():
    finding = GroundedFinding("pneumonia", "positive", "definitive", [RLB], [RLB], box(22, 30, 2, 14))
    for seed in range(15):
        pairs = PairGenerator(seed=seed, global_negative_probability=0.0)(study([finding], empty=[LLB, "left upper zone lung"], key=f"s{seed}"))
        for sample in pairs.negatives:
            assert set(sample.location) <= {LLB, "left upper zone lung"}


def test_global_negative_conflicts():
    pneumonia = GroundedFinding("pneumonia", "positive", "definitive", [RLB], [RLB], box(22, 30, 2, 14))
    pairs = PairGenerator(global_negative_probability=1.0)(study([pneumonia], empty=[]))
    negatives = {s.target: s for s in pairs.negatives}
    # "There is no opacity." / "There is no consolidation." would contradict the pneumonia
    assert "opacity" not in negatives and "consolidation" not in negatives
    assert negatives["effusion"].instruction == "Segment the effusion."
    assert negatives["edema"].instruction == "Segment the edema."
    nodule = GroundedFinding(None, "positive", "definitive", ["left upper zone lung"], [], None, entity="nodule")
    pairs = PairGenerator(global_negative_probability=1.0)(study([nodule], empty=[]))
    assert "opacity" not in {s.target for s in pairs.negatives}


def test_failed_quality_control_gives_nothing():
    finding = GroundedFinding("pneumonia", "positive", "definitive", [RLB], [RLB], box(22, 30, 2, 14))
    assert generate_pairs(study([finding], empty=[LLB], qc_passed=False)).samples == []


# ----------------------------------------------------------------------------------------------
# reproducibility and template conformity
# ----------------------------------------------------------------------------------------------
def _signature(pairs):
    return [(s.instruction, s.answer, s.positive) for s in pairs.samples]


def test_seeded_per_study_and_order_independent():
    a = study([], empty=None, ctr=0.3, key="study-a")
    b = study([], empty=None, ctr=0.3, key="study-b")
    generator = PairGenerator(seed=7)
    first = [_signature(generator(x)) for x in (a, b)]
    second = [_signature(PairGenerator(seed=7)(x)) for x in (b, a)][::-1]
    assert first == second
    keys = [study([], empty=None, ctr=0.3, key=f"k{i}") for i in range(12)]
    assert len({tuple(_signature(generator(k))) for k in keys}) > 1  # keys draw different negatives
    assert any(_signature(PairGenerator(seed=8)(k)) != _signature(generator(k)) for k in keys)


def test_every_text_matches_table2_and_the_sample_fields():
    findings = [
        GroundedFinding("pneumonia", "positive", "definitive", [RLB], [RLB], box(22, 30, 2, 14)),
        GroundedFinding("edema", "positive", "tentative", ["right lung", "left lung"], ["left lung"], box(4, 30, 18, 30)),
        GroundedFinding("cardiomegaly", "positive", "definitive", [], [], box(16, 26, 10, 22)),
    ]
    for seed in range(5):
        pairs = PairGenerator(seed=seed)(study(findings, empty=["right apical zone lung", "right upper zone lung"], key=f"s{seed}"))
        for s in pairs.samples:
            instruction, answer = parse_instruction(s.instruction), parse_answer(s.answer)
            assert instruction is not None and answer is not None, s
            assert instruction.question_type == s.question_type
            # Table 2: "There is no opacity in L." answers both a basic and a lesion-inference negative
            same_text = s.question_type == "lesion_inference" and not s.positive and answer.question_type == "basic"
            assert answer.question_type == s.question_type or same_text
            assert answer.outcome == ("negative" if not s.positive else (s.certainty if s.question_type == "lesion_inference" else "positive"))
            loc = instruction.variables.get("location") or answer.variables.get("location") or []
            if s.target != "cardiomegaly":
                assert loc == s.location


def test_finding_validation_names_the_problem():
    with pytest.raises(ValueError, match="Unknown lesion type 'tumour'"):
        GroundedFinding("tumour")
    with pytest.raises(ValueError, match="not part of the reported location"):
        GroundedFinding("pneumonia", "positive", "definitive", [RLB], [LLB], box(0, 2, 0, 2))
    with pytest.raises(ValueError, match="presence"):
        GroundedFinding("pneumonia", "maybe")
    with pytest.raises(ValueError, match="Unknown anatomical label"):
        GroundedFinding("pneumonia", reported_location=["left elbow"])
    with pytest.raises(ValueError, match="global_negative_probability"):
        PairGenerator(global_negative_probability=2)
