"""One image path: the same DICOM through the training dataset, the predictor and the label app's
`rosalia` task gives the model identical inputs (LoadCXR + ScaleCXRIntensity everywhere)."""

import sys
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.transforms import Compose

from monai_ils.data.ils_format import ILSSample, save_mask_png, write_ils_json
from monai_ils.data.sample import sample_cxr_path
from monai_ils.inference import RosaliaPredictor
from monai_ils.models import load_pretrained
from monai_ils.train.dataset import ILSTrainingDataset

APP_DIR = Path(__file__).resolve().parents[2] / "apps" / "ils_label"
INSTRUCTION = "Segment the pneumonia in the right lung."


def _small_dicom(tmp_path):
    ds = pydicom.dcmread(sample_cxr_path())  # MONOCHROME1, 15 bits: inversion and scaling both matter
    small = ds.pixel_array[::24, ::24].copy()
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    path = tmp_path / "study" / "image.dcm"
    path.parent.mkdir()
    ds.save_as(path)
    return path, small.shape


def _label_task_image(path):
    for key in (str(APP_DIR), str(APP_DIR / "lib")):
        if key not in sys.path:
            sys.path.append(key)
    from lib.configs.common import ImageLimits
    from lib.infers.rosalia import RosaliaInfer

    task = RosaliaInfer(None, ImageLimits())
    data = Compose(task.pre_transforms())({"image": str(path), "instruction": INSTRUCTION})
    return data["image"][0].numpy()  # what run_inferer hands to the predictor


def test_training_predictor_and_label_app_feed_identical_inputs(tiny_model_dir, tmp_path):
    dicom, shape = _small_dicom(tmp_path)
    mask = np.zeros(shape, dtype=bool)
    mask[10:20, 10:30] = True
    sample = ILSSample(split="train", study_key="s0", image_path=str(dicom), instruction=INSTRUCTION,
                       answer="It is [SEG].", target="pneumonia", positive=True,
                       seg_mask_path=str(save_mask_png(mask, tmp_path / "mask.png")), question_type="basic",
                       location=["right lung"])
    model, processor = load_pretrained(tiny_model_dir)
    dataset = ILSTrainingDataset.from_json(write_ils_json(tmp_path / "dataset.json", [sample]), processor, equalize_prob=0.0)
    item = dataset[0]  # training reads the DICOM itself: no PNG export step
    assert "error" not in item, item.get("error")

    predictor = RosaliaPredictor(model, processor)
    served = predictor.model_inputs(dicom)
    label = predictor.model_inputs(_label_task_image(dicom))
    for sam, clip, input_size, original in (served, label):
        torch.testing.assert_close(sam, item["sam_pixels"], rtol=0, atol=0)
        torch.testing.assert_close(clip, item["clip_pixels"], rtol=0, atol=0)
        assert input_size == tuple(item["input_size"]) and original == tuple(item["original_size"]) == shape

    # and the contrast is the documented one: inverted (MONOCHROME1), min-max to 0..255
    raw = pydicom.dcmread(dicom).pixel_array.astype(np.float64)
    inverted = 32767 - raw
    grey = np.round((inverted - inverted.min()) / np.ptp(inverted) * 255)
    np.testing.assert_array_equal(_label_task_image(dicom), grey.astype(np.uint8))
