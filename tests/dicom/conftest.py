"""Shared pieces of the DICOM-output tests: dciodvfy (Debian's dicom3tools) and a small grounded study."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

pytest.importorskip("highdicom")

SENTENCES = ["Rounded opacity at the right lung base.", "The heart is enlarged.", "No pleural effusion."]


def dciodvfy_errors(path) -> list[str]:
    """Every 'Error' line dciodvfy prints for the file (warnings are kept out); skips when not installed."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools)")
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="session")
def rg1_path():
    return get_testdata_file("RG1_UNCR.dcm")


@pytest.fixture(scope="session")
def rg1(rg1_path):
    return pydicom.dcmread(rg1_path)


def study_masks(shape):
    """Hand-made masks: a 100 x 150 opacity in the right base and a 400 x 500 heart."""
    opacity = np.zeros(shape, bool)
    opacity[1500:1600, 300:450] = True
    heart = np.zeros(shape, bool)
    heart[900:1300, 700:1200] = True
    return opacity, heart


def grounding(image_path, shape, ctr=0.57, image=None):
    from monai_ils.generation.findings import GroundedFinding, StudyGrounding

    opacity, heart = study_masks(shape)
    findings = [
        GroundedFinding("opacity", "positive", "tentative", ["right lung base", "right mid zone lung"], ["right lung base"],
                        opacity, sentence_index=1),
        GroundedFinding("cardiomegaly", "positive", "definitive", ["heart"], [], heart, sentence_index=2),
        GroundedFinding("effusion", "negative", "definitive", [], [], None, sentence_index=3),
    ]
    return StudyGrounding("s1", str(image_path), findings=findings, ctr=ctr, sentences=list(SENTENCES), image=image,
                          image_shape=shape)
