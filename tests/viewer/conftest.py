"""The whole path a user takes: Orthanc (Debian) with the sample CR → our MONAI Label app with a tiny random
ROSALIA, served with the viewer through ``--uvicorn_app apps.ils_label.serve:app`` → headless Chromium.

Skipped, with the reason printed, only when Chromium or its driver is not installed (CI installs them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.label.conftest import _wait_ready  # the label tests' bounded wait for /info/
from tests.support.orthanc import OrthancServer, free_port, orthanc_unavailable_reason
from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "apps" / "ils_label"
VIEWER_DIR = APP_DIR / "viewer"
VIEWER_DIST = VIEWER_DIR / "dist"
SCREENSHOTS = Path(os.environ.get("ILS_VIEWER_SCREENSHOTS", ROOT / "outputs" / "viewer_screenshots"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def pytest_collection_modifyitems(config, items):
    missing = [name for name, found in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER)) if not found]
    if not missing:
        return
    reason = f"the browser test needs Debian's {' and '.join(missing)} (apt-get install chromium chromium-driver); .ci/run installs them"
    print(f"\nSKIPPING tests/viewer: {reason}")
    for item in items:
        if "tests/viewer" in str(item.fspath).replace(os.sep, "/") and "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=reason))


def _viewer_sources_newer_than_build() -> bool:
    stamp = VIEWER_DIST / "ils" / "VERSION.json"
    if not stamp.exists():
        return True
    built = stamp.stat().st_mtime
    sources = [VIEWER_DIR / "build.mjs", VIEWER_DIR / "package.json", *(VIEWER_DIR / "src").rglob("*.ts*")]
    return any(p.stat().st_mtime > built for p in sources)


@pytest.fixture(scope="session")
def viewer_build() -> Path:
    """The assembled viewer; built here (as ``make viewer`` does) when missing or older than its sources."""
    if _viewer_sources_newer_than_build():
        subprocess.run(["make", "viewer"], cwd=ROOT, check=True, timeout=600)
    assert (VIEWER_DIST / "index.html").is_file() and (VIEWER_DIST / "ils" / "extension.js").is_file()
    return VIEWER_DIST


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("viewer")


@pytest.fixture(scope="session")
def orthanc(work):
    """Orthanc on 127.0.0.1 with RG1_UNCR.dcm (the sample PA chest CR) uploaded."""
    reason = orthanc_unavailable_reason()
    if reason:  # a failure, not a skip: CI installs Orthanc, and the browser test is what item 3 asks for
        pytest.fail(f"{reason}; .ci/run installs it")
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    (work / "orthanc").mkdir()
    with OrthancServer(workdir=str(work / "orthanc")) as server:
        server.upload(Path(path))
        server.study_uid = str(ds.StudyInstanceUID)
        server.series_uid = str(ds.SeriesInstanceUID)
        server.image_shape = (int(ds.Rows), int(ds.Columns))
        yield server


@pytest.fixture(scope="session")
def tiny_rosalia(work) -> Path:
    from monai_ils.models.testing import build_tiny_rosalia

    build_tiny_rosalia(work / "rosalia")
    return work / "rosalia"


# The thresholds the generation bundle uses for its bundled sample (generation.json 'sample_thresholds'), set over
# the bundle's 'thresholds' node by app conf: with the defaults (meant for MIMIC-CXR) the classical cue backends
# ground none of RG1_UNCR's opacities.
SAMPLE_THRESHOLDS = json.loads((ROOT / "bundles" / "ils_generation" / "configs" / "generation.json").read_text())["sample_thresholds"]


@pytest.fixture(scope="session")
def ils_server(work, orthanc, tiny_rosalia, viewer_build):
    """``monailabel start_server`` on the Orthanc DICOMweb URL with our ASGI wrapper; yields its URL."""
    port = free_port()
    args = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(APP_DIR), "--studies", orthanc.dicomweb_url,
            "--host", "127.0.0.1", "--port", str(port), "--uvicorn_app", "apps.ils_label.serve:app"]
    conf = {"rosalia_path": str(tiny_rosalia), "rosalia_device": "cpu", "dcmqi_download": "false",
            "grounding#thresholds": json.dumps(SAMPLE_THRESHOLDS)}
    for key, value in conf.items():
        args += ["--conf", key, value]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               MONAI_LABEL_DICOMWEB_SEARCH_FILTER=json.dumps({"Modality": "CR"}), MONAI_LABEL_TRACKING_ENABLED="false",
               MONAI_LABEL_DATASTORE_AUTO_RELOAD="false", MONAILABEL_PYEXE=sys.executable, ILS_VIEWER_DIR=str(viewer_build))
    log_path = work / "server.log"
    log = open(log_path, "wb")
    # the repository root as working directory: that is where 'apps.ils_label.serve' is importable from
    process = subprocess.Popen(args, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log_path)
        yield url
    finally:
        stop_process(process)
        log.close()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium through its own chromedriver (no browser download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1600,1000", "--force-device-scale-factor=1",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
