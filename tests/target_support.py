"""Helpers for the target tests (no tests here): configs, Singer input, running the target."""

from __future__ import annotations

import io
import json
import subprocess
from contextlib import redirect_stdout
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from optouts_sandbox import credentials as C
from optouts_sandbox.server import SandboxHTTPServer
from target_optouts.target import TargetOptouts
from tests.sandbox_support import PROVIDERS, configure, provider_credentials, run_process
from tests.sandbox_support import SECRETS as SECRETS
from tests.sandbox_support import TARGET_BIN as TARGET_BIN


def target_config(
    server: SandboxHTTPServer,
    providers: tuple[str, ...] = PROVIDERS,
    **overrides: Any,
) -> dict[str, Any]:
    """Target settings pointing at the sandbox (legacy SlickText), for `providers` only.
    A dict override is merged into the provider's settings."""
    config: dict[str, Any] = {
        "max_retry_wait_seconds": 20,
        "request_timeout_seconds": 10,
        "ledger_url": "",  # off: the ledger's own tests give each run theirs
        **provider_credentials(server),
    }
    config["optizmo"].update(
        collect_base_url=server.base_urls()["optizmo-collect"],
        email_list_id=C.OPTIZMO_EMAIL_LIST_ID,
        sms_list_id=C.OPTIZMO_SMS_LIST_ID,
        poll_interval_seconds=0.02,
        upload_timeout_seconds=20,
    )
    return configure(config, providers, overrides)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | Decimal):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def schema_for(records: list[Any], **extra: dict[str, Any]) -> dict[str, Any]:
    """A nullable schema naming every field the dict records carry."""
    properties: dict[str, Any] = {}
    for record in records:
        if isinstance(record, dict):
            for key, value in record.items():
                if value is not None:
                    properties.setdefault(key, {"type": [_json_type(value), "null"]})
    properties.update(extra)
    return {"type": "object", "properties": properties}


def stream_messages(
    stream: str,
    records: list[Any],
    *,
    schema: dict[str, Any] | None = None,
    key_properties: list[str] | None = None,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "type": "SCHEMA",
            "stream": stream,
            "schema": schema or schema_for(records),
            "key_properties": key_properties or [],
        }
    ]
    out += [{"type": "RECORD", "stream": stream, "record": record} for record in records]
    return out


def state(value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "STATE", "value": value}


def encode(messages: list[dict[str, Any] | str]) -> str:
    return "".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages)


@dataclass
class Run:
    target: TargetOptouts
    states: list[dict[str, Any]]
    error: BaseException | None = None

    @property
    def summary(self) -> dict[str, Any]:
        return self.target.destinations.summary()

    def counts(self, destination: str) -> dict[str, Any]:
        return self.summary["destinations"][destination]


def run_target(config: dict[str, Any], messages: list[dict[str, Any] | str]) -> Run:
    """The target in-process over `messages`; a failure is kept in `Run.error`."""
    target = TargetOptouts(config=config)
    out = io.StringIO()
    error: BaseException | None = None
    with redirect_stdout(out):
        try:
            target.process_lines(io.StringIO(encode(messages)))
            target.process_endofpipe()
        except Exception as exc:
            error = exc
    states = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return Run(target, states, error)


def run_cli(
    config: dict[str, Any], messages: list[dict[str, Any] | str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """The target as a real process: `target-optouts --config cfg.json < input.jsonl`."""
    return run_process("target-optouts", config, tmp_path, stdin=encode(messages), text=True)


def new_emails(count: int, tag: str = "new") -> list[str]:
    """Addresses the seeded population never holds."""
    return [f"{tag}.person{i}@target-tests.example.com" for i in range(count)]


def new_phones(count: int, start: int = 0) -> list[str]:
    """Valid US numbers the seed never uses (area code 206 is not among its area codes)."""
    return [f"+1206555{start + i:04d}" for i in range(count)]
