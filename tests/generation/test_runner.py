"""The streaming runner: outputs, error records, limit, and kill-and-resume equal to an uninterrupted run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.generation.gen_fixtures import REPORTS, toy_grounder, write_study_csv

from monai_ils.data.ils_format import iter_ils_jsonl, load_mask_png, read_ils_json
from monai_ils.data.mimic_cxr import CSVStudyIndex
from monai_ils.generation.pairs import PairGenerator
from monai_ils.generation.processor import PairsProcessor
from monai_ils.generation.results import StageError
from monai_ils.generation.runner import GenerationRunner

WORKER = Path(__file__).with_name("resume_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def make_runner(out, **kw):
    kw.setdefault("shard_size", 4)
    kw.setdefault("settings", {"seed": 5})
    return GenerationRunner(out, PairsProcessor(toy_grounder, PairGenerator(seed=5)), progress=False, **kw)


def tree_bytes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_writes_dataset_masks_overlays_errors_and_statistics(tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 11)
    out = tmp_path / "out"
    summary = make_runner(out).run(CSVStudyIndex(csv_path))
    assert summary.studies == 11 and summary.processed_now == 11
    # study 4 "FAIL" is an error, 6 "QCFAIL" and 10 (LATERAL) are skipped by quality control
    assert (summary.errors, summary.skipped, summary.ok) == (1, 2, 8)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["key"], e["status"]) for e in errors] == [("st0004", "error"), ("st0006", "skipped"), ("st0010", "skipped")]
    failed = errors[0]["error"]
    assert failed["stage"] == "grounding" and "cannot ground study st0004" in failed["message"]
    assert any("gen_fixtures.py" in where for where in failed["where"]) and failed["image_path"].endswith("img0004.png")
    assert "LATERAL" in errors[2]["reason"] and "anatomy models disagree" in errors[1]["reason"]

    samples = read_ils_json(out / "dataset.json")
    stream = list(iter_ils_jsonl(out / "pairs.jsonl"))
    assert len(samples) == len(stream) == summary.pairs > 0
    assert {s.split for s in samples} == {"train", "val", "test"}
    positives = [s for s in samples if s.positive]
    for sample in positives:
        mask = load_mask_png(sample.seg_mask_path)
        assert mask.shape == (32, 32) and mask.any()
        assert set(np.unique(np.asarray(Image.open(sample.seg_mask_path)))) <= {0, 255}
    # study 0: pneumonia at the right lung base (fully grounded) -> one mask shared by basic, global and inference
    st0 = [s for s in positives if s.study_key == "st0000"]
    assert {s.instruction for s in st0} == {
        "Segment the pneumonia in the right lung base.",
        "Segment the pneumonia.",
        "Segment the opacity in the right lung base and predict its type.",
    }
    assert len({s.seg_mask_path for s in st0}) == 1
    expected = np.zeros((32, 32), bool)
    expected[22:30, 2:14] = True
    assert np.array_equal(load_mask_png(st0[0].seg_mask_path), expected)
    assert sorted(p.name for p in (out / "overlays" / "st0000").iterdir()) == ["pneumonia_0.jpg"]
    # paths inside the dataset folder are written relative to it
    raw = json.loads((out / "dataset.json").read_text())
    entry = raw["train"]["st0000"]
    assert not Path(entry["instruction_answer_pairs"]["positive_pairs"][0]["seg_mask_path"]).is_absolute()
    csv_text = (out / "statistics.csv").read_text()
    assert csv_text.splitlines()[0].startswith("split,lesion,n_pairs,basic_pos")
    assert (out / "statistics.png").stat().st_size > 1000 and "### train" in (out / "statistics.md").read_text()


def test_limit_and_rerun_does_nothing_new(tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 11)
    out = tmp_path / "out"
    summary = make_runner(out, limit=6).run(CSVStudyIndex(csv_path))
    assert summary.studies == 6
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["studies"] for s in manifest["shards"]] == [4, 2] and manifest["complete"]
    again = make_runner(out, limit=6).run(CSVStudyIndex(csv_path))
    assert again.processed_now == 0 and again.studies == 6
    more = make_runner(out).run(CSVStudyIndex(csv_path))
    assert more.processed_now == 5 and more.studies == 11
    keys = [json.loads(line)["key"] for shard in sorted((out / "shards").glob("*.jsonl")) for line in shard.read_text().splitlines()]
    assert keys == [f"st{i:04d}" for i in range(11)]  # no duplicates, nothing lost


def test_other_settings_are_refused_unless_overwrite(tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 3)
    out = tmp_path / "out"
    make_runner(out).run(CSVStudyIndex(csv_path))
    with pytest.raises(RuntimeError, match="other settings"):
        make_runner(out, settings={"seed": 6}).run(CSVStudyIndex(csv_path))
    summary = make_runner(out, settings={"seed": 6}, overwrite=True).run(CSVStudyIndex(csv_path))
    assert summary.processed_now == 3


@pytest.mark.parametrize("num_workers", [0, 2])
def test_changed_input_is_detected(tmp_path, num_workers):
    out = tmp_path / "out"
    make_runner(out, limit=4).run(CSVStudyIndex(write_study_csv(tmp_path / "a", 8)))
    other = write_study_csv(tmp_path / "b", 8, reports=REPORTS[::-1])
    rows = (tmp_path / "b" / "studies.csv").read_text().replace("st0000", "xx0000")
    (tmp_path / "b" / "studies.csv").write_text(rows)
    with pytest.raises(RuntimeError, match="input changed"):
        make_runner(out, num_workers=num_workers).run(CSVStudyIndex(other))


def _drop_row(csv_path, key):
    lines = csv_path.read_text().splitlines(keepends=True)
    csv_path.write_text("".join(line for line in lines if f",{key}," not in line))


def test_resume_checks_every_key_of_the_finished_shards(tmp_path):
    """A study withdrawn from the middle of a finished shard (not its first key) is caught on resume, so it
    never stays in the merged dataset."""
    csv_path = write_study_csv(tmp_path / "in", 10)
    out = tmp_path / "out"
    make_runner(out, limit=8).run(CSVStudyIndex(csv_path))  # two finished shards: st0000-3, st0004-7
    _drop_row(csv_path, "st0005")
    with pytest.raises(RuntimeError, match=r"input changed.*study 5 is 'st0006'.*'st0005'"):
        make_runner(out).run(CSVStudyIndex(csv_path))
    assert "st0005" in (out / "dataset.json").read_text()  # the refused resume rewrote nothing


def test_resume_refuses_an_input_shorter_than_the_finished_shards(tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 8)
    out = tmp_path / "out"
    make_runner(out).run(CSVStudyIndex(csv_path))
    _drop_row(csv_path, "st0007")
    with pytest.raises(RuntimeError, match=r"it has 7 studies, the finished shards hold 8 \(first missing: 'st0007'\)"):
        make_runner(out).run(CSVStudyIndex(csv_path))


def test_processor_errors_are_records_with_stage(tmp_path):
    def processor(record):
        raise StageError("cues", f"anatomy backend failed on {record.key}")

    out = tmp_path / "out"
    summary = GenerationRunner(out, processor, shard_size=2, progress=False).run(CSVStudyIndex(write_study_csv(tmp_path / "in", 3)))
    assert summary.errors == 3 and summary.pairs == 0
    first = json.loads((out / "errors.jsonl").read_text().splitlines()[0])
    assert first["error"]["stage"] == "cues" and first["error"]["type"] == "StageError"
    assert json.loads((out / "dataset.json").read_text()) == {}


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 6)
    reference = tmp_path / "ref"
    make_runner(reference).run(CSVStudyIndex(csv_path))
    out = tmp_path / "out"
    make_runner(out, limit=5).run(CSVStudyIndex(csv_path), merge=False)
    # pretend the run died in shard 1 while writing its second line: keep line 1 and half of line 2
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"] = manifest["shards"][:1]
    (out / "manifest.json").write_text(json.dumps(manifest))
    final = out / "shards" / "shard-00001.jsonl"
    text = final.read_text()
    final.unlink()
    second = (text + json.dumps({"key": "st0005"})).encode()  # 1 complete line + a torn one
    (out / "shards" / "shard-00001.jsonl.part").write_bytes(second[: len(text) + 10])
    summary = make_runner(out).run(CSVStudyIndex(csv_path))
    assert summary.processed_now == 1 and summary.studies == 6
    assert tree_bytes(out) == tree_bytes(reference)


def _worker(csv_path, out, shard_size, kill_after, num_workers=0):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(WORKER), str(csv_path), str(out), str(shard_size), str(kill_after), str(num_workers)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    csv_path = write_study_csv(folder / "in", 13)
    done = _worker(csv_path, folder / "ref", 4, -1)
    assert done.returncode == 0, done.stderr
    return csv_path, folder / "ref"


@pytest.mark.parametrize("kill_after", [0, 5, 8])
def test_killed_run_resumes_identical_to_uninterrupted(tmp_path, uninterrupted, kill_after):
    """SIGKILL before any study, mid-shard and right at a shard boundary; the resumed output equals a clean run."""
    csv_path, reference = uninterrupted
    out = reference.with_name(f"out-kill{kill_after}")  # beside the reference: same relative path to the input images
    killed = _worker(csv_path, out, 4, kill_after)
    assert killed.returncode == -9, killed.stderr  # SIGKILL
    assert not (out / "dataset.json").exists()
    resumed = _worker(csv_path, out, 4, -1)
    assert resumed.returncode == 0, resumed.stderr
    assert f"processed_now {13 - kill_after}" in resumed.stdout
    assert tree_bytes(out) == tree_bytes(reference)


def test_killed_run_resumed_with_workers_is_identical(tmp_path, uninterrupted):
    """Killed mid-shard by a one-process run, finished by two worker processes: still the clean run's bytes."""
    csv_path, reference = uninterrupted
    out = reference.with_name("out-workers")  # beside the reference: same relative path to the input images
    assert _worker(csv_path, out, 4, 5).returncode == -9
    resumed = _worker(csv_path, out, 4, -1, num_workers=2)
    assert resumed.returncode == 0, resumed.stderr
    assert "processed_now 8" in resumed.stdout
    assert tree_bytes(out) == tree_bytes(reference)


