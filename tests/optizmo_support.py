"""Optizmo test helpers: a client for the sandbox, its emulator, and a whole read."""

from __future__ import annotations

from datetime import UTC, datetime

from optouts_providers.http import RetryPolicy
from optouts_providers.optizmo.client import OptizmoClient
from optouts_sandbox import credentials as C
from optouts_sandbox.optizmo import OptizmoEmulator

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
KEY = C.OPTIZMO_API_KEY


def client_for(server, api_key: str = KEY) -> OptizmoClient:
    urls = server.base_urls()
    return OptizmoClient(
        urls["optizmo"],
        api_key,
        collect_base_url=urls["optizmo-collect"],
        retry=RetryPolicy(max_tries=5, base_seconds=0.05, cap_seconds=0.5, max_wait_seconds=30),
    )


def emulator(server) -> OptizmoEmulator:
    return server.sandbox.emulators["optizmo"]


def read(
    client: OptizmoClient, list_id: str, start: datetime = EPOCH, end: datetime | None = None, **kw
) -> list[dict]:
    kw.setdefault("poll_interval_seconds", 0.02)
    kw.setdefault("download_timeout_seconds", 10)
    return list(client.iter_optouts(list_id, start, end or datetime.now(UTC), **kw))
