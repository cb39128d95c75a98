"""Task config of ``rosalia``: instruction-guided segmentation with weights from a local folder.

App conf keys (``monailabel start_server ... --conf key value``):

* ``rosalia_path``: checkpoint folder in any layout ``monai_ils.models.load_rosalia`` reads (ROSALIA,
  LISA as published for ROSALIA, Hugging Face LLaVA + SAM). Without it the app starts, ``/info`` lists the
  task under ``unavailable`` and ``/infer/rosalia`` answers 503 saying what to set.
* ``rosalia_vision_tower``: local CLIP ViT-L/14 folder when a LISA checkpoint names a hub id.
* ``rosalia_sam_checkpoint``: local SAM ``.pth`` (Hugging Face LLaVA layout only).
* ``rosalia_device`` (``auto``), ``rosalia_dtype`` (float32 on CPU, bfloat16 on CUDA), ``rosalia_mode``
  (``generate``: text answer and masks; ``segment``: mask only, faster), ``rosalia_max_new_tokens`` (32),
  ``rosalia_preload`` (load at start-up instead of on the first request).
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
        self.device = conf_str(conf, "rosalia_device", "auto")
        self.dtype = conf_str(conf, "rosalia_dtype")
        self.mode = conf_str(conf, "rosalia_mode", "generate")
        if self.mode not in MODES:
            raise ValueError(f"App conf 'rosalia_mode' must be one of {list(MODES)}, got {self.mode!r}.")
        self.max_new_tokens = conf_int(conf, "rosalia_max_new_tokens", 32)
        self.preload = conf_bool(conf, "rosalia_preload", False)
        self.load_kwargs = {}
        for key, arg in (("rosalia_vision_tower", "vision_tower_path"), ("rosalia_sam_checkpoint", "sam_checkpoint")):
            if conf_str(conf, key):
                self.load_kwargs[arg] = conf_str(conf, key)

    def infer(self):
        from lib.infers.rosalia import RosaliaInfer

        task = RosaliaInfer(
            path=self.path,
            limits=self.limits,
            device=self.device,
            dtype=self.dtype,
            mode=self.mode,
            max_new_tokens=self.max_new_tokens,
            load_kwargs=self.load_kwargs,
        )
        if self.preload and task.is_valid():
            task.warm_up()
        return task

    def trainer(self):
        return None  # training runs as a MONAI bundle (bundles/), not inside the labelling server