def test_workers_write_what_one_process_writes(tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 11)  # with a failing study and two skipped ones
    make_runner(tmp_path / "one").run(CSVStudyIndex(csv_path))
    summary = make_runner(tmp_path / "two", num_workers=2).run(CSVStudyIndex(csv_path))
    assert (summary.studies, summary.processed_now, summary.errors, summary.skipped) == (11, 11, 1, 2)
    assert tree_bytes(tmp_path / "two") == tree_bytes(tmp_path / "one")


class _DiesOnStudy:
    """A processor whose process exits abruptly on one study, as a worker killed for memory would."""

    def __init__(self, key):
        self.key, self.processor = key, PairsProcessor(toy_grounder, PairGenerator(seed=5))

    def __call__(self, record):
        if record.key == self.key:
            os._exit(3)
        return self.processor(record)


def test_dead_worker_stops_the_run_and_a_rerun_completes_it(tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 11)
    make_runner(tmp_path / "ref").run(CSVStudyIndex(csv_path))
    out = tmp_path / "out"
    dying = GenerationRunner(out, _DiesOnStudy("st0005"), shard_size=4, settings={"seed": 5}, progress=False, num_workers=2)
    with pytest.raises(RuntimeError, match="worker process died .* study 'st000[45]' in flight.*run the same command again"):
        dying.run(CSVStudyIndex(csv_path))
    assert not (out / "dataset.json").exists()
    summary = make_runner(out).run(CSVStudyIndex(csv_path))
    assert summary.studies == 11 and 6 <= summary.processed_now <= 7  # st0004 may be written, or lost with the broken pool
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


