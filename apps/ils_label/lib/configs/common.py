"""Reading the app's ``--conf key value`` pairs: typed, with errors that name the key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


def conf_str(conf: Mapping, key: str, default: str | None = None) -> str | None:
    value = conf.get(key, default)
    return None if value is None else str(value).strip() or default


def conf_int(conf: Mapping, key: str, default: int, minimum: int = 1) -> int:
    value = conf.get(key, default)
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        raise ValueError(f"App conf '{key}' must be an integer, got {value!r}.") from None
    if number < minimum:
        raise ValueError(f"App conf '{key}' must be at least {minimum}, got {number}.")
    return number


def conf_float(conf: Mapping, key: str, default: float, minimum: float = 0.0) -> float:
    value = conf.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"App conf '{key}' must be a number, got {value!r}.") from None
    if number < minimum:
        raise ValueError(f"App conf '{key}' must be at least {minimum}, got {number}.")
    return number


def conf_bool(conf: Mapping, key: str, default: bool) -> bool:
    value = str(conf.get(key, default)).strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError(f"App conf '{key}' must be true or false, got {conf.get(key)!r}.")


@dataclass(frozen=True)
class ImageLimits:
    """What one request may send: pixels (from the header, before decoding) and file size.

    The defaults admit every chest X-ray detector in use (about 4300 x 4300 at most) and refuse
    decompression bombs long before they are decoded.
    """

    max_pixels: int = 6000 * 6000
    max_bytes: int = 100 * 2**20

    @classmethod
    def from_conf(cls, conf: Mapping) -> ImageLimits:
        return cls(
            max_pixels=conf_int(conf, "max_image_pixels", cls.max_pixels),
            max_bytes=int(conf_float(conf, "max_image_mb", cls.max_bytes / 2**20, minimum=0.001) * 2**20),
        )
