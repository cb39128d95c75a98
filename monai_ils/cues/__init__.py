"""Spatial-cue backends: anatomy masks, lesion-free counterfactuals (for the anomaly map) and lesion boxes.

Configs pick backends by name (``get_backend("anatomy", "classical")``); the dictionary transforms
``AnatomyMasksd``, ``Counterfactuald`` and ``DetectLesionBoxesd`` run them on data dictionaries and
``CrossCheckAnatomyd`` flags studies whose two anatomy sources disagree (Appendix D.2). Neural backends
(RadEdit, CXAS, HybridGNet, YOLO) are imported only when asked for, so the package imports without
diffusers, transformers or ultralytics.
"""

from .base import (
    CUE_KINDS,
    AnatomyBackend,
    BoxBackend,
    Boxes,
    CounterfactualBackend,
    CueError,
    MissingWeightsError,
    available_backends,
    edit_region,
    get_backend,
    register_backend,
)
from .classical_anatomy import ClassicalAnatomy
from .classical_boxes import ClassicalBoxes
from .classical_counterfactual import ClassicalCounterfactual
from .transforms import (
    AnatomyMasks,
    AnatomyMasksd,
    AnatomyMasksD,
    AnatomyMasksDict,
    Counterfactual,
    Counterfactuald,
    CounterfactualD,
    CounterfactualDict,
    CrossCheckAnatomy,
    CrossCheckAnatomyd,
    CrossCheckAnatomyD,
    CrossCheckAnatomyDict,
    DetectLesionBoxes,
    DetectLesionBoxesd,
    DetectLesionBoxesD,
    DetectLesionBoxesDict,
)

__all__ = [
    "CUE_KINDS", "AnatomyBackend", "BoxBackend", "Boxes", "CounterfactualBackend", "CueError", "MissingWeightsError",
    "available_backends", "edit_region", "get_backend", "register_backend", "ClassicalAnatomy", "ClassicalBoxes",
    "ClassicalCounterfactual", "AnatomyMasks", "AnatomyMasksd", "Counterfactual", "Counterfactuald", "CrossCheckAnatomy",
    "CrossCheckAnatomyd", "DetectLesionBoxes", "DetectLesionBoxesd",
    "AnatomyMasksD", "AnatomyMasksDict", "CounterfactualD", "CounterfactualDict", "CrossCheckAnatomyD", "CrossCheckAnatomyDict",
    "DetectLesionBoxesD", "DetectLesionBoxesDict",
]
