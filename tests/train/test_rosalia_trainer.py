"""DeepSpeed ZeRO-2 training on CPU (one gloo process): the loss falls, resume is exact, exports load.

One short run is shared by the module (DeepSpeed start-up is the slow part).
"""

import json

import numpy as np
import pytest
import torch

from monai_ils.models import load_pretrained
from monai_ils.models.lora import load_lora
from monai_ils.models.testing import build_tiny_rosalia
from monai_ils.train.trainer import RosaliaTrainer, build_ds_config, export_checkpoint

STEPS, SAVE_AT = 12, 6
COMMON = dict(micro_batch_size=2, lr=3e-3, warmup_steps=1, lora={"r": 8, "alpha": 16}, progress=False, max_steps=STEPS)


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    model, processor, folder = build_tiny_rosalia(root / "model")
    trainer = RosaliaTrainer(train_json=tiny_data, output_dir=root / "out", model=model, processor=processor, save_every=SAVE_AT, **COMMON)
    history = trainer.run()
    return trainer, history, root, folder


def test_loss_falls_on_eight_samples(run):
    trainer, history, _, _ = run
    assert len(trainer.dataset) == 8
    assert [h["step"] for h in history] == list(range(1, STEPS + 1))
    losses = [h["loss"] for h in history]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1, losses
    assert trainer.engine.zero_optimization_stage() == 2
    assert not trainer.engine.bfloat16_enabled()  # fp32 on CPU
    opt = trainer.engine.optimizer.optimizer
    assert type(opt).__name__ == "AdamW" and opt.param_groups[0]["betas"] == (0.9, 0.95)


def test_resume_is_exact(run, tiny_data):
    """N steps straight == N/2 steps, save, a new process-like trainer resumed from there, N/2 steps: the same
    losses step by step and the same weights at the end (loss weights, sampler position and RNG restored)."""
    trainer, history, root, folder = run
    model, processor = load_pretrained(folder)
    resumed = RosaliaTrainer(
        train_json=tiny_data, output_dir=root / "resumed", model=model, processor=processor, save_every=0,
        resume=root / "out" / "checkpoints", resume_tag=f"global_step{SAVE_AT}", export_merged_model=False,
        loss_weights={"ce": 1.0, "bce": 1.0, "dice": 1.0}, **COMMON,
    )
    new = resumed.run()
    assert resumed.loss.weights.to_dict() == {"ce": 0.5, "bce": 5.0, "dice": 1.0}  # the checkpoint's, not the new ones
    assert [h["step"] for h in new] == list(range(1, STEPS + 1))  # the history up to the checkpoint comes with it
    assert len(resumed.sampler) == 4 and resumed.sampler.state_dict()["epoch"] == 2  # 12 steps of 4 batches: 3 epochs
    for a, b in zip(history[SAVE_AT:], new[SAVE_AT:]):
        assert b["step"] == a["step"] and b["lr"] == a["lr"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-7), (a, b)
    straight = {k: v for k, v in trainer.model.named_parameters() if v.requires_grad}
    again = {k: v for k, v in resumed.model.named_parameters() if v.requires_grad}
    assert straight.keys() == again.keys() and any("lora_" in k for k in straight)
    for key, value in straight.items():
        torch.testing.assert_close(again[key], value, rtol=1e-6, atol=1e-7, msg=key)


def test_resume_from_a_folder_without_checkpoint_is_refused(tiny_data, tmp_path):
    model, processor, _ = build_tiny_rosalia(tmp_path / "model")
    trainer = RosaliaTrainer(train_json=tiny_data, output_dir=tmp_path / "out", model=model, processor=processor,
                             resume=tmp_path / "empty", **COMMON)
    with pytest.raises(FileNotFoundError, match="No DeepSpeed checkpoint .*empty"):
        trainer.run()


def test_outputs_adapters_and_merged_model_load(run, tiny_data):
    trainer, history, root, folder = run
    out = root / "out"
    assert json.loads((out / "history.json").read_text())[-1]["step"] == STEPS
    merged, processor = load_pretrained(out / "merged")
    base, _ = load_pretrained(folder)
    with_adapters = load_lora(base, out / "lora")
    rgb = np.full((48, 64), 100, np.uint8)
    sam, size = processor.sam_image(rgb)
    encoded = merged.encode_images(sam[None], processor.vlm_image(rgb)[None], [size], [rgb.shape])
    prompt = [processor.encode_prompt("Segment the edema in the left lung.", answer_prefix="[SEG]")]
    merged.eval(), with_adapters.eval()
    torch.testing.assert_close(merged.segment(encoded, prompt)[0], with_adapters.segment(encoded, prompt)[0], atol=1e-4, rtol=1e-4)


