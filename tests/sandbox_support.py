"""Starting the sandbox for a test, and the configs that point the connectors at it."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from optouts_sandbox import credentials as C
from optouts_sandbox.core import Switches
from optouts_sandbox.server import Sandbox, SandboxHTTPServer

SECRETS = (
    C.CHECKMARKET_MASTER_KEY,
    C.CHECKMARKET_KEY,
    C.SLICKTEXT_PUBLIC_KEY,
    C.SLICKTEXT_PRIVATE_KEY,
    C.SLICKTEXT_V2_API_KEY,
    C.OPTIZMO_API_KEY,
)
PROVIDERS = ("checkmarket", "slicktext", "optizmo")
# The connectors' executables in the venv the tests run in.
BIN = Path(sys.executable).parent
TAP_BIN = BIN / "tap-optouts"
TARGET_BIN = BIN / "target-optouts"


@contextmanager
def serving(sandbox: Sandbox) -> Iterator[SandboxHTTPServer]:
    """`sandbox` behind a real HTTP server on loopback (an ephemeral port) for the block."""
    server = SandboxHTTPServer(sandbox)
    server.start_in_thread()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def running_sandbox(size: int = 300, seed: int = 7, **switches: Any) -> Iterator[SandboxHTTPServer]:
    """A real HTTP server on loopback (an ephemeral port) for the duration of the block."""
    sw = Switches()
    sw.update(switches)
    with serving(Sandbox(size=size, seed=seed, switches=sw)) as server:
        yield server


# The SDK's standard suites take their config when their test class is built, at import, before
# any fixture runs: such a config is built for a PendingServer, and the module's fixture points
# it at the sandbox it starts (`repoint`). Port 9 (discard) is never served.
PENDING_URL = "http://127.0.0.1:9"
PREFIXES = ("checkmarket", "slicktext", "slicktext-v2", "optizmo", "optizmo-collect")


class PendingServer:
    """Stands in for a sandbox not started yet: `url` and `base_urls()` name PENDING_URL, so
    `tap_config` and `target_config` can be built from it."""

    url = PENDING_URL

    def base_urls(self) -> dict[str, str]:
        return {name: f"{self.url}/{name}" for name in PREFIXES}


def repoint(config: Any, url: str) -> None:
    """Every URL of `config` on PENDING_URL moved to `url`, in place: the suites hold the dict."""
    items = config.items() if isinstance(config, dict) else enumerate(config)
    for key, value in list(items):
        if isinstance(value, str) and value.startswith(PENDING_URL):
            config[key] = url + value[len(PENDING_URL) :]
        elif isinstance(value, dict | list):
            repoint(value, url)


def control(server: SandboxHTTPServer, action: str, payload: Any = None) -> Any:
    """Call a /_sandbox control endpoint over HTTP."""
    url = f"{server.url}/_sandbox/{action}"
    if payload is None:
        response = requests.get(url, timeout=30)
    else:
        response = requests.post(url, json=payload, timeout=30)
    response.raise_for_status()
    return response.json()


def provider_credentials(server: SandboxHTTPServer) -> dict[str, dict[str, Any]]:
    """Every provider's base URL and credentials on `server` (legacy SlickText): what the tap's
    and the target's settings share."""
    urls = server.base_urls()
    return {
        "checkmarket": {
            "base_url": urls["checkmarket"],
            "master_key": C.CHECKMARKET_MASTER_KEY,
            "key": C.CHECKMARKET_KEY,
        },
        "slicktext": {
            "base_url": urls["slicktext"],
            "public_key": C.SLICKTEXT_PUBLIC_KEY,
            "private_key": C.SLICKTEXT_PRIVATE_KEY,
        },
        "optizmo": {"base_url": urls["optizmo"], "api_key": C.OPTIZMO_API_KEY},
    }


