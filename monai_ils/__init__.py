"""monai-ils: instruction-guided lesion segmentation of chest X-rays, the MONAI way."""

__version__ = "0.1.0"
