"""A minimal DICOMweb server (QIDO-RS series search, WADO-RS series retrieval) over a folder of DICOM files,
enough for MONAI Label's DICOMweb datastore; it runs in a thread on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pydicom

BOUNDARY = "ils-label-test-boundary"


class FakeDICOMweb:
    def __init__(self, files: list[Path]):
        self.series = {}
        for path in files:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
            self.series[str(ds.SeriesInstanceUID)] = (str(ds.StudyInstanceUID), str(ds.Modality), Path(path))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                parts = [p for p in url.path.split("/") if p]
                if parts == ["dicom-web", "series"]:
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    body = [
                        {"0020000D": {"vr": "UI", "Value": [study]}, "0020000E": {"vr": "UI", "Value": [uid]},
                         "00080060": {"vr": "CS", "Value": [modality]}}
                        for uid, (study, modality, _) in fake.series.items()
                        if query.get("SeriesInstanceUID", uid) == uid and query.get("Modality", modality) == modality
                    ]
                    return self._send(200, "application/dicom+json", json.dumps(body).encode())
                if len(parts) == 5 and parts[0] == "dicom-web" and parts[1] == "studies" and parts[3] == "series":
                    entry = fake.series.get(parts[4])
                    if entry is None:
                        return self._send(404, "text/plain", b"no such series")
                    data = entry[2].read_bytes()
                    body = (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()
                    return self._send(200, f'multipart/related; type="application/dicom"; boundary={BOUNDARY}', body)
                return self._send(404, "text/plain", b"not found")

            def _send(self, status, content_type, body):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
