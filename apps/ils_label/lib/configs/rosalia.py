"""Task config of ``rosalia``: instruction-guided segmentation with weights from a local folder.

App conf keys (``monailabel start_server ... --conf key value``):

* ``rosalia_path``: checkpoint folder in any layout ``monai_ils.models.load_rosalia`` reads (ROSALIA,
  LISA as published for ROSALIA, Hugging Face LLaVA + SAM). Without it the app starts, ``/info`` lists the
  task under ``unavailable`` and ``/infer/rosalia`` answers 503 saying what to set.
* ``rosalia_vision_tower``: local CLIP ViT-L/14 folder when a LISA checkpoint names a hub id.
* ``rosalia_sam_checkpoint``: local SAM ``.pth`` (Hugging Face LLaVA layout only).
* ``rosalia_device`` (``auto``), ``rosalia_dtype`` (float32 on CPU, bfloat16 on CUDA), ``rosalia_mode``
  (``generate``: text answer and masks; ``segment``: mask only, faster), ``rosalia_max_new_tokens`` (32),
  ``rosalia_preload`` (load at start-up instead of on the first request),
  ``rosalia_bundle_config`` (another ``inference.json``; default the repository's
  ``bundles/rosalia/configs/inference.json``).

The task is built from that bundle config; each key above that is set overrides the bundle's value
(``checkpoint_dir``, ``device``, ``dtype``, ``mode``, ``max_new_tokens``, ``load_kwargs``), the rest is the
bundle's.
"""

from __future__ import annotations

import logging
from typing import Any

from monailabel.interfaces.config import TaskConfig

from lib.configs.common import ImageLimits, conf_bool, conf_int, conf_str

logger = logging.getLogger(__name__)

MODES = ("generate", "segment")


class Rosalia(TaskConfig):
    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.path = conf_str(conf, "rosalia_path")
        self.limits = ImageLimits.from_conf(conf)
        self.bundle_config = conf_str(conf, "rosalia_bundle_config")
        self.preload = conf_bool(conf, "rosalia_preload", False)
        self.overrides: dict[str, Any] = {}
        for key, bundle_key in (("rosalia_device", "device"), ("rosalia_dtype", "dtype"), ("rosalia_mode", "mode")):
            if conf_str(conf, key):
                self.overrides[bundle_key] = conf_str(conf, key)
        if self.overrides.get("mode", MODES[0]) not in MODES:
            raise ValueError(f"App conf 'rosalia_mode' must be one of {list(MODES)}, got {self.overrides['mode']!r}.")
        if conf_str(conf, "rosalia_max_new_tokens"):
            self.overrides["max_new_tokens"] = conf_int(conf, "rosalia_max_new_tokens", 32)
        load_kwargs = {}
        for key, arg in (("rosalia_vision_tower", "vision_tower_path"), ("rosalia_sam_checkpoint", "sam_checkpoint")):
            if conf_str(conf, key):
                load_kwargs[arg] = conf_str(conf, key)
        if load_kwargs:
            self.overrides["load_kwargs"] = load_kwargs

    def infer(self):
        from lib.infers.rosalia import RosaliaInfer

        task = RosaliaInfer(path=self.path, limits=self.limits, overrides=self.overrides, bundle_config=self.bundle_config)
        if self.preload and task.is_valid():
            task.warm_up()
        return task

    def trainer(self):
        return None  # training runs as a MONAI bundle (bundles/), not inside the labelling server
