"""`python -m monai_ils.report structure --executor ray`: round-robin over two real HTTP chat servers."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from monai_ils.report.cli import main as report_cli

REPORTS = [
    "FINDINGS: Right lower lobe consolidation. No effusion.",
    "FINDINGS: Mild cardiomegaly.",
    "IMPRESSION: Bibasilar atelectasis.",
    "FINDINGS: The lungs are clear.",
    " EXAMINATION: CHEST\n",  # no usable section: skipped, never sent
    "FINDINGS: Small left pleural effusion.",
    "FINDINGS: Patchy opacity at the left base.",
]
ANSWER = {"findings": []}  # a valid answer (one request per report); what the findings are is not under test here


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.requests += 1
        body = json.dumps({"id": "x", "object": "chat.completion", "model": "m", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": json.dumps(ANSWER)}, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def servers():
    started = []
    for _ in range(2):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads, server.lock, server.requests = True, threading.Lock(), 0
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def _url(server):
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_ray_structuring_round_robin_writes_what_local_writes(ray_cluster, servers, tmp_path):
    source = tmp_path / "reports.jsonl"
    source.write_text("".join(json.dumps({"id": f"r{i}", "report": text}) + "\n" for i, text in enumerate(REPORTS)))
    common = ["--backend", "http", "--model", "m", "--batch-size", "2", "--quiet", "--max-retries", "0"]
    local, distributed = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert report_cli(["structure", str(source), str(local), "--base-url", _url(servers[0]), *common]) == 0
    sent_locally = servers[0].requests
    assert sent_locally == 6
    urls = ",".join(_url(s) for s in servers)
    assert report_cli(["structure", str(source), str(distributed), "--base-url", urls, "--executor", "ray", *common]) == 0
    assert distributed.read_bytes() == local.read_bytes()
    records = [json.loads(line) for line in distributed.read_text().splitlines()]
    assert [r["id"] for r in records] == [f"r{i}" for i in range(7)] and records[0]["structurer"] == "llm"
    assert servers[0].requests - sent_locally > 0 and servers[1].requests > 0  # both endpoints served
    assert servers[0].requests - sent_locally + servers[1].requests == 6


def test_several_servers_need_the_ray_executor(servers, tmp_path):
    source = tmp_path / "reports.jsonl"
    source.write_text(json.dumps({"id": "a", "report": REPORTS[0]}) + "\n")
    urls = ",".join(_url(s) for s in servers)
    with pytest.raises(SystemExit, match="round-robin by --executor ray only"):
        report_cli(["structure", str(source), str(tmp_path / "o.jsonl"), "--backend", "http", "--base-url", urls, "--quiet"])