def configure(
    config: dict[str, Any], providers: tuple[str, ...], overrides: dict[str, Any]
) -> dict[str, Any]:
    """A copy of `config` for `providers` only, with `overrides`: a dict override is merged
    into the provider's settings, any other replaces the setting."""
    merged = copy.deepcopy(config)
    for name in PROVIDERS:
        if name not in providers:
            merged.pop(name)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def tap_config(
    server: SandboxHTTPServer, providers: tuple[str, ...] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Tap settings for every provider (legacy SlickText), or only `providers`."""
    config: dict[str, Any] = {
        "start_date": "2025-01-01T00:00:00Z",
        "lookback_minutes": 0,
        **provider_credentials(server),
    }
    config["optizmo"].update(
        list_ids=[C.OPTIZMO_EMAIL_LIST_ID, C.OPTIZMO_SMS_LIST_ID],
        poll_interval_seconds=0.05,
        download_timeout_seconds=20,
    )
    return configure(config, PROVIDERS if providers is None else providers, overrides)


def slicktext_v2_settings(server: SandboxHTTPServer) -> dict[str, Any]:
    return {
        "base_url": server.base_urls()["slicktext-v2"],
        "api_key": C.SLICKTEXT_V2_API_KEY,
        "brand_id": C.SLICKTEXT_V2_BRAND_ID,
    }


class SingerRun:
    """The parsed output of one tap or target process."""

    def __init__(self, returncode: int, stdout: bytes, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr
        self.messages = [json.loads(line) for line in stdout.splitlines() if line.strip()]

    def records(self, stream: str | None = None) -> list[dict[str, Any]]:
        return [
            m["record"]
            for m in self.messages
            if m["type"] == "RECORD" and (stream is None or m["stream"] == stream)
        ]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def last_state(self) -> dict[str, Any] | None:
        states = self.states
        return states[-1] if states else None


def run_process(
    executable: str,
    config: dict[str, Any],
    tmp_path: Any,
    *,
    state: dict[str, Any] | None = None,
    stdin: bytes | str | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 120,
    env: dict[str, str] | None = None,
    text: bool = False,
) -> subprocess.CompletedProcess[Any]:
    """`tap-optouts` or `target-optouts` from the venv as a real process, on `config` (and
    `state`) written to files in `tmp_path`; its output is text if `text`, else bytes."""
    tag = uuid.uuid4().hex[:8]
    config_path = Path(tmp_path) / f"config-{tag}.json"
    config_path.write_text(json.dumps(config))
    command = [str(BIN / executable), "--config", str(config_path)]
    if state is not None:
        state_path = Path(tmp_path) / f"state-{tag}.json"
        state_path.write_text(json.dumps(state))
        command += ["--state", str(state_path)]
    command += list(args)
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        text=text,
        check=False,
    )


def run_cli(
    executable: str,
    config: dict[str, Any],
    tmp_path: Any,
    *,
    state: dict[str, Any] | None = None,
    stdin: bytes | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> SingerRun:
    """Run `tap-optouts` or `target-optouts` from the venv as a real process."""
    completed = run_process(
        executable, config, tmp_path, state=state, stdin=stdin, args=args, timeout=timeout, env=env
    )
    return SingerRun(
        completed.returncode, completed.stdout, completed.stderr.decode("utf-8", "replace")
    )


def held_addresses(holdings: dict[str, Any]) -> dict[str, set[str]]:
    """What each destination holds, from /_sandbox/inspect: emails and E.164 phones."""
    lists = holdings["optizmo"]["lists"]
    return {
        "checkmarket emails": set(holdings["checkmarket"]["emails"]),
        "checkmarket phones": set(holdings["checkmarket"]["phones"]),
        "slicktext phones": set(holdings["slicktext"]["phones"]),
        "optizmo emails": set(lists[C.OPTIZMO_EMAIL_LIST_ID]["emails"]),
        "optizmo phones": set(lists[C.OPTIZMO_SMS_LIST_ID]["phones"]),
    }


def missing_from_union(before: dict[str, Any], after: dict[str, Any]) -> dict[str, set[str]]:
    """The union property: after a sync, every destination holds every opt-out (held anywhere
    before it) that its channel can carry. Returns what is missing, per destination."""
    held = held_addresses(before)
    emails = held["checkmarket emails"] | held["optizmo emails"]
    phones = held["checkmarket phones"] | held["slicktext phones"] | held["optizmo phones"]
    now = held_addresses(after)
    missing = {
        name: (emails if name.endswith("emails") else phones) - addresses
        for name, addresses in now.items()
    }
    return {name: gone for name, gone in missing.items() if gone}
