"""LoadCXR on the real RG1_UNCR.dcm and on files we write: MONOCHROME1, I_max, view check, corrupt input."""

import numpy as np
import pydicom
import pytest
from PIL import Image

from monai_ils.data.sample import sample_cxr_path
from monai_ils.transforms import CXRLoadError, FrontalViewError, LoadCXR, LoadCXRd


@pytest.fixture(scope="module")
def sample():
    return LoadCXR()(sample_cxr_path())


def test_real_cxr_shape_and_metadata(sample):
    assert tuple(sample.shape) == (1, 1955, 1841) and str(sample.dtype) == "torch.float32"
    meta = sample.meta
    assert meta["photometric_interpretation"] == "MONOCHROME1" and meta["bits_stored"] == 15
    assert meta["max_intensity"] == 2**15 - 1 and meta["view_position"] == "PA" and meta["is_frontal"] is True
    assert meta["study_id"].startswith("1.3.6.1.4.1.5962") and meta["image_id"] != meta["study_id"]
    assert meta["spacing"] == (1.0, 1.0)  # the file's PixelSpacing is 0\0: the default is used
    assert float(sample.max()) <= meta["max_intensity"]


def test_monochrome1_is_inverted_lungs_dark_bones_bright(sample):
    image = np.asarray(sample[0])
    h, w = image.shape
    right_lung = image[int(0.25 * h):int(0.45 * h), int(0.15 * w):int(0.30 * w)]
    spine = image[int(0.25 * h):int(0.45 * h), int(0.47 * w):int(0.52 * w)]
    assert np.median(right_lung) < np.median(spine) - 3000
    raw = pydicom.dcmread(sample_cxr_path()).pixel_array
    np.testing.assert_array_equal(image, 32767 - raw.astype(np.float32))


def _write_dicom(tmp_path, view):
    ds = pydicom.dcmread(sample_cxr_path())
    ds.ViewPosition = view
    small = ds.pixel_array[::8, ::8].copy()
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    path = tmp_path / f"{view}.dcm"
    ds.save_as(path)
    return path


def test_lateral_view_is_flagged_or_rejected(tmp_path):
    path = _write_dicom(tmp_path, "LL")
    image = LoadCXR()(path)
    assert image.meta["is_frontal"] is False and image.shape[1:] == (245, 231)
    with pytest.raises(FrontalViewError, match="view position 'LL' is not frontal"):
        LoadCXR(frontal_check="raise")(path)
    assert LoadCXR(frontal_check="raise")(_write_dicom(tmp_path, "AP")).meta["is_frontal"] is True


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"DICM" + bytes(200))
    with pytest.raises(CXRLoadError, match="broken.dcm: not a readable DICOM image") as error:
        LoadCXR()(bad)
    # the cause in one line, not MONAI's list of every reader it tried with their tracebacks
    message = str(error.value)
    assert "InvalidDicomError" in message and "Traceback" not in message and "\n" not in message
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(CXRLoadError, match=r"broken.png: not a readable image \(.+\)\.$") as error:
        LoadCXR()(tmp_path / "broken.png")
    assert "cannot identify image file" in str(error.value) and "Traceback" not in str(error.value)
    with pytest.raises(CXRLoadError, match="nothere.png: file not found"):
        LoadCXR()(tmp_path / "nothere.png")


def test_png_and_jpg(tmp_path):
    grey = (np.arange(30 * 20).reshape(30, 20) % 256).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "a.png")
    image = LoadCXR()(tmp_path / "a.png")
    assert image.shape == (1, 30, 20) and image.meta["max_intensity"] == 255 and image.meta["is_frontal"] is None
    np.testing.assert_array_equal(np.asarray(image[0]), grey)
    deep = (np.arange(30 * 20).reshape(30, 20) * 100).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "b.png")
    assert LoadCXR()(tmp_path / "b.png").meta["max_intensity"] == 65535
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "c.jpg", quality=100)
    rgb = LoadCXR()(tmp_path / "c.jpg")
    assert rgb.shape == (1, 30, 20) and np.abs(np.asarray(rgb[0]) - grey).max() <= 3


