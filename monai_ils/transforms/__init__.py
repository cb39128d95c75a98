"""MONAI transforms of monai-ils: loading chest X-rays and grounding reported lesions."""

from .grounding import *  # noqa: F401,F403
from .intensity import ScaleCXRIntensity, ScaleCXRIntensityD, ScaleCXRIntensityd, ScaleCXRIntensityDict, cxr_image_path
from .io import CXRLoadError, FrontalViewError, LoadCXR, LoadCXRd, LoadCXRD, LoadCXRDict
from .keys import GroundingKeys
from .utils import GroundingInputError
