"""The rosalia bundle runs through MONAI's bundle runner (what ``python -m monai.bundle run`` calls)."""

import json
from pathlib import Path

import pytest
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
    # optimizer, scheduler, precision and ZeRO live only in the DeepSpeed file
    assert not {"lr", "warmup_steps"} & set(parser.get("trainer"))
    assert parser["trainer"]["network"] == "@network_def" and parser["trainer"]["loss"] == "@loss"
    assert parser["network_def"]["_target_"].endswith("build_network") and parser["loss"]["ce"] == "@loss_weights#ce"
    parser.update({"loss_weights": {"ce": 1.0, "bce": 2.0, "dice": 3.0}})
    assert parser.get_parsed_content("loss").weights.to_dict() == {"ce": 1.0, "bce": 2.0, "dice": 3.0}
    ds = json.loads((BUNDLE / "configs" / "ds_zero2.json").read_text())
    assert ds["optimizer"]["params"]["lr"] == 3e-4 and ds["scheduler"]["params"]["warmup_num_steps"] == 100
    assert ds["zero_optimization"]["stage"] == 2


def test_bundle_trains_tiny_model_from_the_cache(tiny, tiny_data, tmp_path, monkeypatch):
    """Also: an unreadable image is recorded in bad_samples.jsonl and training goes on."""
    import shutil

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
        export_merged_model=False,
    )
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2]
    assert (tmp_path / "out" / "lora" / "lora_adapter" / "adapter_config.json").exists()
    assert any((tmp_path / "out" / "encoder_cache").rglob("*.pt"))
    assert (tmp_path / "out" / "checkpoints" / "latest").read_text().strip() == "global_step2"
    bad = [json.loads(line)["error"] for line in (tmp_path / "out" / "bad_samples.jsonl").read_text().splitlines()]
    assert bad and all("img1.png" in e for e in bad)
