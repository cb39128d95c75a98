"""Task config of ``grounding``: review of the masks the dataset-generation pipeline makes from a report.

App conf keys:

* ``grounding_config``: JSON file of ``monai_ils.generation.pipeline.GroundingPipeline`` arguments, e.g.
  ``{"anatomy": "cxas", "anatomy_kwargs": {...}, "boxes": "yolo", "boxes_kwargs": {...}, "max_size": 1024}``;
  without it the classical backends run (no weights needed).
* ``grounding_preload``: build the pipeline at start-up instead of on the first request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monailabel.interfaces.config import TaskConfig

from lib.configs.common import ImageLimits, conf_bool, conf_str


class Grounding(TaskConfig):
    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.limits = ImageLimits.from_conf(conf)
        self.preload = conf_bool(conf, "grounding_preload", False)
        self.pipeline_kwargs: dict = {}
        path = conf_str(conf, "grounding_config")
        if path:
            file = Path(path)
            if not file.is_file():
                raise ValueError(f"App conf 'grounding_config' points to {path!r}, which is not a file.")
            try:
                self.pipeline_kwargs = json.loads(file.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"App conf 'grounding_config' ({path}) is not valid JSON: {err}") from None
            if not isinstance(self.pipeline_kwargs, dict):
                raise ValueError(f"App conf 'grounding_config' ({path}) must hold a JSON object of GroundingPipeline arguments.")

    def infer(self):
        from lib.infers.grounding import GroundingInfer

        task = GroundingInfer(limits=self.limits, pipeline_kwargs=self.pipeline_kwargs)
        if self.preload:
            task.warm_up()
        return task

    def trainer(self):
        return None
