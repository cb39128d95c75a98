"""monai-ils: instruction-guided lesion segmentation of chest X-rays, the MONAI way."""

__version__ = "0.1.0"

import sys as _sys

if "transformers" in _sys.modules:
    # With transformers already loaded, register ROSALIA with its Auto* classes now, so that
    # ``AutoModelForCausalLM.from_pretrained(folder)`` works after ``import monai_ils``; otherwise
    # ``import monai_ils.models`` registers it (kept lazy so the report/generation CLIs start fast).
    try:
        import monai_ils.models  # noqa: F401
    except ImportError:  # the model extra (segment-anything, peft) is not installed: nothing to register
        pass
