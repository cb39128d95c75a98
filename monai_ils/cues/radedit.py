"""RadEdit counterfactuals through diffusers: DDIM inversion, then regeneration inside the edit mask.

Components, each loaded from a local folder (nothing is downloaded):

* ``unet``: RadEdit's ``UNet2DConditionModel`` (config key ``radedit_unet``; the ``unet/`` folder of
  ``microsoft/radedit``);
* ``vae``: the SDXL ``AutoencoderKL`` (config key ``radedit_vae``; ``stabilityai/sdxl-vae``);
* ``text_encoder``/``tokenizer``: BioViL-T's CXR-BERT (config key ``radedit_text_encoder``;
  ``microsoft/BiomedVLP-BioViL-T``). It is a BERT; with ``trust_remote_code=False`` (default) its
  weights are read into a plain ``transformers.BertModel`` instead of running the repository's code.
  Prompts are tokenised to 128 tokens; the last hidden state conditions the UNet.
* DDIM: linear betas, "trailing" timestep spacing, epsilon prediction.

Editing (Appendix A.3): the image, in its original intensities divided by I_max, is resized to
``size`` (512), mapped to [-1, 1] and encoded. DDIM inversion with the empty prompt records the latent
trajectory; regeneration from the inverted noise with the prompt ("No acute cardiopulmonary process",
classifier-free guidance) replaces, after every step, the latents outside the edit mask by the
inversion's latents at that step. The decoded image is resized back and the keep region is copied
from the input, so ``x - x_hat`` is exactly zero outside the lungs and heart.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from monai_ils.cues.base import (CounterfactualBackend, LazyWeights, as_mask, check_weights_file, check_weights_path, max_intensity_of,
                                 read_json_config, register_backend, to_numpy_image)

DEFAULT_PROMPT = "No acute cardiopulmonary process"
TEXT_MAX_LENGTH = 128


def load_text_encoder(path: str, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32, tokenizer_path: str | None = None):
    """BioViL-T / CXR-BERT as a transformers model and its tokenizer (from ``tokenizer_path``, default ``path``), from local folders."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or path, model_max_length=TEXT_MAX_LENGTH, trust_remote_code=trust_remote_code)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code) if trust_remote_code else None
    if trust_remote_code:
        model = AutoModel.from_pretrained(path, config=config, trust_remote_code=True, dtype=dtype)
    else:
        # CXR-BERT's config names a custom model type; its encoder is a standard BERT.
        model = BertModel.from_pretrained(path, dtype=dtype, add_pooling_layer=False)
    return model.eval(), tokenizer