def test_resume_removes_what_a_killed_writer_left_half_written(tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 6)
    out = tmp_path / "out"
    make_runner(out, limit=3).run(CSVStudyIndex(csv_path), merge=False)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))  # as if killed
    leftovers = [out / "masks" / "st0004" / ".mask_0.png.4242.tmp", out / ".pairs.jsonl.tmp"]
    foreign = out / "notes" / ".draft.tmp"
    for path in (*leftovers, foreign):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    make_runner(out).run(CSVStudyIndex(csv_path))
    assert not any(path.exists() for path in leftovers)
    assert foreign.read_bytes() == b"half"  # not ours: left alone


def test_processor_that_cannot_be_pickled_is_refused_with_workers(tmp_path):
    lock = __import__("threading").Lock()

    def processor(record):  # a closure over a lock: cannot go to a worker process
        with lock:
            return PairsProcessor(toy_grounder)(record)

    runner = GenerationRunner(tmp_path / "out", processor, num_workers=2, progress=False)
    with pytest.raises(TypeError, match="num_workers=2 .* cannot be pickled"):
        runner.run(CSVStudyIndex(write_study_csv(tmp_path / "in", 2)))


def test_negative_num_workers_is_refused(tmp_path):
    with pytest.raises(ValueError, match="num_workers"):
        make_runner(tmp_path, num_workers=-1)


def test_exported_images_replace_the_image_path(tmp_path):
    out = tmp_path / "out"
    runner = GenerationRunner(out, PairsProcessor(toy_grounder, PairGenerator(seed=5), export_images=True), shard_size=4, progress=False)
    runner.run(CSVStudyIndex(write_study_csv(tmp_path / "in", 2)))
    raw = json.loads((out / "dataset.json").read_text())
    assert raw["train"]["st0000"]["image_path"] == "images/st0000.png"
    with Image.open(out / "images" / "st0000.png") as image:
        assert image.mode == "L" and image.size == (32, 32)
    assert all(s.image_path == str(out / "images" / f"{s.study_key}.png") for s in read_ils_json(out / "dataset.json"))
