"""Deterministic UIDs: the same study exported twice gets the same UIDs, so a resumed run or a second
STOW-RS replaces an object instead of duplicating it."""

from __future__ import annotations

from pydicom.uid import generate_uid


def derived_uid(*parts: object) -> str:
    return str(generate_uid(entropy_srcs=["monai-ils", *map(str, parts)]))
