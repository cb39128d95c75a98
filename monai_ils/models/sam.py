"""SAM built from the installed ``segment_anything`` package with every size a config value.

The official builders fix the input at 1024 px and the prompt width at 256; tests and small
experiments need a tiny SAM, and loaders need to recover the architecture of a checkpoint from
its weights (LISA/ROSALIA checkpoints do not record it). Both live here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamConfig:
    """Architecture of a SAM; defaults are SAM ViT-H (what LISA and ROSALIA use)."""

    img_size: int = 1024
    patch_size: int = 16
    encoder_embed_dim: int = 1280
    encoder_depth: int = 32
    encoder_num_heads: int = 16
    encoder_global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    window_size: int = 14
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    pixel_mean: tuple[float, ...] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, ...] = SAM_PIXEL_STD
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def embedding_size(self) -> int:
        return self.img_size // self.patch_size

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        return data

    @classmethod
    def from_any(cls, value: SamConfig | Mapping | str | None) -> SamConfig:
        """A SamConfig from itself, a dict, a preset name ('vit_h', 'vit_l', 'vit_b') or None (ViT-H)."""
        if value is None:
            return cls()
        if isinstance(value, SamConfig):
            return value
        if isinstance(value, str):
            if value not in SAM_PRESETS:
                raise ValueError(f"Unknown SAM preset {value!r}; expected one of {sorted(SAM_PRESETS)}.")
            return SAM_PRESETS[value]
        known = {f.name for f in fields(cls)} - {"extra"}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"SamConfig: unknown key(s) {sorted(unknown)}; expected some of {sorted(known)}.")
        data = dict(value)
        for key in ("encoder_global_attn_indexes", "pixel_mean", "pixel_std"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


SAM_PRESETS = {
    "vit_h": SamConfig(),
    "vit_l": SamConfig(encoder_embed_dim=1024, encoder_depth=24, encoder_global_attn_indexes=(5, 11, 17, 23)),
    "vit_b": SamConfig(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12, encoder_global_attn_indexes=(2, 5, 8, 11)),
}


def build_sam(config: SamConfig | Mapping | str | None = None) -> Sam:
    """A randomly initialised ``segment_anything.modeling.Sam`` of the given architecture."""
    cfg = SamConfig.from_any(config)
    size = cfg.embedding_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg.encoder_depth,
            embed_dim=cfg.encoder_embed_dim,
            img_size=cfg.img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=cfg.encoder_num_heads,
            patch_size=cfg.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(cfg.encoder_global_attn_indexes),
            window_size=cfg.window_size,
            out_chans=cfg.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg.prompt_embed_dim,
            image_embedding_size=(size, size),
            input_image_size=(cfg.img_size, cfg.img_size),
            mask_in_chans=cfg.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=cfg.decoder_depth,
                embedding_dim=cfg.prompt_embed_dim,
                mlp_dim=cfg.decoder_mlp_dim,
                num_heads=cfg.decoder_num_heads,
            ),
            transformer_dim=cfg.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        ),
        pixel_mean=list(cfg.pixel_mean),
        pixel_std=list(cfg.pixel_std),
    )


def infer_sam_config(state_dict: Mapping[str, torch.Tensor], prefix: str = "", decoder_num_heads: int = 8) -> SamConfig:
    """Recover a SAM architecture from its weights (keys ``{prefix}image_encoder.*`` etc.).

    Everything but the decoder's head count is readable from tensor shapes; that count is 8 in
    every published SAM, so it is a parameter here.
    """

    def get(name):
        key = prefix + name
        if key not in state_dict:
            raise KeyError(f"SAM weights: expected key {key!r} is missing; is this a SAM checkpoint?")
        return state_dict[key]

    patch = get("image_encoder.patch_embed.proj.weight")  # [embed, 3, p, p]
    embed_dim, patch_size = int(patch.shape[0]), int(patch.shape[-1])
    grid = int(get("image_encoder.pos_embed").shape[1])
    block_ids = sorted({int(m.group(1)) for k in state_dict if (m := re.match(re.escape(prefix) + r"image_encoder\.blocks\.(\d+)\.", k))})
    depth = len(block_ids)
    head_dim = int(get("image_encoder.blocks.0.attn.rel_pos_h").shape[1])
    global_blocks, window = [], None
    for i in block_ids:
        span = int(get(f"image_encoder.blocks.{i}.attn.rel_pos_h").shape[0])
        if span == 2 * grid - 1:
            global_blocks.append(i)
        else:
            window = (span + 1) // 2
    prompt_dim = int(get("prompt_encoder.no_mask_embed.weight").shape[1])
    decoder_layers = {int(m.group(1)) for k in state_dict if (m := re.match(re.escape(prefix) + r"mask_decoder\.transformer\.layers\.(\d+)\.", k))}
    return SamConfig(
        img_size=grid * patch_size,
        patch_size=patch_size,
        encoder_embed_dim=embed_dim,
        encoder_depth=depth,
        encoder_num_heads=embed_dim // head_dim,
        encoder_global_attn_indexes=tuple(global_blocks),
        window_size=window if window is not None else 14,
        prompt_embed_dim=prompt_dim,
        mask_in_chans=int(get("prompt_encoder.mask_downscaling.3.weight").shape[0]),
        decoder_depth=len(decoder_layers),
        decoder_mlp_dim=int(get("mask_decoder.transformer.layers.0.mlp.lin1.weight").shape[0]),
        decoder_num_heads=decoder_num_heads,
        iou_head_hidden_dim=int(get("mask_decoder.iou_prediction_head.layers.0.weight").shape[0]),
    )

