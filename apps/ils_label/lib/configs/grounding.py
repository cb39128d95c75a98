"""Task config of ``grounding``: review of the masks the dataset-generation pipeline makes from a report.

The task is built from the generation bundle's own nodes: its ``pipeline`` (structurer, ``study_transforms``,
``finding_transforms``) is parsed with ``monai.bundle.ConfigParser`` from ``generation.json``, as MONAI Label's
bundle tasks do, so what the bundle config says is what the server runs. App conf keys only override bundle values:

* ``grounding_bundle_config``: the bundle config file(s) to merge, comma separated, later ones overriding earlier ones
  (e.g. ``/repo/bundles/ils_generation/configs/generation.json,/site/my_cues.json``); default the repository's
  ``bundles/ils_generation/configs/generation.json`` (classical backends, no weights needed).
* ``grounding#<bundle id>``: set that bundle node, e.g. ``--conf grounding#max_size 512`` or
  ``--conf grounding#finding_transforms#transforms#3#expand_iterations 0``; the value is read as JSON when it
  parses (numbers, lists, objects, true/false/null), else kept as a string.
* ``grounding_preload``: build the pipeline at start-up instead of on the first request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monailabel.interfaces.config import TaskConfig

from lib.configs.common import ImageLimits, conf_bool, conf_str

OVERRIDE_PREFIX = "grounding#"


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return text


class Grounding(TaskConfig):
    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.limits = ImageLimits.from_conf(conf)
        self.preload = conf_bool(conf, "grounding_preload", False)
        files = conf_str(conf, "grounding_bundle_config")
        self.bundle_configs = [Path(f.strip()) for f in files.split(",") if f.strip()] if files else None
        for file in self.bundle_configs or []:
            if not file.is_file():
                raise ValueError(f"App conf 'grounding_bundle_config' names {str(file)!r}, which is not a file.")
        self.overrides = {key[len(OVERRIDE_PREFIX):]: _value(value) for key, value in conf.items()
                          if key.startswith(OVERRIDE_PREFIX) and len(key) > len(OVERRIDE_PREFIX)}

    def infer(self):
        from lib.infers.grounding import GroundingInfer

        task = GroundingInfer(limits=self.limits, bundle_configs=self.bundle_configs, overrides=self.overrides)
        if self.preload:
            task.warm_up()
        return task

    def trainer(self):
        return None
