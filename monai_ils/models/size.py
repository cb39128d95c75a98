"""Parameter count and memory of a ROSALIA architecture, measured on the meta device (no weights, no RAM).

``python -m monai_ils.models.size`` prints the LISA-7B / ROSALIA figures; `model_size` builds any config
with ``RosaliaForCausalLM._from_config`` under ``torch.device("meta")``, the same construction
``from_pretrained`` uses before it fills in the weights.
"""

from __future__ import annotations

import torch

from monai_ils.models.rosalia import RosaliaConfig, RosaliaForCausalLM, lisa_7b_config


def meta_model(config: RosaliaConfig) -> RosaliaForCausalLM:
    """The full model with every tensor on the meta device (shapes and dtypes only)."""
    with torch.device("meta"):
        return RosaliaForCausalLM._from_config(config)


def model_size(config: RosaliaConfig | None = None, dtype: torch.dtype = torch.bfloat16) -> dict:
    """Parameters per part and the bytes the weights need in ``dtype`` (default bf16)."""
    model = meta_model(config or lisa_7b_config())
    parts = {name: sum(p.numel() for p in getattr(model, name).parameters())
             for name in ("language_model", "vision_tower", "mm_projector", "visual_model", "text_hidden_fcs")}
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    element = torch.tensor([], dtype=dtype).element_size()
    return {"parameters": total, "trainable_before_lora": trainable, "parts": parts,
            "dtype": str(dtype).replace("torch.", ""), "weight_bytes": total * element}


def main() -> None:
    size = model_size()
    print(f"LISA-7B-shaped ROSALIA: {size['parameters']:,} parameters, "
          f"{size['weight_bytes'] / 2**30:.2f} GiB of weights in {size['dtype']}")
    for name, n in size["parts"].items():
        print(f"  {name:16s} {n:,}")


if __name__ == "__main__":
    main()
