"""A throw-away Orthanc PACS for tests: Debian's ``Orthanc`` with the DICOMweb plugin, on loopback.

Every server gets its own temporary folder (configuration, storage, index, log), a free HTTP port, no
DICOM port, no remote access and no authentication; it is stopped by its PID. Use the ``orthanc_server``
fixture from any test folder by importing it in that folder's ``conftest.py``::

    from tests.support.orthanc import orthanc_server  # noqa: F401  (pytest fixture)

Set ``ORTHANC_BIN`` / ``ORTHANC_DICOMWEB_PLUGIN`` to use binaries outside Debian's locations.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import stop_process

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_PLUGIN_GLOBS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so",
)


def find_orthanc() -> str | None:
    """The Orthanc executable (``ORTHANC_BIN``, then ``PATH``, then Debian's ``/usr/sbin/Orthanc``)."""
    for candidate in (os.environ.get("ORTHANC_BIN"), shutil.which("Orthanc"), "/usr/sbin/Orthanc"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_dicomweb_plugin() -> str | None:
    """The DICOMweb plugin library (``ORTHANC_DICOMWEB_PLUGIN``, Debian's paths, then ``dpkg -L``)."""
    explicit = os.environ.get("ORTHANC_DICOMWEB_PLUGIN")
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    for pattern in _PLUGIN_GLOBS:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    try:
        listing = subprocess.run(
            ["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    libs = [line for line in listing.splitlines() if "libOrthancDicomWeb.so" in line and os.path.isfile(line)]
    return libs[0] if libs else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OrthancServer:
    """One Orthanc process; ``url`` is its REST root, ``dicomweb_url`` its DICOMweb root."""

    def __init__(self, binary: str | None = None, plugin: str | None = None, workdir: str | None = None):
        self.binary = binary or find_orthanc()
        self.plugin = plugin or find_dicomweb_plugin()
        if not self.binary:
            raise FileNotFoundError("Orthanc executable not found (install Debian's 'orthanc' or set ORTHANC_BIN)")
        if not self.plugin:
            raise FileNotFoundError(
                "Orthanc DICOMweb plugin not found (install Debian's 'orthanc-dicomweb' or set ORTHANC_DICOMWEB_PLUGIN)"
            )
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="orthanc-test-"))
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def log_path(self) -> Path:
        return self.workdir / "orthanc.log"

    def config(self) -> dict:
        return {
            "Name": "monai-ils-test",
            "HttpPort": self.port,
            "HttpServerEnabled": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "HttpThreadsCount": 4,
            "ConcurrentJobs": 1,
            "SaveJobs": False,
            "Plugins": [self.plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        }

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "OrthancServer":
        """Start and wait (bounded) until ``/system`` answers; a failed start raises with the log's tail."""
        self.port = free_port()
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [self.binary, str(config_path)],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                system = self.get_json("/system", timeout=2)
                if "dicom-web" in json.dumps(self.get_json("/plugins", timeout=2)):
                    self.system = system
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"Orthanc did not answer /system within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the process by PID (kill after a bounded wait) and remove an owned work folder."""
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, STOP_TIMEOUT_S)
        self.process = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "OrthancServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- REST helpers -------------------------------------------------------------------------------
    def request(self, method: str, path: str, data: bytes | None = None, headers: dict | None = None,
                timeout: float = 30) -> bytes:
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback test server)
            return resp.read()

    def get_json(self, path: str, timeout: float = 30):
        return json.loads(self.request("GET", path, timeout=timeout))

    def upload(self, dicom: str | os.PathLike | bytes) -> dict:
        """Store one DICOM file (path or bytes) through Orthanc's REST ``POST /instances``."""
        payload = dicom if isinstance(dicom, bytes) else Path(dicom).read_bytes()
        answer = self.request("POST", "/instances", data=payload,
                              headers={"Content-Type": "application/dicom"})
        return json.loads(answer)

    def instances(self) -> list[str]:
        return self.get_json("/instances")


def orthanc_unavailable_reason() -> str | None:
    """Why no Orthanc can be started here (None when both the server and the DICOMweb plugin exist)."""
    if not find_orthanc():
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if not find_dicomweb_plugin():
        return "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


@pytest.fixture(scope="session")
def orthanc_server():
    """A running Orthanc with DICOMweb for the whole session (skips, with the reason, when not installed)."""
    reason = orthanc_unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = OrthancServer().start()
    try:
        yield server
    finally:
        server.stop()
