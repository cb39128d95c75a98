"""Dataset formats, templates and readers for instruction-guided lesion segmentation."""
