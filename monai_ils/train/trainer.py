"""Train ROSALIA from Python with the rosalia bundle's ``train.json`` (PEFT LoRA, DeepSpeed ZeRO-2).

:class:`RosaliaTrainer` reads ``bundles/rosalia/configs/train.json``, applies keyword overrides (the config's
top-level names, plus objects: ``model``/``processor``/``network``, ``loss``, ``samples``) and builds the very
objects the bundle builds (``network_def``, ``loss``, ``train#dataset`` with its preprocessing, ``train#sampler``,
``train#dataloader``, ``train#handlers``) into a :class:`~monai_ils.train.workflow.DeepSpeedTrainer`. So a run
from Python and ``python -m monai.bundle run --config_file bundles/rosalia/configs/train.json`` are the same run.

The pieces live in their own modules; the names below are re-exported for callers of the former trainer.
"""

from __future__ import annotations

from pathlib import Path

from monai_ils.models.lora import LORA_DEFAULTS
from monai_ils.train.distributed import BUNDLE_DS_CONFIG, build_ds_config, default_ds_config, init_distributed, load_ds_config
from monai_ils.train.losses import RosaliaLoss
from monai_ils.train.network import build_network, export_checkpoint, prepare_for_training, seed_everything
from monai_ils.train.workflow import DeepSpeedTrainer, Events

__all__ = [
    "BUNDLE_TRAIN_CONFIG", "RosaliaTrainer", "train", "build_ds_config", "default_ds_config", "init_distributed",
    "build_network", "export_checkpoint", "DeepSpeedTrainer", "Events", "bundle_train_parser",
]

BUNDLE_TRAIN_CONFIG = BUNDLE_DS_CONFIG.parent / "train.json"

# former keyword names -> the bundle's names
RENAMED = {"train_json": "dataset_json"}
# keywords that are Python objects or settings of the Python entry, not config names
OBJECTS = ("model", "processor", "network", "loss", "samples", "lr", "warmup_steps", "config_file")


def bundle_train_parser(config_file=None, **overrides):
    """A ``monai.bundle.ConfigParser`` of the bundle's ``train.json`` (or ``config_file``) with ``overrides``
    (config ids, ``#`` paths allowed: ``{"train#sampler#drop_last": True}``)."""
    from monai.bundle import ConfigParser

    path = Path(config_file) if config_file is not None else BUNDLE_TRAIN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"No training config at {path}; pass config_file= (the rosalia bundle's configs/train.json).")
    parser = ConfigParser()
    parser.read_config(str(path))
    parser["bundle_root"] = str(path.parent.parent)
    for key, value in overrides.items():
        if key not in parser:
            raise KeyError(f"{path.name} has no {key!r}; known top-level names: {sorted(k for k in parser.get() if k != 'imports')}.")
        parser[key] = value
    return parser


class RosaliaTrainer(DeepSpeedTrainer):
    """The bundle's training run, from Python.

    Keywords are the top-level names of ``train.json`` (``model_dir``, ``dataset_json`` (or ``train_json``),
    ``splits``, ``image_root``, ``output_dir``, ``ds_config``, ``epochs``, ``max_steps``, ``micro_batch_size``,
    ``grad_accum``, ``loss_weights``, ``lora``, ``equalize_prob``, ``seed``, ``bf16``, ``use_cache``,
    ``cache_dir``, ``save_every``, ``log_every``, ``num_workers``, ``resume``, ``resume_tag``,
    ``export_merged_model``, ``gradient_checkpointing``, ``skip_bad_samples``, ``model_kwargs``, ``progress``,
    ``val_splits``, ``val_interval``, ...) and ``config_file``; plus Python objects:

    - ``model`` + ``processor`` or ``network=(model, processor)`` instead of loading ``model_dir``
      (LoRA from ``lora`` is added when the model has none);
    - ``loss`` (a :class:`RosaliaLoss`) instead of ``loss_weights``; ``samples`` instead of reading ``dataset_json``;
    - ``lr`` / ``warmup_steps``: replace the DeepSpeed file's optimizer lr / scheduler warm-up for this run.

    Python defaults differ from the bundle's in two places: ``num_workers=0`` and ``gradient_checkpointing=False``.
    """

    def __init__(self, model=None, processor=None, network=None, loss: RosaliaLoss | None = None, samples=None,
                 lr: float | None = None, warmup_steps: int | None = None, config_file=None, **settings):
        if network is not None:
            if model is not None or processor is not None:
                raise ValueError("RosaliaTrainer: pass network or model + processor, not both.")
            model, processor = network
        if (model is None) != (processor is None):
            raise ValueError("RosaliaTrainer: pass the processor together with the model.")
        if loss is not None and settings.get("loss_weights"):
            raise ValueError("RosaliaTrainer: pass loss or loss_weights, not both.")
        settings = {RENAMED.get(k, k): v for k, v in settings.items()}
        settings.setdefault("num_workers", 0)
        settings.setdefault("gradient_checkpointing", False)
        if settings.get("lora") is not None:
            settings["lora"] = {**LORA_DEFAULTS, **dict(settings["lora"])}
        for key in ("output_dir", "dataset_json", "model_dir", "image_root", "cache_dir"):
            if settings.get(key) is not None:
                settings[key] = str(settings[key])
        if "resume" in settings and not isinstance(settings["resume"], (bool, int, type(None))):
            settings["resume"] = str(settings["resume"])
        if lr is not None or warmup_steps is not None:
            settings["ds_config"] = _with_lr(settings.get("ds_config"), lr, warmup_steps)
        parser = bundle_train_parser(config_file, **settings)
        if model is not None:
            seed_everything(int(parser.get_parsed_content("seed")))
            lora = parser.get_parsed_content("lora")
            prepare_for_training(model, lora, bool(parser.get_parsed_content("network_def#gradient_checkpointing")))
            parser["network_def"] = "$@_network"
            parser["_network"] = (model, processor)
        if loss is not None:
            parser["loss"] = "$@_loss"
            parser["_loss"] = loss
        if samples is not None:
            parser["train#samples"] = "$@_samples"
            parser["_samples"] = list(samples)
        self.parser = parser
        trainer_config = parser.get("train#trainer")
        kwargs = {k: parser.get_parsed_content(f"train#trainer#{k}") for k in trainer_config if not k.startswith("_")}
        super().__init__(**kwargs)


def _with_lr(ds_config, lr, warmup_steps) -> dict:
    """The DeepSpeed config (dict, file or the bundle's) with this run's lr / warm-up written in."""
    config = load_ds_config(ds_config)
    if lr is not None:
        config.setdefault("optimizer", {}).setdefault("params", {})["lr"] = float(lr)
    if warmup_steps is not None:
        config.setdefault("scheduler", {}).setdefault("params", {})["warmup_num_steps"] = int(warmup_steps)
    return config


def train(**kwargs) -> list[dict]:
    """Functional entry point: ``RosaliaTrainer(**kwargs).run()``."""
    return RosaliaTrainer(**kwargs).run()
