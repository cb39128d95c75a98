"""ROSALIA: a LLaVA-style vision-language model whose ``[SEG]`` token prompts SAM's mask decoder.

Wiring (LISA's): CLIP patch features -> projector -> replace the ``<image>`` placeholder in the
token embeddings -> causal LM. The last-layer hidden state that predicts each ``[SEG]`` token
(the position right before it, LISA's convention, which the published weights were trained with)
goes through ``text_hidden_fcs`` (Linear(h, h), ReLU, Linear(h, 256)) and becomes the sparse
prompt of SAM's prompt encoder; the dense prompt is SAM's no-mask embedding; the mask decoder
runs with ``multimask_output=False``; masks are upsampled back to the image.

The vision tower, the projector and SAM's image and prompt encoders are frozen. Their outputs can
be computed once per image (:meth:`RosaliaModel.encode_images`) and passed back in, which is how
the frozen-encoder cache and inference avoid recomputing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel

from monai_ils.models.processing import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from monai_ils.models.sam import SamConfig, build_sam


class RosaliaConfig(PretrainedConfig):
    """Everything needed to build the model without weights (a transformers ``PretrainedConfig``).

    text_config / vision_config: ``LlamaConfig`` / ``CLIPVisionConfig`` dicts (any causal LM that
    ``AutoModelForCausalLM.from_config`` accepts works for text_config, with its ``model_type``).
    projector_type: "linear" (LLaVA v1, LISA) or "mlp2x_gelu" (LLaVA 1.5, HF LLaVA).
    A ``config.json`` written by the earlier dataclass config (same fields) reads back unchanged.
    """

    model_type = "rosalia"

    def __init__(
        self,
        text_config: dict | None = None,
        vision_config: dict | None = None,
        sam_config: dict | None = None,
        projector_type: str = "linear",
        vision_select_layer: int = -2,
        vision_select_feature: str = "patch",
        seg_token_id: int = -1,
        image_token_index: int = IMAGE_TOKEN_INDEX,
        train_mask_decoder: bool = True,
        **kwargs,
    ):
        self.text_config = dict(text_config or {})
        self.vision_config = dict(vision_config or {})
        self.sam_config = dict(sam_config) if sam_config is not None else SamConfig().to_dict()
        self.projector_type = projector_type
        self.vision_select_layer = int(vision_select_layer)
        self.vision_select_feature = vision_select_feature
        self.seg_token_id = int(seg_token_id)
        self.image_token_index = int(image_token_index)
        self.train_mask_decoder = bool(train_mask_decoder)
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if key not in kwargs and key in self.text_config:
                kwargs[key] = self.text_config[key]
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        return int(self.text_config["hidden_size"])

    @property
    def out_dim(self) -> int:
        return int(self.sam_config.get("prompt_embed_dim", 256))

    def get_text_config(self, *args, **kwargs):
        """The language model's config (what generation reads vocab size, eos and cache shapes from)."""
        from transformers import AutoConfig

        text = dict(self.text_config)
        return AutoConfig.for_model(text.pop("model_type", "llama"), **text)


@dataclass
class EncodedImages:
    """Outputs of the frozen encoders for a batch of images (what the cache stores).

    sam_embeddings: [B, C, h, w] SAM image embeddings; vision_features: [B, N, D] vision-tower patch
    features (before the projector); input_sizes: (h, w) of each image inside SAM's padded input;
    original_sizes: (H, W) of each original image.
    """

    sam_embeddings: torch.Tensor
    vision_features: torch.Tensor
    input_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return int(self.sam_embeddings.shape[0])

    def select(self, index: int) -> EncodedImages:
        return EncodedImages(
            self.sam_embeddings[index : index + 1],
            self.vision_features[index : index + 1],
            [self.input_sizes[index]],
            [self.original_sizes[index]],
        )


@dataclass
class RosaliaOutput:
    """Forward outputs.

    logits: LM logits over the expanded sequence; lm_loss: shifted CE over supervised tokens (None
    without labels); mask_logits: one [k_i, H, W] tensor per sample (k_i = number of [SEG] tokens);
    seg_positions: one LongTensor per sample with the expanded positions of its [SEG] tokens.
    """

    logits: torch.Tensor
    lm_loss: torch.Tensor | None
    mask_logits: list[torch.Tensor]
    seg_positions: list[torch.Tensor]
    seg_embeddings: list[torch.Tensor]


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise ValueError(f"Unknown projector_type {kind!r}; expected 'linear' or 'mlp2x_gelu'.")


