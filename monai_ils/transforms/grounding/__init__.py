from .array import (
    AnomalyMap,
    BoxFilterResult,
    CardiothoracicRatio,
    FilterLesionBoxes,
    IntersectingComponents,
    LocationVerification,
    RefineLesionMask,
    VerifyLocations,
)
from .dictionary import (
    AnomalyMapd,
    CardiothoracicRatiod,
    FilterLesionBoxesd,
    IntersectingComponentsd,
    RefineLesionMaskd,
    VerifyLocationsd,
)
