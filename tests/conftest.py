"""Fixtures shared across test areas."""

import pytest
import torch

torch.set_num_threads(1)  # tiny models on a shared 2-core machine: one thread avoids spin contention


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(model, processor, folder) of a tiny ROSALIA saved and reloaded in our layout."""
    from monai_ils.models.testing import build_tiny_rosalia

    return build_tiny_rosalia(tmp_path_factory.mktemp("tiny_rosalia"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny MIMIC-ILS dataset folder (images, masks, dataset JSON)."""
    from monai_ils.models.testing import write_tiny_ils_dataset

    return write_tiny_ils_dataset(tmp_path_factory.mktemp("tiny_ils"))

# A throw-away Orthanc (DICOMweb) for any test folder; skips with the reason when Orthanc is not installed.
from tests.support.orthanc import orthanc_server  # noqa: E402,F401  (pytest fixture)
