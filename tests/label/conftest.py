"""Shared set-up of the label-app tests: studies, a tiny ROSALIA saved in the real layout, the app under
FastAPI's TestClient (as MONAI Label's own endpoint tests do) and a real ``monailabel start_server``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.label.label_data import make_studies
from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "apps" / "ils_label"
MAX_PIXELS = 4_000_000  # admits RG1_UNCR.dcm (1955 x 1841), refuses a 2100 x 2100 upload
INSTRUCTION = "Segment the opacity in the right lung base."


GENERATION_JSON = ROOT / "bundles" / "ils_generation" / "configs" / "generation.json"


def app_conf(rosalia_path=None, grounding_bundle=None) -> dict:
    """App conf; ``grounding_bundle``: a generation-bundle config merged over the repository's generation.json."""
    conf = {"max_image_pixels": str(MAX_PIXELS), "rosalia_device": "cpu"}
    if rosalia_path:
        conf["rosalia_path"] = str(rosalia_path)
    if grounding_bundle:
        conf["grounding_bundle_config"] = f"{GENERATION_JSON},{grounding_bundle}"
    return conf


@pytest.fixture(scope="session")
def label_data(tmp_path_factory):
    from monai_ils.models.testing import build_tiny_rosalia

    root = tmp_path_factory.mktemp("label")
    data = make_studies(root)
    build_tiny_rosalia(root / "rosalia")
    data["rosalia"] = root / "rosalia"
    data["root"] = root
    return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def label_server(label_data):
    """``monailabel start_server`` on 127.0.0.1 (a free port) with the tiny model; yields its URL."""
    port = _free_port()
    conf = app_conf(label_data["rosalia"], label_data["grounding_bundle"])
    # what the `monailabel` script execs; the script itself would put the venv's parent folder first on
    # PYTHONPATH, which here is another checkout of monai_ils
    args = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(APP_DIR), "--studies", str(label_data["studies"]),
            "--host", "127.0.0.1", "--port", str(port)]
    for key, value in conf.items():
        args += ["--conf", key, value]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               MONAI_LABEL_DATASTORE_AUTO_RELOAD="false", MONAI_LABEL_TRACKING_ENABLED="false",
               MONAILABEL_PYEXE=sys.executable)
    log = open(label_data["root"] / "server.log", "wb")
    process = subprocess.Popen(args, cwd=str(label_data["root"]), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, label_data["root"] / "server.log")
        yield url
    finally:
        stop_process(process)
        log.close()


def _wait_ready(url: str, process, log_path: Path, timeout: float = 240.0) -> None:
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"monailabel server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if requests.get(f"{url}/info/", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"monailabel server did not answer within {timeout} s:\n{log_path.read_text()[-4000:]}")


def make_client(studies, conf: dict):
    """A TestClient on MONAI Label's FastAPI app for our app dir (settings as in MONAI Label's endpoint tests)."""
    from fastapi.testclient import TestClient

    from monailabel.config import settings
    from monailabel.interfaces.utils.app import clear_cache

    clear_cache()
    settings.MONAI_LABEL_APP_DIR = str(APP_DIR)
    settings.MONAI_LABEL_STUDIES = str(studies)
    settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD = False
    settings.MONAI_LABEL_TRACKING_ENABLED = False
    settings.MONAI_LABEL_APP_CONF = conf
    for key in (str(APP_DIR), str(APP_DIR / "lib")):
        if key not in sys.path:
            sys.path.append(key)
    from monailabel.app import app

    return TestClient(app)


@pytest.fixture(scope="session")
def tiny_predictor(label_data):
    from monai_ils.inference import RosaliaPredictor

    return RosaliaPredictor.from_pretrained(label_data["rosalia"], device="cpu")


@pytest.fixture(scope="session")
def expected_prediction(label_data, tiny_predictor):
    """What RosaliaPredictor says for INSTRUCTION on the small MONOCHROME1 study, loaded with LoadCXR."""
    from monai_ils.transforms import LoadCXR

    image = LoadCXR()(label_data["studies"] / "small_m1.dcm")
    return tiny_predictor.predict(image[0].numpy(), INSTRUCTION)


def dump(obj) -> str:
    return json.dumps(obj, default=str)[:2000]
