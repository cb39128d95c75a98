"""The app on a hospital network (issue 15 items 17-19): no request text in the logs, destructive endpoints
refused by default, image ids only from the datastore or the request's own upload, uploads always removed."""

import json
import logging
import tempfile
from pathlib import Path

import pytest

from tests.label.conftest import INSTRUCTION, app_conf, make_client

MARKER = "ZQXMARKER4711"


@pytest.fixture(scope="module")
def client(label_data):
    return make_client(label_data["studies"], app_conf(label_data["rosalia"], label_data["grounding_bundle"]))


def infer(client, model, image, params, output="json", **kwargs):
    return client.post(f"/infer/{model}?image={image}&output={output}", data={"params": json.dumps(params)}, **kwargs)


def _uploads() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("tmp*") if p.is_file()}


def test_no_report_instruction_or_answer_text_in_the_logs(client, caplog):
    with caplog.at_level(logging.DEBUG):
        ok = infer(client, "rosalia", "small_m1", {"instruction": f"Segment the opacity in the right lung base. {MARKER}"})
        assert ok.status_code == 200, ok.text
        infer(client, "grounding", "synth", {"report": f"FINDINGS: Right lower lobe consolidation. {MARKER}"})
        infer(client, "rosalia", "small_m1", {"instruction": "   ", "note": MARKER})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert MARKER not in text
    assert "model=rosalia image=small_m1" in text and "'instruction': '" in text and "chars'" in text  # ids and sizes instead
    logs = client.get("/logs/?lines=2000")
    assert MARKER not in logs.text


@pytest.mark.parametrize("method, url", [("DELETE", "/model/rosalia"), ("PUT", "/model/rosalia"),
                                          ("DELETE", "/datastore/image?image=small_m1"), ("PUT", "/datastore/label?image=small_m1"),
                                          ("PUT", "/datastore/image?image=new")])
def test_destructive_endpoints_are_refused_by_default(client, label_data, method, url):
    before = sorted(p.name for p in Path(label_data["studies"]).rglob("*"))
    response = client.request(method, url, files={"file": ("x.png", b"\x89PNG")} if method == "PUT" else None)
    assert response.status_code == 403, response.text
    assert "disabled in this app" in response.json()["detail"] and "--conf allow_" in response.json()["detail"]
    assert sorted(p.name for p in Path(label_data["studies"]).rglob("*")) == before
    assert client.get("/datastore/?output=all").status_code == 200  # reading stays open


def test_another_requests_upload_cannot_be_used_as_an_image_id(client, label_data):
    stolen = Path(tempfile.mkstemp(prefix="tmp", suffix=".png")[1])  # what MONAI Label writes for an upload
    stolen.write_bytes((Path(label_data["studies"]) / "synth.png").read_bytes())
    try:
        first = infer(client, "rosalia", str(stolen), {"instruction": INSTRUCTION})
        # a path given as image id is either refused, or (the first, fresh use) treated as that request's upload
        # and removed at its end; either way a second request cannot read it
        second = infer(client, "rosalia", str(stolen), {"instruction": INSTRUCTION})
        assert second.status_code == 400 and "server path" in second.json()["detail"], second.text
        assert not stolen.exists() or first.status_code == 400
    finally:
        stolen.unlink(missing_ok=True)
    old = Path(tempfile.mkstemp(prefix="tmp", suffix=".png")[1])
    try:
        old.write_bytes((Path(label_data["studies"]) / "synth.png").read_bytes())
        import os

        os.utime(old, (0, 0))  # not written by a request just now
        response = infer(client, "rosalia", str(old), {"instruction": INSTRUCTION})
        assert response.status_code == 400 and old.exists()
    finally:
        old.unlink(missing_ok=True)


def test_uploads_are_removed_when_the_request_ends_also_on_error(client, tmp_path):
    before = _uploads()
    corrupt = b"this is not a DICOM file" * 100
    response = infer(client, "rosalia", "x", {"instruction": INSTRUCTION}, files={"file": ("bad.dcm", corrupt)})
    assert response.status_code == 400, response.text
    response = infer(client, "rosalia", "x", {"instruction": "  "}, files={"file": ("bad.dcm", corrupt)})
    assert response.status_code == 400, response.text
    assert _uploads() - before == set()


