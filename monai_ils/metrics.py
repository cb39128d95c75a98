"""gIoU, cIoU, N-Acc and text accuracy (defined in :mod:`monai_ils.evaluation.metrics`)."""

from monai_ils.evaluation.metrics import *  # noqa: F401,F403
from monai_ils.evaluation.metrics import __all__  # noqa: F401
