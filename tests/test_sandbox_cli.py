"""`optouts-sandbox start|stop` as a Meltano job uses them: a start that finds a sandbox
already running keeps it (and its data) and the matching stop leaves it running; the ledger
kept in the sandbox's folder lasts exactly as long as the sandbox's data (a new or reset
sandbox is a new world)."""

from __future__ import annotations

import os
import subprocess

import requests

from tests.meltano_support import free_port
from tests.sandbox_support import BIN


def _cli(folder, port, *args):
    env = {**os.environ, "OPTOUTS_SANDBOX_DIR": str(folder), "OPTOUTS_SANDBOX_PORT": str(port)}
    command = [str(BIN / "optouts-sandbox"), *args]
    if args[0] == "start":
        command += ["--port", str(port), "--size", "20"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_a_kept_sandbox_keeps_its_ledger_and_a_new_world_clears_it(tmp_path):
    folder, port = tmp_path / "sandbox", free_port()
    try:
        assert _cli(folder, port, "start").returncode == 0
        ledger = folder / "ledger.sqlite"
        ledger.write_bytes(b"kept against this sandbox's data")
        kept = _cli(folder, port, "start")  # a job's own start: the sandbox is kept
        assert "kept, with its data" in kept.stdout
        assert ledger.exists()
        assert "left running" in _cli(folder, port, "stop").stdout
        assert requests.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=5).ok

        requests.post(f"http://127.0.0.1:{port}/_sandbox/reset", json={}, timeout=30)
        _cli(folder, port, "start")  # the same process, reseeded: a new world
        assert not ledger.exists()
        _cli(folder, port, "stop")
    finally:
        _cli(folder, port, "stop", "--force")
    assert not (folder / "sandbox.pid").exists()
