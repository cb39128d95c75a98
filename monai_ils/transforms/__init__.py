"""MONAI transforms of monai-ils: loading chest X-rays and grounding reported lesions."""

from .grounding import *  # noqa: F401,F403
from .io import CXRLoadError, FrontalViewError, LoadCXR, LoadCXRd
from .keys import GroundingKeys
from .utils import GroundingInputError
