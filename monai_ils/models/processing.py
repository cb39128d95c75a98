"""Inputs of ROSALIA: the conversation text and the two image branches (VLM and SAM).

One object turns (image, instruction, answer) into what the model reads, so that training,
inference and the cache all prepare inputs the same way.

Conversation layout (LLaVA v1, what LISA and ROSALIA were trained with)::

    {system} USER: <im_start><image><im_end>\\n{instruction} ASSISTANT: {answer}</s>

``<image>`` is one placeholder id (``IMAGE_TOKEN_INDEX``) that the model replaces by the
projected patch features of the vision tower.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from segment_anything.utils.transforms import ResizeLongestSide

from monai_ils.models.sam import SAM_PIXEL_MEAN, SAM_PIXEL_STD
from monai_ils.transforms.intensity import cxr_image_path, scale_cxr_intensity
from monai_ils.vocab import SEG_TOKEN

IMAGE_TOKEN_INDEX = -200
"""Placeholder id of the image in ``input_ids`` (LLaVA's convention); never looked up in the embedding."""
IGNORE_INDEX = -100
IMAGE_TOKEN = "<image>"
IM_START_TOKEN = "<im_start>"
IM_END_TOKEN = "<im_end>"

# The published LISA/ROSALIA weights were trained behind LLaVA v1's system line; keep it as the
# default so that those weights see the inputs they expect (any text works for models trained here).
LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
PROCESSOR_FILE = "rosalia_processor.json"


class SegTokenError(ValueError):
    """The tokenizer does not map ``[SEG]`` to exactly one id."""


def seg_token_id(tokenizer) -> int:
    """The single id of ``[SEG]``; raises when the tokenizer splits it (a silent source of blank masks)."""
    ids = tokenizer(SEG_TOKEN, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise SegTokenError(
            f"The tokenizer splits {SEG_TOKEN!r} into {len(ids)} ids {ids}; add it with tokenizer.add_tokens({SEG_TOKEN!r})."
        )
    return int(ids[0])


def add_rosalia_tokens(tokenizer, use_im_start_end: bool = True) -> int:
    """Add ``[SEG]`` (one ordinary token, as LISA does) and the image delimiters; return the [SEG] id."""
    if SEG_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([SEG_TOKEN])
    if use_im_start_end:
        missing = [t for t in (IM_START_TOKEN, IM_END_TOKEN) if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return seg_token_id(tokenizer)


def to_rgb_uint8(image) -> np.ndarray:
    """An image file (DICOM, PNG, JPG), PIL image or array (H, W) / (H, W, C) / (1, H, W) as RGB uint8 [H, W, 3].

    Files go through the one image path of monai-ils (`cxr_image_path`: `LoadCXR`, MONOCHROME1
    inverted, then `ScaleCXRIntensity`); non-uint8 arrays get the same min-max scaling, so a DICOM, its
    8-bit PNG export and its pixel array all give the model the same contrast.
    """
    if isinstance(image, (str, os.PathLike)):
        if not Path(image).is_file():
            raise FileNotFoundError(f"{image}: image file not found.")
        image = np.asarray(_image_path()(image))
    if isinstance(image, Image.Image):
        if image.mode in ("I", "I;16", "F"):
            image = np.asarray(image)
        else:
            return np.array(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)  # channel-first input
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2 or array.dtype != np.uint8:  # greyscale (any depth) and non-uint8 colour: the one scaling
        array = scale_cxr_intensity(array).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"Expected a 2-D grey or RGB image, got an array of shape {array.shape}.")
    return np.require(array, requirements=["C", "W"])  # writable: torch.from_numpy downstream


_IMAGE_PATH = None


def _image_path():
    global _IMAGE_PATH
    if _IMAGE_PATH is None:
        _IMAGE_PATH = cxr_image_path()
    return _IMAGE_PATH


@contextmanager
def _quiet_config_warnings():
    logger = logging.getLogger("transformers.configuration_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass
class ProcessorSettings:
    """What a processor needs beyond its tokenizer and VLM image processor (saved as JSON)."""

    sam_img_size: int = 1024
    sam_pixel_mean: tuple[float, ...] = SAM_PIXEL_MEAN
    sam_pixel_std: tuple[float, ...] = SAM_PIXEL_STD
    use_im_start_end: bool = True
    system_prompt: str = LLAVA_V1_SYSTEM
    user_role: str = "USER"
    assistant_role: str = "ASSISTANT"
    model_max_length: int = 512


class RosaliaProcessor:
    """Tokenizer + VLM image processor + SAM preprocessing for one ROSALIA model."""

    def __init__(self, tokenizer, image_processor, settings: ProcessorSettings | None = None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.settings = settings or ProcessorSettings()
        self.seg_token_id = add_rosalia_tokens(tokenizer, self.settings.use_im_start_end)
        self.sam_resize = ResizeLongestSide(self.settings.sam_img_size)
        self._mean = torch.tensor(self.settings.sam_pixel_mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(self.settings.sam_pixel_std, dtype=torch.float32).view(-1, 1, 1)

    # -------------------------------------------------------------------- text
    def prompt(self, instruction: str) -> str:
        """The conversation up to the assistant's turn (what inference feeds the model)."""
        image = IMAGE_TOKEN
        if self.settings.use_im_start_end:
            image = IM_START_TOKEN + IMAGE_TOKEN + IM_END_TOKEN
        s = self.settings
        system = f"{s.system_prompt} " if s.system_prompt else ""
        return f"{system}{s.user_role}: {image}\n{instruction.strip()} {s.assistant_role}:"

    def tokenize_prompt(self, prompt: str) -> list[int]:
        """Token ids of a prompt with one ``IMAGE_TOKEN_INDEX`` where ``<image>`` stands; starts with BOS."""
        chunks = prompt.split(IMAGE_TOKEN)
        ids: list[int] = []
        for i, chunk in enumerate(chunks):
            if i > 0:
                ids.append(IMAGE_TOKEN_INDEX)
            piece = self.tokenizer(chunk, add_special_tokens=(i == 0)).input_ids if chunk or i == 0 else []
            ids.extend(piece)
        return ids

    def answer_ids(self, answer: str, eos: bool = True) -> list[int]:
        ids = self.tokenizer(" " + answer.strip(), add_special_tokens=False).input_ids
        return ids + [self.tokenizer.eos_token_id] if eos else ids

    def encode_example(self, instruction: str, answer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, labels) of one training conversation; only the answer and EOS are supervised."""
        prompt_ids = self.tokenize_prompt(self.prompt(instruction))
        answer = self.answer_ids(answer)
        input_ids = torch.tensor(prompt_ids + answer, dtype=torch.long)
        labels = torch.tensor([IGNORE_INDEX] * len(prompt_ids) + answer, dtype=torch.long)
        limit = self.settings.model_max_length
        if len(input_ids) > limit:
            raise ValueError(f"Conversation of {len(input_ids)} tokens exceeds model_max_length={limit}: {instruction!r}.")
        return input_ids, labels

    def encode_prompt(self, instruction: str, answer_prefix: str | None = None) -> torch.Tensor:
        """Prompt ids for inference; ``answer_prefix`` (e.g. "[SEG]") forces the start of the answer."""
        ids = self.tokenize_prompt(self.prompt(instruction))
        if answer_prefix:
            ids += self.answer_ids(answer_prefix, eos=False)
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids) -> str:
        """Generated answer ids as text; [SEG] is kept, EOS and padding are dropped."""
        ids = [int(i) for i in ids if int(i) >= 0 and int(i) != self.tokenizer.eos_token_id]
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        for token in (self.tokenizer.pad_token, self.tokenizer.bos_token):
            if token and token != SEG_TOKEN:
                text = text.replace(token, "")
        return " ".join(text.replace(SEG_TOKEN, f" {SEG_TOKEN} ").split())

    # -------------------------------------------------------------------- images
    def sam_input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the image inside SAM's padded square input."""
        return tuple(self.sam_resize.get_preprocess_shape(original_size[0], original_size[1], self.settings.sam_img_size))

    def sam_image(self, image) -> tuple[torch.Tensor, tuple[int, int]]:
        """SAM branch: longest side to ``sam_img_size``, normalised, zero-padded -> ([3, S, S], (h, w))."""
        rgb = to_rgb_uint8(image)
        resized = self.sam_resize.apply_image(rgb)
        x = torch.from_numpy(np.array(resized)).permute(2, 0, 1).float()
        x = (x - self._mean) / self._std
        h, w = x.shape[-2:]
        size = self.settings.sam_img_size
        return F.pad(x, (0, size - w, 0, size - h)), (int(h), int(w))

    def vlm_image(self, image) -> torch.Tensor:
        """VLM branch: the vision tower's own preprocessing -> [3, s, s]."""
        rgb = to_rgb_uint8(image)
        return self.image_processor(images=rgb, return_tensors="pt")["pixel_values"][0]

    def sam_mask(self, mask: np.ndarray) -> torch.Tensor:
        """A bool [H, W] mask resized like the SAM branch (nearest) and zero-padded -> float [S, S]."""
        h, w = self.sam_input_size(mask.shape[:2])
        pil = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255)
        resized = torch.from_numpy(np.asarray(pil.resize((w, h), Image.NEAREST)) > 127).float()
        size = self.settings.sam_img_size
        return F.pad(resized, (0, size - w, 0, size - h))

    # -------------------------------------------------------------------- persistence
    def save_pretrained(self, folder) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(folder)
        self.image_processor.save_pretrained(folder)
        (folder / PROCESSOR_FILE).write_text(json.dumps(asdict(self.settings), indent=1))
        return folder

    @classmethod
    def from_pretrained(cls, folder, **overrides) -> RosaliaProcessor:
        """Tokenizer and VLM image processor from ``folder``; settings from its JSON when present."""
        from transformers import AutoTokenizer, CLIPImageProcessor

        folder = Path(folder)
        with _quiet_config_warnings():  # AutoTokenizer peeks at config.json, whose model_type it does not know
            tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="right")
        image_processor = CLIPImageProcessor.from_pretrained(overrides.pop("image_processor_path", folder))
        data = json.loads((folder / PROCESSOR_FILE).read_text()) if (folder / PROCESSOR_FILE).exists() else {}
        data.update(overrides)
        for key in ("sam_pixel_mean", "sam_pixel_std"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(tokenizer, image_processor, ProcessorSettings(**data))