def test_server_with_authentication_enabled_refuses_unauthenticated_requests(label_data, tmp_path):
    """``monailabel start_server`` with MONAI Label's Keycloak authentication on (issue 15 item 16). No OpenID
    provider runs here: MONAI Label asks for a bearer token before it would contact one, so a request without a
    token is refused 401 whatever the realm; token validation itself is Keycloak's and MONAI Label's."""
    import os
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    import time

    from tests.label.conftest import APP_DIR, ROOT, _free_port
    from tests.support.processes import stop_process

    port = _free_port()
    args = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(APP_DIR), "--studies", str(label_data["studies"]),
            "--host", "127.0.0.1", "--port", str(port)]
    for key, value in app_conf(None, label_data["grounding_bundle"]).items():
        args += ["--conf", key, value]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               MONAI_LABEL_DATASTORE_AUTO_RELOAD="false", MONAI_LABEL_TRACKING_ENABLED="false", MONAILABEL_PYEXE=sys.executable,
               MONAI_LABEL_AUTH_ENABLE="true", MONAI_LABEL_AUTH_REALM_URI=f"http://127.0.0.1:{_free_port()}/realms/monailabel")
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, cwd=str(tmp_path), env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 240
            while True:  # ready when /info/ answers at all: with authentication on it answers 401
                assert process.poll() is None and time.time() < deadline, log_path.read_text()[-3000:]
                try:
                    urllib.request.urlopen(url + "/info/", timeout=5)
                    break
                except urllib.error.HTTPError:
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(1.0)
            for method, path in [("POST", "/infer/grounding?image=synth"), ("DELETE", "/model/rosalia"), ("GET", "/logs/")]:
                request = urllib.request.Request(url + path, method=method, data=b"params=%7B%7D" if method == "POST" else None)
                with pytest.raises(urllib.error.HTTPError) as error:
                    urllib.request.urlopen(request, timeout=30)
                assert error.value.code in (401, 403), (method, path, error.value.code)
                if path.startswith("/infer"):
                    assert error.value.code == 401 and error.value.headers.get("WWW-Authenticate") == "Bearer"
        finally:
            stop_process(process)


@pytest.mark.parametrize("url, data, words", [
    ("/infer/rosalia?output=json", {"params": json.dumps({"instruction": INSTRUCTION})}, ["No image given"]),
    ("/infer/rosalia?image=small_m1&output=json", {"params": "{not json"}, ["'params' is not valid JSON"]),
    ("/infer/rosalia?image=small_m1&output=json", {"params": "[1, 2]"}, ["must be a JSON object", "list"]),
    ("/infer/rosalia?image=small_m1&output=json", {"params": '"Segment"'}, ["must be a JSON object", "str"]),
], ids=["no-image", "params-not-json", "params-a-list", "params-a-string"])
def test_requests_monai_label_would_answer_with_a_bare_500_get_400_with_the_reason(client, url, data, words):
    response = client.post(url, data=data)
    assert response.status_code == 400, response.text
    for word in words:
        assert word in response.json()["detail"]
    ok = infer(client, "rosalia", "small_m1", {"instruction": INSTRUCTION, "mode": "segment"})
    assert ok.status_code == 200, ok.text


def test_symlink_in_the_studies_folder_pointing_outside_is_refused(label_data, tmp_path):
    import shutil

    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(Path(label_data["studies"]) / "synth.png", studies / "inside.png")
    outside = tmp_path / "private" / "secret.png"
    outside.parent.mkdir()
    shutil.copy(Path(label_data["studies"]) / "synth.png", outside)
    (studies / "linked.png").symlink_to(outside)
    own = make_client(studies, app_conf(label_data["rosalia"], None))
    try:
        response = infer(own, "rosalia", "linked", {"instruction": INSTRUCTION, "mode": "segment"})
        assert response.status_code == 400 and "outside the studies folder" in response.json()["detail"], response.text
        assert infer(own, "rosalia", "inside", {"instruction": INSTRUCTION, "mode": "segment"}).status_code == 200
    finally:  # the app instance is global in MONAI Label: give the other tests theirs back
        make_client(label_data["studies"], app_conf(label_data["rosalia"], label_data["grounding_bundle"]))


@pytest.mark.parametrize("dtype", ["int16", "int32", "float32"])
def test_a_result_dtype_png_cannot_hold_is_a_400_naming_it(client, dtype):
    response = infer(client, "rosalia", "small_m1", {"instruction": INSTRUCTION, "mode": "segment", "result_dtype": dtype}, output="image")
    assert response.status_code == 400, response.text
    assert f"result_dtype '{dtype}' cannot be written as PNG" in response.json()["detail"]
    nrrd = infer(client, "rosalia", "small_m1", {"instruction": INSTRUCTION, "mode": "segment", "result_dtype": dtype,
                                                  "result_extension": ".nrrd"}, output="image")
    assert nrrd.status_code == 200, nrrd.text


def test_grounding_of_a_report_with_nothing_recognised_is_422_with_the_reason(client):
    """Issue 15 item 1 in the label app: no negatives are claimed from a report the structurer did not understand."""
    french = "CONCLUSION: Opacité du lobe inférieur droit évoquant une pneumonie. Épanchement pleural gauche. Cardiomégalie."
    response = infer(client, "grounding", "synth", {"report": french})
    assert response.status_code == 422, response.text
    assert "nothing recognised in the report section" in response.json()["detail"]
