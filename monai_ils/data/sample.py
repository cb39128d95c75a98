"""The real chest X-ray that ships offline: RG1_UNCR.dcm from the PyPI package ``pydicom-data``."""

from __future__ import annotations

from pathlib import Path

SAMPLE_CXR_NAME = "RG1_UNCR.dcm"


def sample_cxr_path() -> Path:
    """Path of RG1_UNCR.dcm, a real PA chest CR (1955 x 1841, MONOCHROME1, 15 bits, rounded lung opacities).

    Looks inside the ``pydicom-data`` package first (no pkg_resources needed), then asks pydicom.
    """
    try:
        import data_store  # the import name of pydicom-data

        path = Path(data_store.__file__).parent / "data" / SAMPLE_CXR_NAME
        if path.is_file():
            return path
    except ImportError:
        pass
    from pydicom.data import get_testdata_file

    found = get_testdata_file(SAMPLE_CXR_NAME)
    if not found:
        raise FileNotFoundError(f"{SAMPLE_CXR_NAME} not found: install the PyPI package 'pydicom-data'.")
    return Path(found)
