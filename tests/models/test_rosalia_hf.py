"""ROSALIA as a transformers model: standard layout, Auto* classes, old folders, meta-device sizes."""

import json

import torch
from safetensors.torch import save_file

from monai_ils.models import RosaliaConfig, RosaliaForCausalLM, RosaliaModel, load_pretrained, save_pretrained
from monai_ils.models.size import model_size
from monai_ils.models.testing import tiny_config, tiny_processor


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_standard_layout_round_trip_and_auto_classes(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    processor = tiny_processor()
    model = RosaliaForCausalLM(tiny_config(processor))
    save_pretrained(model, tmp_path / "m", processor)
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "rosalia_processor.json"} <= files
    assert json.loads((tmp_path / "m" / "config.json").read_text())["architectures"] == ["RosaliaForCausalLM"]
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "m"), RosaliaConfig)
    auto = AutoModelForCausalLM.from_pretrained(tmp_path / "m", trust_remote_code=False)
    assert type(auto) is RosaliaForCausalLM and _same_weights(auto, model)
    # what transformers cannot know is restored: SAM's non-persistent pixel statistics and the frozen encoders
    torch.testing.assert_close(auto.visual_model.pixel_mean, model.visual_model.pixel_mean)
    assert not any(p.requires_grad for p in auto.visual_model.image_encoder.parameters())
    assert all(p.requires_grad for p in auto.visual_model.mask_decoder.parameters())


def test_sharded_save_loads(tmp_path):
    torch.manual_seed(1)
    processor = tiny_processor()
    model = RosaliaForCausalLM(tiny_config(processor))
    model.save_pretrained(tmp_path / "m", max_shard_size="200KB")
    processor.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors.index.json").exists()
    assert len(list((tmp_path / "m").glob("model-*-of-*.safetensors"))) > 1
    loaded, _ = load_pretrained(tmp_path / "m")
    assert _same_weights(loaded, model)


def test_folder_written_by_the_dataclass_era_code_still_loads(tmp_path):
    """Before this model was a PreTrainedModel, save_pretrained wrote {"model_type": "rosalia", <config fields>}
    and one model.safetensors with the same weight names (tied weights once); such folders load unchanged."""
    torch.manual_seed(2)
    processor = tiny_processor()
    config = tiny_config(processor)
    model = RosaliaModel(config)
    old = {"model_type": "rosalia", "text_config": config.text_config, "vision_config": config.vision_config,
           "sam_config": config.sam_config, "projector_type": "linear", "vision_select_layer": -2,
           "vision_select_feature": "patch", "seg_token_id": config.seg_token_id, "image_token_index": -200,
           "train_mask_decoder": True}
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(old))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    processor.save_pretrained(folder)
    loaded, loaded_processor = load_pretrained(folder)
    assert _same_weights(loaded, model) and loaded.config.seg_token_id == config.seg_token_id == loaded_processor.seg_token_id


def test_lisa_7b_shapes_on_the_meta_device():
    size = model_size()
    # Llama-7B with LISA's 32003-token vocabulary: embeddings and lm_head 2 * 32003 * 4096, 32 layers of
    # (4 * 4096^2 attention + 3 * 4096 * 11008 MLP + 2 * 4096 norms), final norm 4096
    llama = 2 * 32003 * 4096 + 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 4096
    assert size["parts"]["language_model"] == llama == 6_738_440_192
    assert size["parts"]["text_hidden_fcs"] == 4096 * 4096 + 4096 + 4096 * 256 + 256
    assert size["parts"]["mm_projector"] == 1024 * 4096 + 4096  # LLaVA v1's linear projector
    assert size["parameters"] == sum(size["parts"].values())
    assert size["weight_bytes"] == 2 * size["parameters"] and 7.6e9 < size["parameters"] < 7.8e9


def test_zero_converter_strips_wrappers_and_names_the_lora_file(tmp_path):
    from monai_ils.models.convert_zero import read_zero_state_dict, strip_wrappers

    t = torch.zeros(2)
    state, stripped = strip_wrappers({"module.base_model.model.a.weight": t, "module.base_model.model.b.lora_A.default.weight": t})
    assert set(state) == {"a.weight", "b.lora_A.default.weight"} and stripped == ["module.", "base_model.model."]
    assert strip_wrappers({"module.a": t, "b": t})[1] == []  # only a prefix every name has is a wrapper
    folder = tmp_path / "fp32"
    folder.mkdir()
    torch.save({"module.a.weight": t}, folder / "pytorch_model-00001-of-00002.bin")
    torch.save({"module.b.lora_B.default.weight": t}, folder / "pytorch_model-00002-of-00002.bin")
    index = {"weight_map": {"module.a.weight": "pytorch_model-00001-of-00002.bin",
                            "module.b.lora_B.default.weight": "pytorch_model-00002-of-00002.bin"}}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    weights = read_zero_state_dict(folder)
    assert weights.lora_files == ["pytorch_model-00002-of-00002.bin"] and set(weights.state) == {"a.weight", "b.lora_B.default.weight"}


def test_from_pretrained_builds_on_the_meta_device(tmp_path, monkeypatch):
    """No layer is randomly initialised in real memory before the weights are read (the 7B concern)."""
    processor = tiny_processor()
    RosaliaForCausalLM(tiny_config(processor)).save_pretrained(tmp_path / "m")
    devices = []
    original = torch.nn.Linear.reset_parameters

    def watch(self):
        devices.append(self.weight.device.type)
        return original(self)

    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", watch)
    model = RosaliaForCausalLM.from_pretrained(tmp_path / "m")
    assert devices and set(devices) == {"meta"}
    assert all(p.device.type == "cpu" for p in model.parameters())