def test_export_from_a_deepspeed_checkpoint_matches_the_run_export(run, tmp_path):
    _, _, root, folder = run
    exported = export_checkpoint(root / "out" / "checkpoints", tmp_path / "exported", model_dir=folder, lora={"r": 8, "alpha": 16})
    a, processor = load_pretrained(exported)
    b, _ = load_pretrained(root / "out" / "merged")  # written at the end of the run, the same step
    for key, value in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[key], value, msg=key)


def test_ds_config_fills_auto_values(tmp_path):
    base = json.loads(open("bundles/rosalia/configs/ds_zero2.json").read())
    config = build_ds_config("bundles/rosalia/configs/ds_zero2.json", micro_batch_size=3, grad_accum=4, total_steps=50, lr=1e-4, bf16=None)
    assert config["train_micro_batch_size_per_gpu"] == 3 and config["gradient_accumulation_steps"] == 4
    assert config["optimizer"]["params"] == {"lr": 1e-4, "betas": [0.9, 0.95], "weight_decay": 0.0, "torch_adam": True}
    sched = config["scheduler"]["params"]
    assert sched["warmup_num_steps"] == 100 and sched["warmup_min_lr"] == 0 and sched["warmup_max_lr"] == 1e-4 and sched["total_num_steps"] == 50
    assert config["bf16"]["enabled"] is torch.cuda.is_available()
    assert config["gradient_clipping"] == 1.0
    zero = config["zero_optimization"]
    assert zero["stage"] == 2 and zero["overlap_comm"] and zero["contiguous_gradients"]
    assert base["optimizer"]["params"]["lr"] == 3e-4  # the file itself is untouched
    # without a Python override the file is the one source of lr and warmup
    config = build_ds_config("bundles/rosalia/configs/ds_zero2.json", micro_batch_size=3, grad_accum=4, total_steps=50)
    assert config["optimizer"]["params"]["lr"] == 3e-4 and config["scheduler"]["params"]["warmup_max_lr"] == 3e-4
    assert config["scheduler"]["params"]["warmup_num_steps"] == 100
    assert build_ds_config(None, 1, 1, 5) == build_ds_config("bundles/rosalia/configs/ds_zero2.json", 1, 1, 5)
    with pytest.raises(ValueError, match="lr is 'auto'"):
        build_ds_config({**base, "optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}, 1, 1, 5)
    with pytest.raises(ValueError, match="no 'optimizer' section"):
        build_ds_config({k: v for k, v in base.items() if k != "optimizer"}, 1, 1, 5)


@pytest.mark.parametrize("form", ["checkpoint_folder", "single_file", "shards", "safetensors_shards"])
def test_zero_checkpoint_converter_reads_every_zero_to_fp32_form(run, tmp_path, form):
    """DeepSpeed's own zero_to_fp32 writes the inputs; the merged result equals the run's export."""
    import deepspeed
    from deepspeed.utils.zero_to_fp32 import convert_zero_checkpoint_to_fp32_state_dict

    from monai_ils.models.convert_zero import convert_zero_checkpoint, read_zero_state_dict

    _, _, root, folder = run
    checkpoints = root / "out" / "checkpoints"
    source = checkpoints
    if form != "checkpoint_folder":
        source = tmp_path / "fp32"
        shard = "10GB" if form == "single_file" else "100KB"
        convert_zero_checkpoint_to_fp32_state_dict(str(checkpoints), str(source), max_shard_size=shard,
                                                   safe_serialization=form == "safetensors_shards")
        index = list(source.glob("*.index.json"))
        assert (len(index) == 1) == (form != "single_file"), (deepspeed.__version__, list(source.iterdir()))
    weights = read_zero_state_dict(source)
    assert weights.has_lora and weights.lora_files and not any(k.startswith(("module.", "base_model.")) for k in weights.state)
    with pytest.raises(ValueError, match="LoRA weights found in"):
        convert_zero_checkpoint(source, folder, tmp_path / "no_lora")
    exported = convert_zero_checkpoint(source, folder, tmp_path / "merged", lora={"r": 8, "alpha": 16})
    a, _ = load_pretrained(exported)
    b, _ = load_pretrained(root / "out" / "merged")
    for key, value in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[key], value, msg=key)