@register_backend("counterfactual", "radedit")
class RadEditCounterfactual(LazyWeights, CounterfactualBackend):
    """RadEdit (see module doc).

    The folders, their weights files and configs (widths, VAE factor) are checked here without loading
    anything; the UNet, VAE, text encoder, tokenizer and scheduler load on first use
    (:class:`~monai_ils.cues.base.LazyWeights`), so a configured backend costs nothing until it edits an image.

    Args:
        unet, vae, text_encoder: local folders (config keys ``radedit_unet``, ``radedit_vae``,
            ``radedit_text_encoder``); ``tokenizer`` defaults to the text encoder's folder.
        prompt: the editing prompt. num_inference_steps: DDIM steps. guidance_scale: CFG weight.
        size: the square working size (512 for RadEdit). device, dtype: where and how to run.
    """

    name = "radedit"

    def __init__(self, unet: str | os.PathLike | None = None, vae: str | os.PathLike | None = None, text_encoder: str | os.PathLike | None = None,
                 tokenizer: str | os.PathLike | None = None, prompt: str = DEFAULT_PROMPT, num_inference_steps: int = 100,
                 guidance_scale: float = 7.5, size: int = 512, device: str = "cpu", dtype: str | torch.dtype = "float32",
                 trust_remote_code: bool = False, seed: int = 0):
        unet_help = "the RadEdit UNet folder ('unet/' of microsoft/radedit: config.json + diffusion_pytorch_model.safetensors)"
        vae_help = "the SDXL VAE folder (stabilityai/sdxl-vae: config.json + diffusion_pytorch_model.safetensors)"
        text_help = "the BioViL-T text encoder folder (microsoft/BiomedVLP-BioViL-T)"
        self.unet_path = check_weights_path(unet, "radedit_unet", unet_help)
        self.vae_path = check_weights_path(vae, "radedit_vae", vae_help)
        self.text_encoder_path = check_weights_path(text_encoder, "radedit_text_encoder", text_help)
        self.tokenizer_path = check_weights_path(tokenizer or text_encoder, "radedit_tokenizer", "the BioViL-T tokenizer files (vocab.txt, tokenizer_config.json)")
        diffusers_weights = ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin")
        check_weights_file(self.unet_path, diffusers_weights, "radedit_unet", unet_help)
        check_weights_file(self.vae_path, diffusers_weights, "radedit_vae", vae_help)
        check_weights_file(self.text_encoder_path, ("model*.safetensors", "pytorch_model*.bin"), "radedit_text_encoder", text_help)
        unet_config = read_json_config(self.unet_path, "radedit_unet", unet_help)
        vae_config = read_json_config(self.vae_path, "radedit_vae", vae_help)
        text_config = read_json_config(self.text_encoder_path, "radedit_text_encoder", text_help)
        width, cross = text_config.get("hidden_size"), unet_config.get("cross_attention_dim")
        if width != cross:
            raise ValueError(f"text encoder width {width} ({self.text_encoder_path}) does not match the UNet's cross_attention_dim {cross} ({self.unet_path}).")
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.trust_remote_code = bool(trust_remote_code)
        self.prompt, self.steps, self.guidance_scale, self.size, self.seed = prompt, int(num_inference_steps), float(guidance_scale), int(size), int(seed)
        self.vae_factor = 2 ** (len(vae_config.get("block_out_channels", (0,))) - 1)
        if self.size % self.vae_factor:
            raise ValueError(f"size {self.size} must be a multiple of the VAE's downsampling factor {self.vae_factor}.")

    lazy_attributes = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

    def _load(self) -> dict[str, Any]:
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(self.unet_path, torch_dtype=self.dtype).to(self.device).eval()
        vae = AutoencoderKL.from_pretrained(self.vae_path, torch_dtype=self.dtype).to(self.device).eval()
        text_encoder, tokenizer = load_text_encoder(self.text_encoder_path, self.trust_remote_code, self.dtype, self.tokenizer_path)
        if text_encoder.config.hidden_size != unet.config.cross_attention_dim:  # a remote-code config may differ from config.json
            raise ValueError(f"text encoder width {text_encoder.config.hidden_size} does not match the UNet's cross_attention_dim {unet.config.cross_attention_dim}.")
        scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                                  set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon", timestep_spacing="trailing")
        return {"unet": unet, "vae": vae, "text_encoder": text_encoder.to(self.device), "tokenizer": tokenizer, "scheduler": scheduler}

    @torch.no_grad()
    def encode_text(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer([prompt], padding="max_length", truncation=True, max_length=TEXT_MAX_LENGTH, return_tensors="pt")
        out = self.text_encoder(input_ids=tokens.input_ids.to(self.device), attention_mask=tokens.attention_mask.to(self.device), output_hidden_states=True)
        hidden = getattr(out, "last_hidden_state", None)
        return (hidden if hidden is not None else out.hidden_states[-1]).to(self.dtype)

    def _eps(self, latents: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None) -> torch.Tensor:
        if uncond is None:
            return self.unet(latents, t, encoder_hidden_states=cond).sample
        both = self.unet(torch.cat([latents, latents]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
        e_uncond, e_cond = both.chunk(2)
        return e_uncond + self.guidance_scale * (e_cond - e_uncond)

    def _alpha(self, t: int) -> torch.Tensor:
        return self.scheduler.alphas_cumprod[t] if t >= 0 else self.scheduler.final_alpha_cumprod

    @torch.no_grad()
    def edit(self, pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``pixels`` [1, 3, S, S] in [-1, 1], ``mask`` [1, 1, S, S] (1 = edit) -> edited pixels, same range."""
        self.scheduler.set_timesteps(self.steps, device=self.device)
        timesteps = self.scheduler.timesteps  # descending
        latents = self.vae.encode(pixels).latent_dist.mean * self.vae.config.scaling_factor
        m = F.interpolate(mask, size=latents.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
        empty, cond = self.encode_text(""), self.encode_text(self.prompt)
        # DDIM inversion (deterministic), recording the latents after each step, from t=0 upwards.
        trajectory = [latents]
        z = latents
        ascending = list(reversed(timesteps.tolist()))
        previous = -1
        for t in ascending:
            eps = self._eps(z, torch.tensor(t, device=self.device), empty, None)
            a_prev, a_t = self._alpha(previous), self._alpha(t)
            x0 = (z - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
            z = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps
            trajectory.append(z)
            previous = t
        # Regeneration with the prompt; the keep region follows the inversion trajectory.
        for i, t in enumerate(timesteps.tolist()):
            eps = self._eps(z, torch.tensor(t, device=self.device), cond, empty if self.guidance_scale != 1.0 else None)
            z = self.scheduler.step(eps, t, z).prev_sample
            keep = trajectory[len(timesteps) - 1 - i]
            z = m * z + (1 - m) * keep
        return self.vae.decode(z / self.vae.config.scaling_factor).sample.clamp(-1, 1)

    def __call__(self, image: Any, region: np.ndarray | None = None, max_intensity: float | None = None) -> np.ndarray:
        array = to_numpy_image(image)
        i_max = max_intensity_of(image, max_intensity)
        if region is None:
            raise ValueError("RadEdit needs an edit region (lungs and heart); run an anatomy backend first.")
        keep_edit = as_mask(region, "edit region", array.shape)
        h, w = array.shape
        x = torch.as_tensor(np.clip(array / i_max, 0, 1), dtype=torch.float32)[None, None]
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True) * 2 - 1
        mask = F.interpolate(torch.as_tensor(keep_edit, dtype=torch.float32)[None, None], size=(self.size, self.size), mode="nearest")
        edited = self.edit(x.repeat(1, 3, 1, 1).to(self.device, self.dtype), mask.to(self.device, self.dtype))
        grey = ((edited.float().mean(1, keepdim=True) + 1) / 2).clamp(0, 1)
        back = F.interpolate(grey.cpu(), size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy() * i_max
        out = np.where(keep_edit, back, array)
        return out[None].astype(np.float32)
