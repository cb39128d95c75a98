"""On/off settings of our bundle configs are coerced (issue 15 item 9): ``--export_images false`` is False."""

from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from monai_ils.utils.config import as_bool

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value, expected", [("false", False), ("False", False), ("FALSE", False), ("0", False), (0, False),
                                             (False, False), ("true", True), ("True", True), ("TRUE", True), ("1", True),
                                             (1, True), (True, True), (" false ", False)])
def test_as_bool_accepts_true_false_1_0_in_any_case(value, expected):
    assert as_bool(value, "export_images") is expected


@pytest.mark.parametrize("value", ["no", "yes", "", "2", 2, None, "falsch", 0.5])
def test_as_bool_refuses_anything_else_naming_the_key(value):
    with pytest.raises(ValueError, match=f"export_images must be true or false .*got {value!r}"):
        as_bool(value, "export_images")


def _parser(config, **overrides):
    parser = ConfigParser()
    parser.read_config(ROOT / "bundles" / config)
    parser.update(overrides)  # what `python -m monai.bundle run --key value` does with Fire's strings
    return parser


@pytest.mark.parametrize("config, owner, key", [
    ("ils_generation/configs/generation.json", "processor", "export_images"),
    ("ils_generation/configs/generation.json", "processor", "overlays"),
    ("ils_generation/configs/generation.json", "runner", "progress"),
    ("rosalia/configs/train.json", "train#handlers#4", "export_merged_model"),
    ("rosalia/configs/inference.json", "runner", "resume"),
    ("rosalia/configs/evaluate.json", "evaluator", "resume"),
])
def test_lowercase_false_on_the_command_line_is_false_and_a_typo_is_refused(config, owner, key):
    parser = _parser(config, **{key: "false"})
    site = f"{owner}#{'export_merged' if key == 'export_merged_model' else key}"  # the handler's own argument name
    assert parser.get_parsed_content(site) is False
    assert _parser(config, **{key: "True"}).get_parsed_content(site) is True
    with pytest.raises(Exception) as error:  # MONAI wraps it in "Failed to evaluate"; the cause names the key
        _parser(config, **{key: "nope"}).get_parsed_content(site)
    causes = []
    err = error.value
    while err is not None:
        causes.append(str(err))
        err = err.__cause__
    choices = "auto, true or false" if key == "export_images" else "true or false"  # export_images also takes auto
    assert f"{key} must be {choices} (also 1/0, any case), got 'nope'." in causes


def test_train_resume_false_is_no_resume_true_is_the_run_folder_and_other_text_is_a_folder(tmp_path):
    """``resume`` of train.json also takes a checkpoint folder, so text that is not true/false names a folder."""
    from monai_ils.train.handlers import DeepSpeedCheckpointLoader

    def handler(value):
        return _parser("rosalia/configs/train.json", resume=value, checkpoint_dir=str(tmp_path)).get_parsed_content("train#handlers#0")

    assert handler("false") is None and handler("FALSE") is None and handler("0") is None
    loader = handler("True")
    assert isinstance(loader, DeepSpeedCheckpointLoader) and Path(loader.load_dir) == tmp_path and not loader.required
    other = handler(str(tmp_path / "nope"))
    assert Path(other.load_dir) == tmp_path / "nope" and other.required


def test_generation_executor_local_builds_no_ray_executor_and_a_typo_is_refused():
    """``executor`` is local or ray; ``rey`` must not silently run locally (and ``local`` never starts Ray)."""
    assert _parser("ils_generation/configs/generation.json").get_parsed_content("run_executor") is None
    with pytest.raises(Exception) as error:
        _parser("ils_generation/configs/generation.json", executor="rey").get_parsed_content("run_executor")
    err, causes = error.value, []
    while err is not None:
        causes.append(str(err))
        err = err.__cause__
    assert "executor must be one of local, ray, got 'rey'." in causes