def test_dictionary_form_takes_view_and_ids_from_the_data(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    out = LoadCXRd(frontal_check="raise")({"image": tmp_path / "x.png", "view_position": "ap", "study_id": "s9"})
    assert out["image"].meta["view_position"] == "AP" and out["image"].meta["study_id"] == "s9"
    with pytest.raises(FrontalViewError):
        LoadCXRd(frontal_check="raise")({"image": tmp_path / "x.png", "view_position": "LATERAL"})


# ---------------------------------------------------------------------------------------------------
# read by content, each bitmap mode explicitly (issue 15 item 6)
# ---------------------------------------------------------------------------------------------------
def test_grey_alpha_png_reads_the_grey_channel_only(tmp_path):
    grey = (np.arange(12 * 10).reshape(12, 10) * 2 % 256).astype(np.uint8)
    alpha = np.full_like(grey, 255)
    alpha[:, :5] = 0  # half transparent: averaging it in would darken that half by ~half
    Image.fromarray(np.stack([grey, alpha], -1), mode="LA").save(tmp_path / "la.png")
    image = LoadCXR()(tmp_path / "la.png")
    assert image.shape == (1, 12, 10) and image.meta["max_intensity"] == 255
    np.testing.assert_array_equal(np.asarray(image[0]), grey)
    Image.fromarray(np.stack([grey, grey, grey, alpha], -1), mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(np.asarray(LoadCXR()(tmp_path / "rgba.png")[0]), grey)


def test_tiff_8_and_16_bit_get_their_own_i_max(tmp_path):
    grey = (np.arange(30 * 20).reshape(30, 20) % 256).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "a.tif")
    image = LoadCXR()(tmp_path / "a.tif")
    assert image.meta["max_intensity"] == 255 and image.meta["bits_stored"] == 8
    np.testing.assert_array_equal(np.asarray(image[0]), grey)
    deep = (np.arange(30 * 20).reshape(30, 20) * 100).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "b.tiff")
    image = LoadCXR()(tmp_path / "b.tiff")
    assert image.meta["max_intensity"] == 65535
    np.testing.assert_array_equal(np.asarray(image[0]), deep)


def test_dicom_named_png_is_read_as_dicom_with_monochrome1_inversion(tmp_path):
    disguised = tmp_path / "x.png"
    disguised.write_bytes(_write_dicom(tmp_path, "PA").read_bytes())
    image = LoadCXR()(disguised)
    raw = pydicom.dcmread(disguised).pixel_array
    assert image.meta["photometric_interpretation"] == "MONOCHROME1" and image.meta["max_intensity"] == 2**15 - 1
    np.testing.assert_array_equal(np.asarray(image[0]), 32767 - raw.astype(np.float32))
    # and a PNG without a suffix is still a PNG
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / "plain.png")
    (tmp_path / "nosuffix").write_bytes((tmp_path / "plain.png").read_bytes())
    assert LoadCXR()(tmp_path / "nosuffix").meta["max_intensity"] == 255


def test_grey_palette_png_reads_through_its_palette(tmp_path):
    grey = (np.arange(8 * 8).reshape(8, 8) * 3).astype(np.uint8)
    Image.fromarray(grey).convert("P").save(tmp_path / "p.png")  # PIL's default palette, grey entries kept
    pil = Image.open(tmp_path / "p.png")
    expected = np.asarray(pil.convert("RGB"))[..., 0]
    assert pil.mode == "P"
    np.testing.assert_array_equal(np.asarray(LoadCXR()(tmp_path / "p.png")[0]), expected)


@pytest.mark.parametrize("mode, reason", [("1", "1-bit"), ("F", "32-bit float"), ("CMYK", "CMYK")])
def test_modes_without_a_faithful_grey_reading_are_refused_by_name(tmp_path, mode, reason):
    path = tmp_path / ("x.tif" if mode in ("F", "CMYK") else "x.png")
    Image.fromarray(np.zeros((6, 6), np.uint8)).convert(mode).save(path)
    with pytest.raises(CXRLoadError, match=rf"x\.(png|tif): .*{reason}.* is not a greyscale radiograph"):
        LoadCXR()(path)


def test_colour_palette_and_multi_frame_tiff_are_refused(tmp_path):
    colour = Image.new("P", (4, 4))
    colour.putpalette([255, 0, 0] * 256)
    colour.save(tmp_path / "c.png")
    with pytest.raises(CXRLoadError, match="c.png: colour palette image"):
        LoadCXR()(tmp_path / "c.png")
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (1, 2)]
    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(CXRLoadError, match="m.tif: 2 frames in one TIFF file"):
        LoadCXR()(tmp_path / "m.tif")
