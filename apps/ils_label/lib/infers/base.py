"""What the app's infer tasks share: 2-D chest X-ray inputs, request checks, label output and readiness."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.configs.common import ImageLimits
from lib.errors import BadRequest
from lib.transforms import CheckCXRSized, ResolveCXRd

RESULT_EXTENSIONS = (".png", ".nrrd", ".nii.gz", ".nii", ".seg.nrrd")
RESULT_DTYPES = ("uint8", "uint16", "int16", "int32", "float32")
PNG_DTYPES = ("uint8", "uint16")  # ITK's PNG writer (what MONAI Label uses) writes unsigned 8/16-bit only


def first(value):
    """OHIF sends a list-valued config entry unchanged when the user keeps its default: take its first item."""
    return value[0] if isinstance(value, (list, tuple)) and value else value


class CheckResultFormat:
    """Refuse unknown output formats before any work (a ``.dcm`` or ``.jpg`` label would be useless or lossy)."""

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        extension = first(d.get("result_extension")) or ".png"
        if not isinstance(extension, str) or extension.lower() not in RESULT_EXTENSIONS:
            raise BadRequest(f"result_extension {extension!r} is not supported; use one of {list(RESULT_EXTENSIONS)}.")
        dtype = first(d.get("result_dtype")) or "uint8"
        if dtype not in RESULT_DTYPES:
            raise BadRequest(f"result_dtype {dtype!r} is not supported; use one of {list(RESULT_DTYPES)}.")
        if extension.lower() == ".png" and dtype not in PNG_DTYPES:
            raise BadRequest(f"result_dtype {dtype!r} cannot be written as PNG (uint8 or uint16 only); use .nrrd or .nii.gz for {dtype}.")
        d["result_extension"], d["result_dtype"] = extension.lower(), dtype
        return d


class CXRInferTask(BasicInferTask):
    """A 2-D segmentation task on one chest X-ray; subclasses supply the model step.

    The label map comes back as PNG by default (2-D, label ids as pixel values, same size as the image);
    OHIF asks for ``.nrrd``; ``.nii.gz`` works too. ``unavailable_reason`` (None when ready) is what /info
    and a refused request tell the user to fix.
    """

    def __init__(self, labels: Mapping[str, int], description: str, config: Mapping, limits: ImageLimits, path=None):
        config = {**config, "result_extension": ".png", "result_dtype": "uint8"}
        super().__init__(
            path=path,
            network=None,
            type=InferType.SEGMENTATION,
            labels=dict(labels),
            dimension=2,
            description=description,
            config=config,
        )
        self.limits = limits
        self._lock = threading.Lock()  # the model and pipeline objects are not thread-safe

    def unavailable_reason(self) -> str | None:
        return None

    def is_valid(self) -> bool:
        return self.unavailable_reason() is None

    def info(self):
        info = super().info()
        info["max_image_pixels"] = self.limits.max_pixels
        return info

    def input_transforms(self) -> list[Callable]:
        return [
            CheckResultFormat(),
            ResolveCXRd("image"),
            CheckCXRSized("image", max_pixels=self.limits.max_pixels, max_bytes=self.limits.max_bytes),
        ]

    def inverse_transforms(self, data=None) -> Sequence[Callable] | None:
        return None
