"""The webhook receiver for a test: `optouts-webhooks serve` as a real process on loopback,
on a target config pointing at the sandbox."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from optouts_sandbox.server import SandboxHTTPServer
from tests.sandbox_support import BIN, PROVIDERS
from tests.target_support import target_config

WEBHOOKS_BIN = BIN / "optouts-webhooks"
TOKEN = "tok_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"
SECRET = "st-webhook-secret-5f1c"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def receiver_config(
    server: SandboxHTTPServer, tmp_path: Path, providers: tuple[str, ...] = PROVIDERS, **extra: Any
) -> dict[str, Any]:
    config = target_config(server, providers, **extra)
    config["ledger_url"] = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    config["webhooks"] = {"path_token": TOKEN, "slicktext_secret": SECRET}
    config["max_retry_wait_seconds"] = 1
    config["request_timeout_seconds"] = 3
    return config


class Receiver:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    def post(self, source: str, token: str = TOKEN, **kwargs: Any) -> requests.Response:
        return requests.post(f"{self.url}/webhooks/{source}/{token}", timeout=10, **kwargs)

    def health(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/healthz", timeout=10).json()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, test: Any, timeout: float = 20.0, what: str = "the condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = test()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached in {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


def start(config: dict[str, Any], tmp_path: Path, port: int | None = None) -> Receiver:
    port = port or free_port()
    tag = uuid.uuid4().hex[:8]
    path = tmp_path / f"webhooks-config-{tag}.json"
    path.write_text(json.dumps(config))
    log = tmp_path / f"webhooks-{tag}.log"
    process = subprocess.Popen(
        [str(WEBHOOKS_BIN), "serve", "--config", str(path), "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ},
    )
    receiver = Receiver(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise AssertionError(
                f"the receiver exited ({process.returncode}):\n{receiver.output()}"
            )
        try:
            requests.get(f"{receiver.url}/healthz", timeout=1)
            return receiver
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"the receiver did not start:\n{receiver.output()}") from None
            time.sleep(0.05)


@contextmanager
def running_receiver(
    config: dict[str, Any], tmp_path: Path, port: int | None = None
) -> Iterator[Receiver]:
    receiver = start(config, tmp_path, port)
    try:
        yield receiver
    finally:
        if receiver.process.poll() is None:
            receiver.process.terminate()
            try:
                receiver.process.wait(15)
            except subprocess.TimeoutExpired:
                receiver.process.kill()
                receiver.process.wait(5)
