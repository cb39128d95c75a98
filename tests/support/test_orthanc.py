"""The Orthanc helper itself: it starts on loopback with DICOMweb, stores an upload, and stops by PID."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from tests.support.orthanc import OrthancServer, orthanc_unavailable_reason

pytestmark = pytest.mark.skipif(orthanc_unavailable_reason() is not None,
                                reason=orthanc_unavailable_reason() or "")


def _rg1_bytes() -> bytes:
    from pydicom.data import get_testdata_file

    with open(get_testdata_file("RG1_UNCR.dcm", download=False) or "", "rb") as handle:
        return handle.read()


def test_server_config_upload_qido_and_stop(tmp_path):
    server = OrthancServer(workdir=str(tmp_path))
    assert server.config()["RemoteAccessAllowed"] is False
    assert server.config()["DicomServerEnabled"] is False
    with server:
        pid = server.process.pid
        assert "dicom-web" in server.get_json("/plugins")
        stored = server.upload(_rg1_bytes())
        assert stored["Status"] == "Success"
        assert server.instances() == [stored["ID"]]
        req = urllib.request.Request(server.dicomweb_url + "/studies", headers={"Accept": "application/dicom+json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            studies = json.loads(resp.read())
        assert len(studies) == 1 and studies[0]["0020000D"]["Value"]
    assert server.process is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
