"""Secrets. Every process run of the reliability tests (fault matrix, kill and resume, bad input,
malformed answers, rate limits) logs at DEBUG to stderr and to log files and is scanned there
for credentials, Authorization values and pre-signed URL signatures (`pipeline_support.leaks`).
Here: the scan itself can fail, any log handler and an uncaught exception are masked, plain
http to a non-loopback host is refused, and credentials reach no host but the configured one."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from optouts_providers.checkmarket.client import CheckMarketClient
from optouts_providers.http import InsecureURLError
from optouts_providers.optizmo.client import OptizmoClient
from optouts_providers.slicktext.client import SlickTextLegacyClient, SlickTextV2Client
from optouts_sandbox import credentials as C
from optouts_sandbox.server import SandboxHTTPServer
from tests.pipeline_support import SECRETS, leaks, run_pipeline, signatures
from tests.sandbox_support import control, missing_from_union, running_sandbox
from tests.target_support import TARGET_BIN, encode, new_emails, stream_messages


def test_the_scan_finds_what_it_looks_for():
    basic = base64.b64encode(f"{C.SLICKTEXT_PUBLIC_KEY}:{C.SLICKTEXT_PRIVATE_KEY}".encode())
    for secret in [*SECRETS, basic.decode()]:
        assert leaks(f"... Authorization: {secret} ...") == [secret]
    assert leaks("GET /x?Signature=s1gn4tur3 HTTP/1.1", ["s1gn4tur3"]) == ["s1gn4tur3"]
    assert leaks("nothing to see") == []


def test_any_log_handler_and_an_uncaught_exception_are_masked(tmp_path):
    script = f"""
import logging, sys
from optouts_providers.redact import install_log_redaction, register_secret
register_secret({C.OPTIZMO_API_KEY!r})
install_log_redaction()
wire = logging.getLogger("some.library")
wire.setLevel(logging.DEBUG)
wire.addHandler(logging.FileHandler({str(tmp_path / "wire.log")!r}))
wire.debug('"GET /storage/x?Expires=1&Signature=abcdef123 HTTP/1.1" 200')
wire.debug("headers: %s", {{"Authorization": "Bearer {C.OPTIZMO_API_KEY}"}})
raise RuntimeError("failed with key {C.OPTIZMO_API_KEY} and Signature=abcdef123")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    logged = (tmp_path / "wire.log").read_text()
    assert result.returncode == 1 and "RuntimeError: failed with key ***" in result.stderr
    assert "Signature=***" in logged and "'Authorization': '***" in logged
    for text in (logged, result.stderr):
        assert C.OPTIZMO_API_KEY not in text and "abcdef123" not in text


# -- plain http -------------------------------------------------------------------------------
INSECURE = "http://api.example.com"


@pytest.mark.parametrize(
    "build",
    [
        lambda: CheckMarketClient(INSECURE, C.CHECKMARKET_MASTER_KEY, C.CHECKMARKET_KEY),
        lambda: SlickTextLegacyClient(INSECURE, C.SLICKTEXT_PUBLIC_KEY, C.SLICKTEXT_PRIVATE_KEY),
        lambda: SlickTextV2Client(INSECURE, C.SLICKTEXT_V2_API_KEY, 1),
        lambda: OptizmoClient(INSECURE, C.OPTIZMO_API_KEY),
        lambda: OptizmoClient(
            "https://api.optizmo.com", C.OPTIZMO_API_KEY, collect_base_url=INSECURE
        ),
    ],
)
def test_every_client_refuses_plain_http_to_a_non_loopback_host(build):
    with pytest.raises(InsecureURLError, match=r"refusing http URL to host 'api\.example\.com'"):
        build()


def test_the_target_refuses_plain_http_before_sending_anything(tmp_path):
    config = {
        "checkmarket": {
            "base_url": INSECURE,
            "master_key": C.CHECKMARKET_MASTER_KEY,
            "key": C.CHECKMARKET_KEY,
        }
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = subprocess.run(
        [str(TARGET_BIN), "--config", str(tmp_path / "config.json")],
        input=encode(stream_messages("crm_people", [{"email": e} for e in new_emails(2)])),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "refusing http URL to host 'api.example.com'" in result.stderr
    assert leaks(result.stderr + result.stdout) == []


# -- credentials only to the configured host ---------------------------------------------------
class Recorder(ThreadingHTTPServer):
    """Another host (another origin on loopback) that pre-signed links and next links may
    point at: it records what it is sent and relays it to the sandbox."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream = upstream
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _relay(self) -> None:
        headers = {key: value for key, value in self.headers.items()}
        self.server.seen.append((self.command, self.path, headers))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        forward = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
        answer = requests.request(
            self.command, self.server.upstream + self.path, data=body, headers=forward, timeout=30
        )
        self.send_response(answer.status_code)
        for key in ("Content-Type",):
            if key in answer.headers:
                self.send_header(key, answer.headers[key])
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = _relay
    do_PUT = _relay
    do_POST = _relay


def point_links_at(server: SandboxHTTPServer, other: str) -> None:
    """Links the sandbox hands out (CheckMarket next pages, Optizmo download and upload URLs)
    name `other` as their host."""
    checkmarket: Any = server.sandbox.emulators["checkmarket"]
    checkmarket.link_base = f"{other}/checkmarket"
    optizmo: Any = server.sandbox.emulators["optizmo"]
    for name in ("_prepare_download", "_prepare_upload"):
        original = getattr(optizmo, name)

        def moved(*args: Any, _original: Any = original) -> Any:
            response = _original(*args)
            response.body = response.body.replace(server.url.encode(), other.encode())
            return response

        setattr(optizmo, name, moved)


def test_credentials_go_to_the_configured_host_only(tmp_path: Path):
    with running_sandbox(size=40) as server:
        recorder = Recorder(server.url)
        thread = threading.Thread(target=recorder.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            point_links_at(server, recorder.url)
            before = control(server, "inspect")
            run = run_pipeline(
                server,
                tmp_path,
                tap={"checkmarket": {"page_size": 5}},
                target={"optizmo": {"bulk_threshold": 0}},
            )
            after = control(server, "inspect")
        finally:
            recorder.shutdown()
            recorder.server_close()
        secrets = signatures(server)
    assert run.ok, (run.tap_stderr[-2000:], run.target_stderr[-2000:])
    assert missing_from_union(before, after) == {}
    paths = [path for _, path, _ in recorder.seen]
    # CheckMarket's next links were followed on the configured host; storage links were not.
    assert not [path for path in paths if path.startswith("/checkmarket")]
    assert any(path.startswith("/optizmo/storage/downloads/") for path in paths)
    uploads = [path for method, path, _ in recorder.seen if method == "PUT"]
    assert any(path.startswith("/optizmo/storage/uploads/") for path in uploads)
    for _, _, headers in recorder.seen:
        names = {name.lower() for name in headers}
        assert not names & {"authorization", "api_key", "x-key", "x-master-key"}, headers
        assert leaks(json.dumps(headers)) == []
    assert leaks(run.everything(), secrets) == []
