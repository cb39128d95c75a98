"""Values from bundle configs and their command lines, checked where they are used.

``python -m monai.bundle run --export_images false`` hands the config the *string* ``"false"`` (Fire only
turns ``False``/``True`` into booleans), which Python treats as true. Our configs therefore read every
on/off setting through :func:`as_bool`: ``true/false/1/0`` in any case (and real booleans) are accepted,
anything else is refused with the setting's name.
"""

from __future__ import annotations

__all__ = ["as_bool", "as_bool_or_auto", "one_of", "TRUE_WORDS", "FALSE_WORDS"]

TRUE_WORDS = ("true", "1")
FALSE_WORDS = ("false", "0")


def as_bool(value, key: str) -> bool:
    """``value`` as a bool; raises ValueError naming ``key`` for anything but true/false/1/0 (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"{key} must be true or false (also 1/0, any case), got {value!r}.")


def as_bool_or_auto(value, key: str):
    """``"auto"`` (any case), else ``value`` as a bool like :func:`as_bool`; raises ValueError naming ``key``."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return as_bool(value, key)
    except ValueError:
        raise ValueError(f"{key} must be auto, true or false (also 1/0, any case), got {value!r}.") from None


def one_of(value, choices, key: str) -> str:
    """``value`` (any case, stripped) if it is one of ``choices``; raises ValueError naming ``key`` and the choices,
    so that a typo (``--executor rey``) is refused instead of silently meaning the default."""
    word = value.strip().lower() if isinstance(value, str) else value
    if word not in tuple(choices):
        raise ValueError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}.")
    return word
