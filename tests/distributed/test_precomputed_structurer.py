"""Structure first, ground later: findings JSONL from the report CLI as the generation structurer."""

import json
import pickle

import pytest

from monai_ils.data.mimic_cxr import CSVStudyIndex
from monai_ils.data.sample_studies import sample_study_csv
from monai_ils.generation.pairs import PairGenerator
from monai_ils.generation.pipeline import GroundingPipeline, default_study_transforms
from monai_ils.generation.processor import PairsProcessor
from monai_ils.generation.qc import StudyQC
from monai_ils.generation.runner import GenerationRunner
from monai_ils.report import build_structurer, structure_report
from monai_ils.report.cli import main as report_cli
from monai_ils.report.precomputed import MissingFindingsError, PrecomputedStructurer


def tree_bytes(folder, skip=("manifest.json",)):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def _reports_jsonl(csv_path, out):
    import csv

    with open(csv_path, newline="") as stream, open(out, "w") as sink:
        for row in csv.DictReader(stream):
            sink.write(json.dumps({"id": row["study_id"], "report": row["report"]}) + "\n")
    return out


def test_precomputed_findings_give_the_dataset_of_inline_structuring(tmp_path):
    csv_path = sample_study_csv(tmp_path / "in", 9)  # the sample report and the eight varied ones
    findings = tmp_path / "findings.jsonl"
    assert report_cli(["structure", str(_reports_jsonl(csv_path, tmp_path / "reports.jsonl")), str(findings), "--quiet"]) == 0

    def run(out, structurer):
        pipeline = GroundingPipeline(structurer=structurer, study_transforms=default_study_transforms(max_size=256))
        processor = PairsProcessor(pipeline, PairGenerator(seed=3), StudyQC(require_view=False))
        return GenerationRunner(out, processor, shard_size=4, settings={"seed": 3}, progress=False).run(CSVStudyIndex(csv_path))

    inline = run(tmp_path / "inline", None)
    precomputed = run(tmp_path / "precomputed", build_structurer("precomputed", path=str(findings)))
    assert inline.pairs > 0 and inline.errors == 0 and precomputed.errors == 0
    assert tree_bytes(tmp_path / "precomputed") == tree_bytes(tmp_path / "inline")  # pairs, masks, overlays, statistics


def test_lookup_is_by_section_content_and_checks_the_text(tmp_path):
    first = "FINDINGS: Right lower lobe consolidation. No effusion.\n\nIMPRESSION: Pneumonia."
    findings = tmp_path / "f.jsonl"
    findings.write_text(
        json.dumps({"id": "a", **structure_report(first).to_dict()}) + "\n"
        + json.dumps({"id": "b", "error": "timeout", "error_type": "TimeoutError"}) + "\n"
        + json.dumps({"id": "c", **structure_report("FINDINGS: Heart is enlarged.").to_dict()})[:30]  # torn last line
    )
    structurer = PrecomputedStructurer(findings)
    assert structure_report(first, structurer) == structure_report(first)
    assert len(structurer) == 1
    respaced = "FINDINGS:\n Right lower lobe  consolidation.\n   No effusion."  # other whitespace, same content
    assert structure_report(respaced, structurer) == structure_report(first)
    # another text is not found, and the message points at the fix without quoting the report
    with pytest.raises(MissingFindingsError, match=r"no precomputed findings .* in f\.jsonl \(1 structured sections; 1 report\(s\) failed"):
        structurer.structure("Left lower lobe consolidation.", "findings")
    try:
        structurer.structure("Left lower lobe consolidation.", "findings")
    except MissingFindingsError as err:
        assert "consolidation" not in str(err)
    fallback = PrecomputedStructurer(findings, fallback=build_structurer("rules"))
    assert fallback.structure("Left lower lobe consolidation.", "findings").findings[0].lesion_type == "consolidation"


def test_pickles_without_its_index_and_a_missing_file_is_named(tmp_path):
    findings = tmp_path / "f.jsonl"
    findings.write_text(json.dumps({"id": "a", **structure_report("FINDINGS: Small left effusion.").to_dict()}) + "\n")
    structurer = PrecomputedStructurer(findings)
    assert len(structurer) == 1
    copy = pickle.loads(pickle.dumps(structurer))
    assert copy._keys is None and len(copy) == 1
    with pytest.raises(FileNotFoundError, match="findings file not found: .*nope.jsonl"):
        PrecomputedStructurer(tmp_path / "nope.jsonl")


def test_a_study_without_findings_is_an_error_record_in_the_structure_stage(tmp_path):
    csv_path = sample_study_csv(tmp_path / "in", 3)
    findings = tmp_path / "f.jsonl"
    findings.write_text("")  # nothing structured
    pipeline = GroundingPipeline(structurer=PrecomputedStructurer(findings), study_transforms=default_study_transforms(max_size=128))
    runner = GenerationRunner(tmp_path / "out", PairsProcessor(pipeline, PairGenerator(seed=3), StudyQC(require_view=False)),
                              progress=False)
    summary = runner.run(CSVStudyIndex(csv_path))
    assert summary.errors == 3
    error = json.loads((tmp_path / "out" / "errors.jsonl").read_text().splitlines()[0])["error"]
    assert error["stage"] == "structure" and error["type"] == "StageError" and "no precomputed findings" in error["message"]