class RosaliaForCausalLM(PreTrainedModel, GenerationMixin):
    """Vision tower + projector + causal LM (``language_model``) + SAM (``visual_model``) + ``text_hidden_fcs``.

    A transformers ``PreTrainedModel``: ``from_pretrained`` builds it on the meta device and fills it
    from safetensors (no random init of the weights), ``save_pretrained`` writes the standard layout.
    """

    config_class = RosaliaConfig
    base_model_prefix = "rosalia"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaDecoderLayer", "CLIPEncoderLayer"]
    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq"]

    def __init__(self, config: RosaliaConfig, language_model: nn.Module | None = None, vision_tower: nn.Module | None = None):
        super().__init__(config)
        from transformers import AutoModelForCausalLM, CLIPVisionConfig, CLIPVisionModel

        if language_model is None:
            language_model = AutoModelForCausalLM.from_config(config.get_text_config())
        self.language_model = language_model
        self.vision_tower = vision_tower if vision_tower is not None else CLIPVisionModel(CLIPVisionConfig(**config.vision_config))
        vision_hidden = int(self.vision_tower.config.hidden_size)
        self.mm_projector = build_projector(config.projector_type, vision_hidden, config.hidden_size)
        self.visual_model = build_sam(SamConfig.from_any(config.sam_config))
        h = config.hidden_size
        self.text_hidden_fcs = nn.ModuleList(
            [nn.Sequential(nn.Linear(h, h), nn.ReLU(inplace=True), nn.Linear(h, config.out_dim), nn.Dropout(0.0))]
        )
        self.post_init()
        self.freeze_encoders()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' loader (meta-device build, safetensors shards), then what it cannot know about:
        SAM's non-persistent pixel statistics (never in a checkpoint) and the frozen encoders."""
        model = super().from_pretrained(*args, **kwargs)
        model._restore_after_load()
        return model

    def _restore_after_load(self) -> None:
        sam_cfg = SamConfig.from_any(self.config.sam_config)
        sam = self.visual_model
        for name, values in (("pixel_mean", sam_cfg.pixel_mean), ("pixel_std", sam_cfg.pixel_std)):
            buffer = getattr(sam, name)
            setattr(sam, name, torch.tensor(list(values), dtype=torch.float32, device=buffer.device).view(-1, 1, 1))
        self.freeze_encoders()

    # ---------------------------------------------------------------- parameters
    def freeze_encoders(self) -> None:
        """Freeze what LISA/ROSALIA freeze: vision tower, projector, SAM image and prompt encoders."""
        for module in (self.vision_tower, self.mm_projector, self.visual_model):
            module.requires_grad_(False)
        self.visual_model.mask_decoder.requires_grad_(bool(self.config.train_mask_decoder))
        self.text_hidden_fcs.requires_grad_(True)

    @property
    def seg_token_id(self) -> int:
        return int(self.config.seg_token_id)

    @property
    def sam_img_size(self) -> int:
        return int(self.visual_model.image_encoder.img_size)

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def resize_token_embeddings(self, size: int, *args, **kwargs):
        out = self.language_model.resize_token_embeddings(size, *args, **kwargs)
        self.config.text_config["vocab_size"] = int(size)
        return out

    def _init_weights(self, module: nn.Module) -> None:
        """Nothing to do: a fresh model's modules initialise themselves when built, and a loaded one gets
        every weight from its checkpoint (``from_pretrained`` reports any that are missing)."""

    # ---------------------------------------------------------------- frozen encoders
    @torch.no_grad()
    def vision_features(self, clip_pixels: torch.Tensor) -> torch.Tensor:
        """Patch features of the vision tower at ``vision_select_layer`` (CLS dropped for 'patch')."""
        tower = self.vision_tower
        out = tower(clip_pixels.to(device=self.device, dtype=tower.dtype), output_hidden_states=True)
        features = out.hidden_states[self.config.vision_select_layer]
        if self.config.vision_select_feature == "patch":
            features = features[:, 1:]
        elif self.config.vision_select_feature != "cls_patch":
            raise ValueError(f"Unknown vision_select_feature {self.config.vision_select_feature!r}.")
        return features

    @torch.no_grad()
    def sam_embeddings(self, sam_pixels: torch.Tensor) -> torch.Tensor:
        """SAM image-encoder embeddings, one image at a time (ViT-H at 1024 px is memory-hungry)."""
        encoder = self.visual_model.image_encoder
        dtype = encoder.patch_embed.proj.weight.dtype
        return torch.cat([encoder(x.unsqueeze(0).to(device=self.device, dtype=dtype)) for x in sam_pixels], 0)

    @torch.no_grad()
    def encode_images(
        self, sam_pixels: torch.Tensor, clip_pixels: torch.Tensor, input_sizes: Sequence, original_sizes: Sequence
    ) -> EncodedImages:
        """Run both frozen encoders once; pass the result to :meth:`forward`, :meth:`segment` or :meth:`generate`."""
        return EncodedImages(
            self.sam_embeddings(sam_pixels),
            self.vision_features(clip_pixels),
            [tuple(int(v) for v in s) for s in input_sizes],
            [tuple(int(v) for v in s) for s in original_sizes],
        )

    # ---------------------------------------------------------------- sequence assembly
    def merge_image_features(self, input_ids, image_embeds, attention_mask=None, labels=None):
        """Replace the single image placeholder of each row by its projected patch features.

        Returns (inputs_embeds, attention_mask, labels, expanded_ids) for the expanded, right-padded
        sequences; ``expanded_ids`` holds ``image_token_index`` at image positions and -1 at padding.
        """
        embed = self.get_input_embeddings()
        placeholder = self.config.image_token_index
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        rows = []
        n_image = image_embeds.shape[1]
        for b in range(input_ids.shape[0]):
            ids, keep = input_ids[b], attention_mask[b].bool()
            ids = ids[keep]
            lab = labels[b][keep] if labels is not None else None
            where = (ids == placeholder).nonzero().flatten()
            if len(where) != 1:
                raise ValueError(f"Row {b}: expected exactly one image placeholder ({placeholder}) in input_ids, found {len(where)}.")
            t = int(where[0])
            text_embeds = embed(ids.clamp(min=0))
            parts = [text_embeds[:t], image_embeds[b].to(text_embeds.dtype), text_embeds[t + 1 :]]
            new_ids = torch.cat([ids[:t], ids.new_full((n_image,), placeholder), ids[t + 1 :]])
            new_lab = None
            if lab is not None:
                new_lab = torch.cat([lab[:t], lab.new_full((n_image,), IGNORE_INDEX), lab[t + 1 :]])
            rows.append((torch.cat(parts, 0), new_ids, new_lab))
        length = max(r[0].shape[0] for r in rows)
        hidden = rows[0][0].shape[-1]
        embeds = rows[0][0].new_zeros((len(rows), length, hidden))
        mask = torch.zeros((len(rows), length), dtype=torch.long, device=input_ids.device)
        expanded = torch.full((len(rows), length), -1, dtype=torch.long, device=input_ids.device)
        new_labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long, device=input_ids.device) if labels is not None else None
        for b, (e, i, lab) in enumerate(rows):
            n = e.shape[0]
            embeds[b, :n], mask[b, :n], expanded[b, :n] = e, 1, i
            if lab is not None:
                new_labels[b, :n] = lab
        return embeds, mask, new_labels, expanded

    def seg_hidden_positions(self, expanded_ids: torch.Tensor) -> list[torch.Tensor]:
        """Positions of the hidden states that prompt SAM: the one right before each [SEG] token."""
        return [(row == self.seg_token_id).nonzero().flatten() for row in expanded_ids]

    # ---------------------------------------------------------------- SAM decoding
    def decode_masks(self, seg_embeddings: torch.Tensor, sam_embedding: torch.Tensor) -> torch.Tensor:
        """Low-resolution mask logits [k, 1, 4h, 4w] for k prompt embeddings on one image [1, C, h, w]."""
        sam = self.visual_model
        prompt = sam.prompt_encoder
        dtype = prompt.no_mask_embed.weight.dtype
        sparse = seg_embeddings.to(dtype).unsqueeze(1)
        size = prompt.image_embedding_size
        dense = prompt.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(sparse.shape[0], -1, size[0], size[1])
        low_res, _ = sam.mask_decoder(
            image_embeddings=sam_embedding.to(dtype),
            image_pe=prompt.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return low_res

    def postprocess(self, low_res: torch.Tensor, input_size, output_size) -> torch.Tensor:
        """Upsample to SAM's input, crop the padding, resize to ``output_size`` -> [k, H, W] logits."""
        return self.visual_model.postprocess_masks(low_res.float(), tuple(input_size), tuple(output_size))[:, 0]

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        sam_pixels: torch.Tensor | None = None,
        clip_pixels: torch.Tensor | None = None,
        sam_embeddings: torch.Tensor | None = None,
        vision_features: torch.Tensor | None = None,
        input_sizes: Sequence | None = None,
        output_sizes: Sequence | None = None,
    ) -> RosaliaOutput:
        """Teacher-forced pass. Give pixels (``sam_pixels``, ``clip_pixels``) or cached encoder outputs.

        Masks come back at ``output_sizes`` (default: the SAM input size of each image, i.e. the
        resized image without padding; pass original sizes at inference).
        """
        if vision_features is None:
            if clip_pixels is None:
                raise ValueError("forward needs clip_pixels or vision_features.")
            vision_features = self.vision_features(clip_pixels)
        if sam_embeddings is None:
            if sam_pixels is None:
                raise ValueError("forward needs sam_pixels or sam_embeddings.")
            sam_embeddings = self.sam_embeddings(sam_pixels)
        device = self.device
        input_ids = input_ids.to(device)
        attention_mask = attention_mask.to(device) if attention_mask is not None else None
        labels = labels.to(device) if labels is not None else None
        image_embeds = self.mm_projector(vision_features.to(device=device, dtype=self.mm_projector_dtype))
        embeds, mask, new_labels, expanded = self.merge_image_features(input_ids, image_embeds, attention_mask, labels)
        out = self.language_model(inputs_embeds=embeds, attention_mask=mask, labels=new_labels, output_hidden_states=True, use_cache=False)
        last_hidden = out.hidden_states[-1]
        if input_sizes is None:
            s = self.sam_img_size
            input_sizes = [(s, s)] * input_ids.shape[0]
        output_sizes = output_sizes if output_sizes is not None else input_sizes
        positions = self.seg_hidden_positions(expanded)
        masks, seg_embeds = [], []
        for b, pos in enumerate(positions):
            prompts = self.text_hidden_fcs[0](last_hidden[b, (pos - 1).clamp(min=0)])
            seg_embeds.append(prompts)
            if len(pos) == 0:
                size = tuple(output_sizes[b])
                masks.append(last_hidden.new_zeros((0, *size), dtype=torch.float32))
                continue
            low_res = self.decode_masks(prompts, sam_embeddings[b : b + 1].to(device))
            masks.append(self.postprocess(low_res, input_sizes[b], output_sizes[b]))
        return RosaliaOutput(out.logits, out.loss if labels is not None else None, masks, positions, seg_embeds)

    @property
    def mm_projector_dtype(self) -> torch.dtype:
        return next(self.mm_projector.parameters()).dtype

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def segment(self, encoded: EncodedImages, prompt_ids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Teacher-forced masks: one pass over each prompt, a mask per ``[SEG]`` in it (segmentation-only
        inference when the prompt ends with ``[SEG]``; :meth:`generate` runs it on prompt + answer).

        ``prompt_ids[i]`` (from ``RosaliaProcessor.encode_prompt(instr, answer_prefix="[SEG]")``) is paired
        with image i of ``encoded``. Returns [k, H, W] mask logits at the original size per prompt.
        """
        if len(prompt_ids) != len(encoded):
            raise ValueError(f"segment: {len(prompt_ids)} prompts for {len(encoded)} images.")
        ids, attention = pad_sequences(prompt_ids, pad_value=0)
        out = self.forward(
            ids,
            attention,
            sam_embeddings=encoded.sam_embeddings,
            vision_features=encoded.vision_features,
            input_sizes=encoded.input_sizes,
            output_sizes=encoded.original_sizes,
        )
        return out.mask_logits

    @torch.no_grad()
    def generate(
        self,
        encoded: EncodedImages,
        prompt_ids: Sequence[torch.Tensor],
        max_new_tokens: int = 32,
        eos_token_id: int | None = None,
        **generate_kwargs,
    ) -> list[dict]:
        """Answer a batch of prompts with transformers' ``generate``, then segment at every generated [SEG].

        Decoding is the language model's ``GenerationMixin.generate`` on the image-merged embeddings
        (left-aligned batch), so every ``GenerationConfig`` option works: greedy by default,
        ``num_beams``, ``do_sample``/``temperature``/``top_p``, ``repetition_penalty`` ... After
        decoding, one teacher-forced :meth:`forward` over prompt + answer yields the [SEG] hidden states
        and the masks: the same SAM decode path as training and segmentation-only inference, whatever
        the decoding strategy. Returns, per prompt, ``{"output_ids": LongTensor, "mask_logits": [k, H, W]}``
        (``k`` = number of generated [SEG]; decode the ids with ``RosaliaProcessor.decode``).
        """
        if len(prompt_ids) != len(encoded):
            raise ValueError(f"generate: {len(prompt_ids)} prompts for {len(encoded)} images.")
        if int(generate_kwargs.get("num_return_sequences", 1)) != 1:
            raise ValueError("generate: num_return_sequences must be 1 (one answer, one set of masks per prompt).")
        lm_config = self.language_model.config
        eos = eos_token_id if eos_token_id is not None else getattr(lm_config, "eos_token_id", None)
        pad = getattr(lm_config, "pad_token_id", None)
        pad = pad if pad is not None else (eos if eos is not None else 0)
        device = self.device
        image_embeds = self.mm_projector(encoded.vision_features.to(device=device, dtype=self.mm_projector_dtype))
        ids, attention = pad_sequences(prompt_ids, pad_value=0)
        embeds, mask, _, _ = self.merge_image_features(ids.to(device), image_embeds, attention.to(device))
        embeds, mask = left_align(embeds, mask)
        options = {"do_sample": False, "num_beams": 1, **generate_kwargs}
        sequences = self.language_model.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad, **options
        )
        if not isinstance(sequences, torch.Tensor):  # return_dict_in_generate=True
            sequences = sequences.sequences
        answers = [_until_eos(row, eos) for row in sequences.cpu()]
        masks = self.segment(encoded, [torch.cat([p.cpu().long(), a]) for p, a in zip(prompt_ids, answers)])
        return [{"output_ids": a, "mask_logits": m} for a, m in zip(answers, masks)]


def left_align(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move right-padded rows to the right edge (left padding), as batched generation needs."""
    lengths = mask.sum(1)
    length = embeds.shape[1]
    out_embeds, out_mask = torch.zeros_like(embeds), torch.zeros_like(mask)
    for b, n in enumerate(lengths.tolist()):
        out_embeds[b, length - n :] = embeds[b, :n]
        out_mask[b, length - n :] = 1
    return out_embeds, out_mask


def _until_eos(row: torch.Tensor, eos: int | None) -> torch.Tensor:
    """Generated ids up to and including the first EOS (the rest is padding of finished rows)."""
    row = row.long()
    if eos is not None:
        hits = (row == eos).nonzero().flatten()
        if len(hits):
            return row[: int(hits[0]) + 1]
    return row


def pad_sequences(sequences: Sequence[torch.Tensor], pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D id tensors -> (ids [B, L], attention_mask [B, L])."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_value, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def mask_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Foreground where the logit is positive (LISA's threshold)."""
    return logits > 0


__all__ = [
    "EncodedImages",
    "RosaliaConfig",
    "RosaliaForCausalLM",
    "RosaliaModel",
    "RosaliaOutput",
    "build_projector",
    "mask_from_logits",
    "pad_sequences",
]


RosaliaModel = RosaliaForCausalLM
"""The name used before the model became a ``PreTrainedModel``; kept for existing code."""


CLIP_VIT_L14_224 = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=224, patch_size=14,
    projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5,
)
LLAVA_V1_7B_TEXT = dict(
    model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, max_position_embeddings=2048, rms_norm_eps=1e-6, vocab_size=32003, tie_word_embeddings=False,
    bos_token_id=1, eos_token_id=2, pad_token_id=0,
)


def lisa_7b_config(seg_token_id: int = 32000) -> RosaliaConfig:
    """The architecture of LISA-7B / ROSALIA: LLaVA v1 Llama-7B, CLIP ViT-L/14 at 224 px, SAM ViT-H.

    Build it on the meta device to inspect shapes without memory:
    ``with torch.device("meta"): RosaliaForCausalLM(lisa_7b_config())`` (or ``RosaliaForCausalLM._from_config``
    under that context); see :func:`monai_ils.models.size.model_size`.
    """
    return RosaliaConfig(
        text_config=dict(LLAVA_V1_7B_TEXT), vision_config=dict(CLIP_VIT_L14_224), sam_config=SamConfig().to_dict(), seg_token_id=seg_token_id
    )
