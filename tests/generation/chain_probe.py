"""A user's own dictionary transform, inserted into the generation bundle's chains by tests/generation/test_bundle_chain.py."""

from __future__ import annotations

import json

from monai.transforms import MapTransform
from monai.utils import TransformBackends


class RecordKeysd(MapTransform):
    """Append one JSON line per call to ``path``: the ``tag``, the dictionary's keys, the values of ``record_keys`` and
    the sorted keys (labels) of the dicts under ``label_keys``."""

    backend = [TransformBackends.NUMPY]

    def __init__(self, path: str, tag: str, record_keys=(), label_keys=(), allow_missing_keys: bool = True):
        super().__init__(list(record_keys) or ["image"], allow_missing_keys)
        self.path, self.tag, self.record_keys, self.label_keys = str(path), str(tag), list(record_keys), list(label_keys)

    def __call__(self, data):
        line = {"tag": self.tag, "keys": sorted(map(str, data)), "values": {k: data.get(k) for k in self.record_keys},
                "labels": {k: sorted(data[k]) for k in self.label_keys if isinstance(data.get(k), dict)}}
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(line, default=str) + "\n")
        return dict(data)
