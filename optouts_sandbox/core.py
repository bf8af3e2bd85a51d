"""Sandbox building blocks: requests and responses, switches, the clock, rate limits.

Provider emulators (`checkmarket.py`, `slicktext/`, `optizmo/`) subclass `Emulator` and
answer `Request`s with `Response`s; `server.py` turns HTTP into those and applies the faults.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import msgspec


@dataclass
class RateLimit:
    """A limit per credential: `per_second` and `per_window` over `window_seconds`."""

    per_second: float | None = None
    per_window: int | None = None
    window_seconds: float = 60.0


CHOICES: dict[str, frozenset[str]] = {
    "retry_after_format": frozenset({"seconds", "date"}),
    "malformed_kind": frozenset({"html", "wrong_json"}),
    "download_format": frozenset({"csv", "zip"}),
    "upload_outcome": frozenset({"success", "failed", "removed"}),
    "optizmo_reset": frozenset({"seconds", "epoch"}),
    "optizmo_activity_answer": frozenset({"redirect", "json", "file"}),
    "optizmo_activity_headers": frozenset({"snake", "title"}),
}


@dataclass
class Switches:
    """What the sandbox does to its clients. All off by default; set at start or at run time
    (POST /_sandbox/config with a JSON object of these fields)."""

    latency_ms: float = 0.0
    # Share (0..1) of provider requests answered with `error_status` before any work.
    error_rate: float = 0.0
    error_status: int = 503
    # Share (0..1) of provider requests whose connection is closed with no answer.
    reset_rate: float = 0.0
    # Retry-After (seconds) on the answers `error_rate` injects; None = no header.
    retry_after: float | None = None
    # How every Retry-After header is written: "seconds" or "date" (an HTTP date).
    retry_after_format: str = "seconds"
    # Seconds to stall before answering (beyond a client's read timeout = a timeout fault).
    stall_seconds: float = 0.0
    stall_rate: float = 0.0
    # Share (0..1) of provider requests answered 200 with a malformed body. `malformed_kind`
    # "html": an HTML page answers instead of the API (the request is not processed);
    # "wrong_json": the API does its work, but its 2xx answer is JSON of the wrong shape.
    malformed_rate: float = 0.0
    malformed_kind: str = "html"
    # Rate limits per provider prefix ("checkmarket", "slicktext", ...): None = unlimited.
    rate_limits: dict[str, dict[str, float]] = field(default_factory=dict)
    # Optizmo downloads: seconds before the link answers 200, file form, truncation.
    download_delay_seconds: float = 0.0
    download_format: str = "csv"  # "csv" or "zip"
    truncate_downloads: bool = False
    # The served file itself is wrong: "empty_zip", "drop_column:<name>" or
    # "long_line:<bytes>" ("" = none).
    optizmo_file_fault: str = ""
    # Optizmo uploads: lifetime of a pre-signed upload URL; forced final status.
    upload_url_ttl_seconds: float = 900.0
    upload_processing_seconds: float = 0.0
    upload_outcome: str = "success"  # "success", "failed" or "removed"
    # Optizmo collect: seconds before a collected opt-out shows in the list.
    collect_delay_seconds: float = 0.0
    checkmarket_max_top: int = 1000
    # Optizmo rate-limit reset header semantics: "seconds" or "epoch".
    optizmo_reset: str = "seconds"
    # Name of Optizmo's prepare-download answer field holding the link.
    optizmo_download_field: str = "downloadUrl"
    # Optizmo's download-activity export: answered by a redirect to the file, JSON holding
    # the link (in `optizmo_download_field`) or the file itself; its header row in the
    # project's names ("snake") or a spreadsheet's ("title", with RFC 3339 times).
    optizmo_activity_answer: str = "redirect"
    optizmo_activity_headers: str = "snake"
    # Webhooks the sandbox emits on each opt-out it gains (webhooks.py): SlickText's URLs (the
    # legacy one signed with `webhook_slicktext_secret`; CheckMarket's are registered with
    # POST 3/hooks), the vendors' timeout and retries (time-compressed: a retry after
    # `webhook_retry_seconds`, doubling), and faults: a share of deliveries dropped, sent twice,
    # or held back `webhook_reorder_seconds` so that later ones overtake them. The legacy
    # signature covers the `data` value, or the whole body with `webhook_sign_body`.
    webhook_slicktext_url: str = ""
    webhook_slicktext_v2_url: str = ""
    webhook_slicktext_secret: str = ""
    webhook_sign_body: bool = False
    webhook_timeout_seconds: float = 5.0
    webhook_retries: int = 3
    webhook_retry_seconds: float = 0.5
    webhook_drop_rate: float = 0.0
    webhook_repeat_rate: float = 0.0
    webhook_reorder_rate: float = 0.0
    webhook_reorder_seconds: float = 0.5
    # Keep a log of every accepted provider write (time, provider, body): when each
    # destination got an address (GET /_sandbox/webhooks).
    record_writes: bool = False

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown switches: {sorted(unknown)}")
        for key, allowed in CHOICES.items():
            if key in values and values[key] not in allowed:
                raise ValueError(f"{key} must be one of {sorted(allowed)}, not {values[key]!r}")
        for key, value in values.items():
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rate_limit(self, provider: str) -> RateLimit | None:
        raw = self.rate_limits.get(provider)
        return RateLimit(**raw) if raw else None


class Clock:
    """Wall time plus an adjustable offset, so that delays and expiries are testable."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    def timestamp(self) -> float:
        return self.now().timestamp()


