"""The rosalia bundle runs through MONAI's bundle runner (what ``python -m monai.bundle run`` calls)."""

import json
import shutil
from pathlib import Path

from monai.bundle import ConfigParser

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "rosalia"


def test_bundle_files_are_complete():
    for name in ("configs/metadata.json", "configs/train.json", "configs/ds_zero2.json", "configs/logging.conf", "docs/README.md", "LICENSE"):
        assert (BUNDLE / name).is_file(), name
    metadata = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert {"version", "monai_version", "pytorch_version", "network_data_format"} <= set(metadata)
    parser = ConfigParser()
    parser.read_config(BUNDLE / "configs" / "train.json")
    assert parser["loss_weights"] == {"ce": 0.5, "bce": 5.0, "dice": 1.0}
    assert parser["lora"]["r"] == 128 and parser["lora"]["alpha"] == 256
    train = parser["train"]
    assert train["trainer"]["_target_"].endswith("workflow.DeepSpeedTrainer")
    assert train["trainer"]["network"] == "@network_def" and train["trainer"]["loss"] == "@loss"
    assert train["trainer"]["train_data_loader"] == "@train#dataloader" and train["dataloader"]["batch_sampler"] == "@train#sampler"
    assert train["sampler"]["_target_"].endswith("BalancedBatchSampler") and train["dataset"]["transform"] == "@train#preprocessing"
    # optimizer, scheduler, precision and ZeRO live only in the DeepSpeed file
    assert not {"lr", "warmup_steps", "optimizer", "scheduler"} & set(train["trainer"]) and "lr" not in parser.get()
    # the shared image path: the first transforms are inference.json's preprocessing, unchanged
    inference = ConfigParser()
    inference.read_config(BUNDLE / "configs" / "inference.json")
    shared = inference["preprocessing"]["transforms"]
    assert train["preprocessing"]["transforms"][: len(shared)] == shared
    assert [t["_target_"].rsplit(".", 1)[-1] for t in train["preprocessing"]["transforms"][len(shared):]] == [
        "EqualizeHistogramVariantd", "RosaliaImageInputsd"]
    handlers = [h["_target_"].rsplit(".", 1)[-1] for h in train["handlers"]]
    assert handlers == ["resume_handler", "StepLogger", "DeepSpeedCheckpointSaver", "ValidationLoss", "ModelExporter"]
    assert parser["network_def"]["_target_"].endswith("build_network") and parser["loss"]["ce"] == "@loss_weights#ce"
    parser.update({"loss_weights": {"ce": 1.0, "bce": 2.0, "dice": 3.0}})
    assert parser.get_parsed_content("loss").weights.to_dict() == {"ce": 1.0, "bce": 2.0, "dice": 3.0}
    ds = json.loads((BUNDLE / "configs" / "ds_zero2.json").read_text())
    assert ds["optimizer"]["params"]["lr"] == 3e-4 and ds["scheduler"]["params"]["warmup_num_steps"] == 100
    assert ds["zero_optimization"]["stage"] == 2


def test_bundle_trains_tiny_model_from_the_cache(tiny, tiny_data, tmp_path, monkeypatch):
    """The single-process CPU path of ``python -m monai.bundle run``. Also: an unreadable image is recorded in
    bad_samples.jsonl and training goes on; ``train#handlers#2#interval`` (the checkpoint saver's) reaches the
    handler although ``save_every`` is 0; validation runs every step when ``val_interval`` is 1 (loss = 0.5 ce + 5 bce + dice)."""
    from monai.bundle import run

    _, _, model_dir = tiny
    shutil.copytree(tiny_data.parent, tmp_path / "data")
    (tmp_path / "data" / "images" / "img1.png").write_bytes(b"broken")
    monkeypatch.chdir(BUNDLE.parents[1])  # the repository root, as in the docs
    ds = json.loads((BUNDLE / "configs" / "ds_zero2.json").read_text())
    ds["scheduler"]["params"]["warmup_num_steps"] = 1  # a run changes the DeepSpeed file, the one place it is set
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    run(
        config_file=str(BUNDLE / "configs" / "train.json"),
        logging_file=str(BUNDLE / "configs" / "logging.conf"),
        model_dir=str(model_dir),
        dataset_json=str(tmp_path / "data" / "dataset.json"),
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        ds_config=str(tmp_path / "ds.json"),
        lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None, "train_embeddings": True},
        num_workers=0,
        use_cache=True,
        save_every=0,
        val_interval=1,
        val_splits=["train"],
        export_merged_model=False,
        progress=False,
        **{"train#handlers#2#interval": 1},
    )
    out = tmp_path / "out"
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2]
    assert (out / "lora" / "lora_adapter" / "adapter_config.json").exists() and not (out / "merged").exists()
    assert any((out / "encoder_cache").rglob("*.pt"))
    assert sorted(p.name for p in (out / "checkpoints").glob("global_step*")) == ["global_step1", "global_step2"]
    assert (out / "checkpoints" / "latest").read_text().strip() == "global_step2"
    bad = [json.loads(line)["error"] for line in (out / "bad_samples.jsonl").read_text().splitlines()]
    assert bad and all("img1.png" in e for e in bad)
    validation = json.loads((out / "validation.json").read_text())
    assert [v["step"] for v in validation] == [1, 2]
    assert all(v["samples"] == 6 for v in validation)  # 8 samples, the two on img1.png unreadable
    assert all(v["loss"] > 0 and abs(v["loss"] - (0.5 * v["ce"] + 5.0 * v["bce"] + 1.0 * v["dice"])) < 1e-4 for v in validation)


def test_section_override_reaches_the_object(tiny, tiny_data, tmp_path):
    """``--train#sampler#batch_size`` and ``--train#dataset#equalize_prob`` reach the objects the trainer gets."""
    from monai_ils.train.trainer import bundle_train_parser

    _, _, model_dir = tiny
    parser = bundle_train_parser(model_dir=str(model_dir), dataset_json=str(tiny_data), output_dir=str(tmp_path / "out"),
                                 **{"train#sampler#batch_size": 4, "train#dataset#equalize_prob": 0.0, "train#handlers#1#interval": 7})
    loader = parser.get_parsed_content("train#dataloader")
    assert loader.batch_sampler.batch_size == 4 and len(loader.batch_sampler) == 2  # 4 positives + 4 negatives
    assert loader.dataset.variants() == (0,)
    batch = next(iter(loader))
    assert batch["positive"].tolist() == [True, False, True, False]
    assert parser.get_parsed_content("train#handlers")[1].interval == 7
    assert parser.get_parsed_content("train#handlers")[0] is not None  # resume: true by default
