"""Inference with ROSALIA: single requests, batches over datasets, and an image-embedding cache."""

from monai_ils.inference.cache import EmbeddingCache, image_key
from monai_ils.inference.predictor import MODES, Prediction, RosaliaPredictor, load_network, resolve_device, resolve_dtype

__all__ = ["MODES", "EmbeddingCache", "Prediction", "RosaliaPredictor", "image_key", "load_network", "resolve_device", "resolve_dtype"]
