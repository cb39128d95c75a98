import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_ils.data.sample import sample_cxr_path
from monai_ils.transforms import LoadCXR
from monai_ils.transforms.intensity import ScaleCXRIntensity, ScaleCXRIntensityd, cxr_image_path


def _small_monochrome1_dicom(tmp_path):
    ds = pydicom.dcmread(sample_cxr_path())
    small = ds.pixel_array[::16, ::16].copy()
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    path = tmp_path / "small.dcm"
    ds.save_as(path)
    return path, small


def test_hand_computed_values_and_metadata_kept():
    image = MetaTensor(torch.tensor([[[100.0, 200.0], [300.0, 1100.0]]]), meta={"max_intensity": 4095.0, "study_id": "s"})
    out = ScaleCXRIntensity()(image)
    # (v - 100) / 1000 * 255: 0, 25.5 -> 26 (half to even gives 26), 51, 255
    assert out.dtype == torch.uint8 and out.tolist() == [[[0, 26], [51, 255]]]
    assert out.meta["study_id"] == "s" and out.meta["max_intensity"] == 255.0
    flat = ScaleCXRIntensity(dtype=np.float32)(np.full((1, 3, 3), 7.0))
    assert flat.dtype == np.float32 and not flat.any()  # a constant image is black, not NaN


def test_dictionary_form_scales_each_key_on_its_own():
    d = ScaleCXRIntensityd(["a", "b"])({"a": np.array([[0.0, 10.0]]), "b": np.array([[5.0, 6.0]]), "c": 1})
    assert d["a"].tolist() == [[0, 255]] and d["b"].tolist() == [[0, 255]] and d["c"] == 1


def test_dicom_read_through_the_image_path_is_inverted_min_max(tmp_path):
    path, raw = _small_monochrome1_dicom(tmp_path)
    out = np.asarray(cxr_image_path()(path))[0]
    inverted = 32767.0 - raw.astype(np.float64)  # MONOCHROME1 with 15 bits stored
    expected = np.round((inverted - inverted.min()) / (inverted.max() - inverted.min()) * 255)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))


def test_png_export_read_back_gives_the_same_pixels(tmp_path):
    path, _ = _small_monochrome1_dicom(tmp_path)
    from_dicom = np.asarray(cxr_image_path()(path))[0]
    Image.fromarray(from_dicom).save(tmp_path / "export.png")
    from_png = np.asarray(cxr_image_path()(tmp_path / "export.png"))[0]
    np.testing.assert_array_equal(from_png, from_dicom)
    assert LoadCXR()(tmp_path / "export.png").meta["bits_stored"] == 8
