"""Shared fixtures: a tiny ROSALIA checkpoint folder and a tiny MIMIC-ILS split (written once per session)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from monai_ils.data.ils_format import ILSSample, save_mask_png, write_ils_json
from monai_ils.data.templates import render_answer, render_instruction


def write_tiny_split(folder, n_images: int = 3, size=(40, 56), seed: int = 0):
    """Images with a bright blob; per image a basic, global and lesion-inference positive and two negatives."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    lesions = ["pneumonia", "atelectasis", "edema"]
    samples = []
    for i in range(n_images):
        cy, cx = h // 2 + (i - 1) * 4, w // 3 + i * 6
        blob = ((yy - cy) / (h / 5)) ** 2 + ((xx - cx) / (w / 6)) ** 2 <= 1.0
        image = rng.normal(60, 10, size)
        image[blob] += 120
        image_path = folder / "images" / f"img{i}.png"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(image_path)
        mask_path = str(save_mask_png(blob, folder / "masks" / f"img{i}.png"))
        lesion = lesions[i % 3]
        loc = ["right lung"] if i % 2 == 0 else ["right lung base", "left lung base"]
        empty = ["left apical zone lung"]
        common = dict(split="test", study_key=f"s{i}", image_path=str(image_path))
        samples += [
            ILSSample(**common, instruction=render_instruction("basic", lesion, loc), answer=render_answer("basic", "positive", lesion, loc),
                      target=lesion, positive=True, seg_mask_path=mask_path, question_type="basic", location=loc),
            ILSSample(**common, instruction=render_instruction("global", lesion), answer=render_answer("global", "positive", lesion, loc),
                      target=lesion, positive=True, seg_mask_path=mask_path, question_type="global", location=loc),
            ILSSample(**common, instruction=render_instruction("lesion_inference", "opacity", loc),
                      answer=render_answer("lesion_inference", "tentative", locations=loc, lesion=lesion), target="opacity",
                      positive=True, seg_mask_path=mask_path, question_type="lesion_inference", location=loc, certainty="tentative", lesion=lesion),
            ILSSample(**common, instruction=render_instruction("basic", "effusion", empty), answer=render_answer("basic", "negative", "effusion", empty),
                      target="effusion", positive=False, question_type="basic", location=empty),
            ILSSample(**common, instruction=render_instruction("global", "cardiomegaly"), answer=render_answer("global", "negative", "cardiomegaly"),
                      target="cardiomegaly", positive=False, question_type="global"),
        ]
    return write_ils_json(folder / "dataset.json", samples)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine run fastest on one thread (more threads spin)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from monai_ils.models.testing import build_tiny_rosalia

    folder = tmp_path_factory.mktemp("tiny_rosalia")
    build_tiny_rosalia(folder / "model", layout="rosalia", seed=0)
    return folder / "model"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    return write_tiny_split(tmp_path_factory.mktemp("tiny_ils"))
