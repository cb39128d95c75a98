"""Training transforms: histogram equalisation (ROSALIA equalises each training image with p = 0.5) and the
two image branches of ROSALIA, as MONAI array / dictionary transforms.

The training preprocessing is the shared image path of monai-ils (``LoadCXRd`` + ``ScaleCXRIntensityd``, the
same one generation, inference and the label app use) followed by :class:`EqualizeHistogramVariantd` and
:class:`RosaliaImageInputsd`; :func:`train_image_transform` builds it in Python, the rosalia bundle's
``train#preprocessing`` in its config.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform, RandomizableTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type
from monai.utils.type_conversion import convert_to_numpy


def equalize_histogram_uint8(image: np.ndarray) -> np.ndarray:
    """Classic 256-bin equalisation of a uint8 array (per channel for [H, W, C]), like OpenCV's equalizeHist."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"equalize_histogram_uint8 expects uint8, got {image.dtype}.")
    if image.ndim == 3:
        return np.stack([equalize_histogram_uint8(image[..., c]) for c in range(image.shape[-1])], axis=-1)
    hist = np.bincount(image.ravel(), minlength=256)
    cdf = hist.cumsum()
    cdf_min = cdf[np.nonzero(hist)[0][0]]
    total = image.size
    if total == cdf_min:  # constant image: nothing to spread
        return image.copy()
    lut = np.clip(np.round((cdf - cdf_min) / (total - cdf_min) * 255.0), 0, 255).astype(np.uint8)
    return lut[image]


class EqualizeHistogram(Transform):
    """Equalise the grey-level histogram of a uint8 image, each channel on its own; keeps the input type.

    Args:
        channel_dim: ``None`` for [H, W] or channel-last [H, W, C] arrays; ``0`` for MONAI's channel-first
            [C, H, W] (what the shared image path produces).
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, channel_dim: int | None = None):
        if channel_dim not in (None, 0, -1):
            raise ValueError(f"channel_dim must be None, 0 or -1, got {channel_dim!r}.")
        self.channel_dim = channel_dim

    def __call__(self, img):
        array = convert_to_numpy(img)
        if self.channel_dim == 0:
            if array.ndim != 3:
                raise ValueError(f"EqualizeHistogram(channel_dim=0) expects a [C, H, W] image, got shape {array.shape}.")
            out = np.stack([equalize_histogram_uint8(channel) for channel in array])
        else:
            out = equalize_histogram_uint8(array)
        return convert_to_dst_type(out, img)[0]


class RandEqualizeHistogramd(RandomizableTransform, MapTransform):
    """Dictionary form: equalise ``keys`` together with probability ``prob``."""

    backend = EqualizeHistogram.backend

    def __init__(self, keys: KeysCollection, prob: float = 0.5, channel_dim: int | None = None, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.equalize = EqualizeHistogram(channel_dim)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.equalize(d[key])
        return d


class EqualizeHistogramVariantd(MapTransform):
    """Equalise ``keys`` when ``data[variant_key]`` is 1, leave them when it is 0.

    The training dataset draws the variant from (seed, epoch, index) and puts it in the dictionary, so the
    choice is reproducible across resumes and workers and the frozen-encoder cache can hold both variants.
    """

    backend = EqualizeHistogram.backend

    def __init__(self, keys: KeysCollection = "image", variant_key: Hashable = "variant", channel_dim: int | None = 0,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.variant_key = variant_key
        self.equalize = EqualizeHistogram(channel_dim)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if self.variant_key not in d:
            raise KeyError(f"EqualizeHistogramVariantd: no {self.variant_key!r} in the data (keys {sorted(map(str, d))}).")
        variant = int(d[self.variant_key])
        if variant not in (0, 1):
            raise ValueError(f"EqualizeHistogramVariantd: {self.variant_key!r} must be 0 or 1, got {variant}.")
        if variant == 1:
            for key in self.key_iterator(d):
                d[key] = self.equalize(d[key])
        return d


class RosaliaImageInputsd(MapTransform):
    """Both image branches of ROSALIA from one uint8 image under ``keys`` ([1, H, W], [H, W] or [H, W, 3]).

    Writes ``sam_pixels`` ([3, S, S]: longest side to ``sam_img_size``, normalised, zero-padded),
    ``clip_pixels`` (the vision tower's preprocessing), ``input_size`` (the SAM branch's unpadded size)
    and ``original_size`` ((H, W) of the image), using the processor's own ``sam_image`` / ``vlm_image``.
    With several keys, outputs are prefixed ``<key>_``.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, keys: KeysCollection = "image", processor=None, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if processor is None:
            raise ValueError("RosaliaImageInputsd needs the model's processor (the bundle's @processor).")
        self.processor = processor

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        from monai_ils.models.processing import to_rgb_uint8

        d = dict(data)
        prefix = len(self.keys) > 1
        for key in self.key_iterator(d):
            rgb = to_rgb_uint8(convert_to_numpy(d[key]))
            sam_pixels, input_size = self.processor.sam_image(rgb)
            name = (lambda n: f"{key}_{n}") if prefix else (lambda n: n)
            d[name("sam_pixels")] = sam_pixels
            d[name("clip_pixels")] = self.processor.vlm_image(rgb)
            d[name("input_size")] = tuple(int(v) for v in input_size)
            d[name("original_size")] = tuple(int(v) for v in rgb.shape[:2])
        return d


def train_image_transform(processor, keys: KeysCollection = "image", variant_key: Hashable = "variant") -> Compose:
    """The training preprocessing (what the rosalia bundle's ``train#preprocessing`` holds): the shared image path
    (``LoadCXRd(frontal_check="ignore")`` + ``ScaleCXRIntensityd(uint8)``), the equalisation variant, both branches."""
    from monai_ils.transforms.intensity import ScaleCXRIntensityd
    from monai_ils.transforms.io import LoadCXRd

    return Compose([
        LoadCXRd(keys=keys, frontal_check="ignore"),
        ScaleCXRIntensityd(keys=keys, dtype=np.uint8),
        EqualizeHistogramVariantd(keys=keys, variant_key=variant_key, channel_dim=0),
        RosaliaImageInputsd(keys=keys, processor=processor),
    ])


EqualizeHistogramVariantD = EqualizeHistogramVariantDict = EqualizeHistogramVariantd
RandEqualizeHistogramD = RandEqualizeHistogramDict = RandEqualizeHistogramd
RosaliaImageInputsD = RosaliaImageInputsDict = RosaliaImageInputsd