class RateLimiter:
    """Sliding-window counters per (provider, credential)."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, provider: str, credential: str, limit: RateLimit) -> tuple[bool, int, float]:
        """Count one request. Returns (allowed, remaining in window, seconds until reset)."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault((provider, credential), deque())
            while hits and now - hits[0] >= limit.window_seconds:
                hits.popleft()
            window_max = limit.per_window or 10**9
            recent = sum(1 for t in reversed(hits) if now - t < 1.0) if limit.per_second else 0
            allowed = len(hits) < window_max and (not limit.per_second or recent < limit.per_second)
            if allowed:
                hits.append(now)
            remaining = max(0, window_max - len(hits))
            if not allowed and limit.per_second and recent >= limit.per_second:
                reset = max(0.0, 1.0 - (now - hits[-int(limit.per_second)]))
            else:
                reset = max(0.0, limit.window_seconds - (now - hits[0])) if hits else 0.0
            return allowed, remaining, reset

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


class Request:
    """One HTTP request as an emulator sees it. `path` is below the provider prefix."""

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        base_url: str,
        server_url: str,
    ) -> None:
        self.method = method
        self.path = path
        self.raw_query = query
        self.query: dict[str, list[str]] = parse_qs(query, keep_blank_values=True)
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body
        self.base_url = base_url  # e.g. http://127.0.0.1:8765/checkmarket
        self.server_url = server_url  # e.g. http://127.0.0.1:8765

    def arg(self, *names: str) -> str | None:
        """First value of the first query option present among `names`."""
        for name in names:
            if name in self.query:
                return self.query[name][0]
        return None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8")).items()}


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    # For a streamed body: the length to announce (may differ when truncating on purpose).
    content_length: int | None = None

    def chunks(self) -> Iterator[bytes]:
        if isinstance(self.body, bytes | bytearray):
            yield bytes(self.body)
        else:
            yield from self.body


_encoder = msgspec.json.Encoder()


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        status=status,
        body=_encoder.encode(payload),
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


class Emulator:
    """One provider API under a path prefix of the sandbox."""

    prefix: str = ""  # e.g. "checkmarket"
    # Name under which `Switches.rate_limits` configures this emulator's limit.
    rate_limit_key: str = ""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.lock = threading.RLock()

    @property
    def switches(self) -> Switches:
        return self.sandbox.switches

    @property
    def clock(self) -> Clock:
        return self.sandbox.clock

    def credential(self, request: Request) -> str | None:
        """The credential a request carries (for per-credential rate limits); None = anonymous."""
        return None

    def rate_limit_headers(self, limit: RateLimit, remaining: int, reset: float) -> dict[str, str]:
        """The provider's rate-limit headers for a response."""
        return {}

    def rate_limited(self, request: Request, retry_after: float) -> Response:
        """The provider's over-the-limit answer."""
        return json_response(
            {"message": "Too many requests"},
            429,
            {"Retry-After": str(max(1, round(retry_after)))},
        )

    def error(self, request: Request, status: int, message: str) -> Response:
        """The provider's error answer (its envelope)."""
        return json_response({"message": message}, status)

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def seed(self, population: list[Any]) -> None:
        """Fill the provider's store from the shared population (see `seed.py`)."""

    def inspect(self) -> dict[str, Any]:
        """What the provider holds now: counts and the opted-out emails/phones/hashes."""
        return {}

    def admin_add(self, records: list[dict[str, Any]]) -> int:
        """Add opt-outs directly (tests: 'a person opted out at this provider')."""
        raise NotImplementedError
