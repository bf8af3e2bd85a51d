"""The one HTTP path every provider client uses (provider-apis.md 6.1).

- Credentials only go to the configured base URL; links handed back by an API are either
  resolved against it (CheckMarket) or fetched with no credential at all (pre-signed URLs).
- `http://` is refused except on loopback.
- 429, 5xx, connection resets and timeouts are retried with exponential backoff and full
  jitter (python-backoff), honouring `Retry-After` (seconds or HTTP date) and the provider's
  rate-limit reset header; a server-given wait is never shortened by jitter. Total time spent
  waiting is capped (`max_wait_seconds`); past it the call fails clearly.
- Any other 4xx fails with a `ProviderError` naming the provider, the endpoint and the status,
  with secrets masked.
- A `Pacer` spaces requests below a rate limit and sleeps when the provider says the window is
  spent, so that 429s are the exception, not the way the limit is found.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import random
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import backoff
import msgspec
import requests
from requests.adapters import HTTPAdapter

from optouts_providers.redact import redact, strip_query

logger = logging.getLogger("optouts.http")

DEFAULT_TIMEOUT = (10.0, 60.0)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ProviderError(Exception):
    """A provider refused or failed a call. The message names provider, endpoint and status."""

    def __init__(
        self,
        provider: str,
        method: str,
        url: str,
        status: int | None = None,
        detail: str = "",
    ) -> None:
        self.provider = provider
        self.method = method
        self.endpoint = strip_query(url)
        self.status = status
        self.detail = redact(detail)[:500]
        where = f"{provider} {method} {redact(self.endpoint)}"
        what = f"answered HTTP {status}" if status is not None else "failed"
        message = f"{where} {what}"
        if self.detail:
            message += f": {self.detail}"
        super().__init__(message)


class RetryableProviderError(ProviderError):
    """A failure worth retrying (429, 5xx, reset, timeout); carries any server-given wait."""

    def __init__(self, *args: Any, wait_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wait_seconds = wait_seconds


class InsecureURLError(ValueError):
    """A URL that credentials or data must not travel over."""


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """Refuse anything but https, or http to a loopback host (the sandbox)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return url
    raise InsecureURLError(
        f"refusing {parts.scheme or 'scheme-less'} URL to host {parts.hostname!r}: "
        "only https, or http to a loopback address, is allowed"
    )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds to wait: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return max(0.0, (when - current).total_seconds())


@dataclass(frozen=True)
class RateHeaders:
    """Names of a provider's rate-limit headers. `reset_is_epoch`: reset is a Unix time
    rather than seconds from now; `auto` guesses by magnitude (Optizmo leaves it open)."""

    limit: str
    remaining: str
    reset: str
    reset_is_epoch: bool | None = None

    def reset_seconds(self, headers: Mapping[str, str], now: float) -> float | None:
        raw = headers.get(self.reset)
        if raw is None:
            return None
        try:
            number = float(raw)
        except ValueError:
            return None
        epoch = self.reset_is_epoch if self.reset_is_epoch is not None else number > 1e9
        return max(0.0, number - now) if epoch else max(0.0, number)


@dataclass
class CallStats:
    """What one client did: for logs, summaries and the benchmark."""

    requests: int = 0
    retries: int = 0
    throttled_seconds: float = 0.0
    rate_limited: int = 0
    by_status: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "throttled_seconds": round(self.throttled_seconds, 3),
        }


class WaitBudgetExceeded(ProviderError):
    """The client has waited longer than `max_wait_seconds` for a provider."""


class Pacer:
    """Spaces requests to at most `requests_per_second` and, when the provider's rate-limit
    headers say the window is nearly spent, sleeps until it resets."""

    def __init__(
        self,
        requests_per_second: float | None = None,
        headers: RateHeaders | None = None,
        reserve: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self.headers = headers
        self.reserve = reserve
        self._sleep = sleep
        self._clock = clock
        self._next_at = 0.0
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def before_request(self) -> float:
        """Wait for the next slot; return the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_at, self._blocked_until)
            self._next_at = start + self.interval
        waited = start - now
        if waited > 0:
            self._sleep(waited)
        return max(0.0, waited)

    def after_response(self, response: requests.Response) -> None:
        if self.headers is None:
            return
        remaining = response.headers.get(self.headers.remaining)
        if remaining is None:
            return
        try:
            left = int(float(remaining))
        except ValueError:
            return
        if left > self.reserve:
            # Spread what is left of the window over the time until it resets.
            reset = self.headers.reset_seconds(response.headers, time.time())
            if reset and self.interval == 0.0 and left > 0:
                with self._lock:
                    self._next_at = max(self._next_at, self._clock() + reset / (left + 1))
            return
        reset = self.headers.reset_seconds(response.headers, time.time())
        if reset:
            with self._lock:
                self._blocked_until = max(self._blocked_until, self._clock() + reset)


def _retry_wait(
    base: float, factor: float, cap: float
) -> Generator[float, BaseException | None, None]:
    """backoff wait generator: full-jitter exponential, or the server's wait plus a little."""
    attempt = 0
    exc = yield 0.0
    while True:
        server_wait = getattr(exc, "wait_seconds", None)
        if server_wait is not None:
            # Jitter only lengthens a server-given wait.
            value = server_wait + random.uniform(0, min(1.0, 0.1 * server_wait + 0.05))
        else:
            value = random.uniform(0, min(cap, base * factor**attempt))
        attempt += 1
        exc = yield value


@dataclass
class RetryPolicy:
    max_tries: int = 8
    base_seconds: float = 0.5
    factor: float = 2.0
    cap_seconds: float = 60.0
    max_wait_seconds: float = 900.0


def decode_json(response: requests.Response) -> Any:
    """The JSON body, decoded once per response (paginators and callers share it)."""
    cached = getattr(response, "_optouts_json", None)
    if cached is None:
        cached = msgspec.json.decode(response.content)
        response._optouts_json = cached  # type: ignore[attr-defined]
    return cached


class _NoCredentials(requests.auth.AuthBase):
    """Sends no credential at all (and keeps requests from adding one from ~/.netrc)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.pop("Authorization", None)
        return r


class ProviderSession:
    """A keep-alive session bound to one provider's base URL and credentials."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        auth: requests.auth.AuthBase | Callable[..., Any] | None,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        default_headers: Mapping[str, str] | None = None,
        error_detail: Callable[[requests.Response], str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider
        self.base_url = check_url(base_url.rstrip("/") + "/")
        self._auth = auth
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.pacer = pacer or Pacer()
        self.stats = CallStats()
        self._error_detail = error_detail or _default_error_detail
        self._sleep = sleep
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers.update({"User-Agent": "optouts-connectors/0.1"})
        if default_headers:
            self.session.headers.update(default_headers)

    # -- URLs -----------------------------------------------------------------------------
    def url(self, path: str) -> str:
        """An endpoint path (or a link's path and query) resolved against the base URL."""
        parts = urlsplit(path)
        relative = parts.path.lstrip("/")
        if parts.query:
            relative += "?" + parts.query
        return urljoin(self.base_url, relative)

    def endpoint(self, url: str) -> str:
        """The path that error messages name (relative to the base URL when under it)."""
        bare = strip_query(url)
        if bare.startswith(self.base_url):
            return "/" + bare[len(self.base_url) :]
        return bare

    # -- requests -------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (),
        stream: bool = False,
    ) -> requests.Response:
        """Call an endpoint under the base URL, with credentials and retries.

        A status in `ok` is returned to the caller rather than raised (e.g. 404 while a
        download is not ready). Everything below 300 is always returned.
        """
        url = self.url(path)
        return self._send(method, url, self._auth, params, json, data, headers, ok, stream)

    def request_unauthenticated(
        self,
        method: str,
        url: str,
        *,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (),
        stream: bool = False,
        retry: bool = True,
    ) -> requests.Response:
        """Fetch a pre-signed URL: no credential header, the URL's signature masked in logs."""
        check_url(url)
        return self._send(
            method, url, _NoCredentials(), None, None, data, headers, ok, stream, retry=retry
        )

    def _send(
        self,
        method: str,
        url: str,
        auth: Any,
        params: Any,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        ok: Iterable[int],
        stream: bool,
        retry: bool = True,
    ) -> requests.Response:
        ok_statuses = frozenset(ok)
        started = time.monotonic()
        waited = [0.0]

        def on_backoff(details: Any) -> None:
            self.stats.retries += 1
            wait = float(details.get("wait") or 0.0)
            waited[0] += wait
            self.stats.throttled_seconds += wait
            exc = details.get("exception")
            logger.info(
                "%s: retrying %s %s in %.2fs (try %d): %s",
                self.provider,
                method,
                self.endpoint(url),
                wait,
                details.get("tries", 0),
                redact(exc) if exc else "",
            )

        def once() -> requests.Response:
            if time.monotonic() - started > self.retry.max_wait_seconds:
                raise WaitBudgetExceeded(
                    self.provider,
                    method,
                    self.endpoint(url),
                    detail=f"gave up after waiting {waited[0]:.0f}s "
                    f"(max_wait_seconds={self.retry.max_wait_seconds:.0f})",
                )
            self.stats.throttled_seconds += self.pacer.before_request()
            self.stats.requests += 1
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    headers=headers,
                    auth=auth,
                    timeout=self.timeout,
                    stream=stream,
                    allow_redirects=False,
                )
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                raise RetryableProviderError(
                    self.provider, method, self.endpoint(url), detail=type(exc).__name__
                ) from None
            self.stats.by_status[response.status_code] = (
                self.stats.by_status.get(response.status_code, 0) + 1
            )
            self.pacer.after_response(response)
            status = response.status_code
            if status < 300 or status in ok_statuses:
                return response
            detail = self._error_detail(response)
            if status in RETRY_STATUSES:
                if status == 429:
                    self.stats.rate_limited += 1
                wait = parse_retry_after(response.headers.get("Retry-After"))
                if wait is None and self.pacer.headers is not None:
                    wait = self.pacer.headers.reset_seconds(response.headers, time.time())
                    if wait is not None and status != 429:
                        wait = None
                response.close()
                raise RetryableProviderError(
                    self.provider, method, self.endpoint(url), status, detail, wait_seconds=wait
                )
            response.close()
            raise ProviderError(self.provider, method, self.endpoint(url), status, detail)

        if not retry:
            return once()
        policy = self.retry
        remaining = max(1.0, policy.max_wait_seconds)
        call = backoff.on_exception(
            _retry_wait,
            RetryableProviderError,
            max_tries=policy.max_tries,
            max_time=remaining,
            jitter=None,
            giveup=lambda e: isinstance(e, WaitBudgetExceeded),
            on_backoff=on_backoff,
            logger=None,
            base=policy.base_seconds,
            factor=policy.factor,
            cap=policy.cap_seconds,
        )(once)
        return call()

    def close(self) -> None:
        self.session.close()


def _default_error_detail(response: requests.Response) -> str:
    """A short, secret-free description of an error body: a JSON message or the first text."""
    try:
        body = decode_json(response)
    except Exception:
        text = response.text[:200] if response.content else ""
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type.lower() or text.lstrip().startswith("<"):
            return f"non-JSON ({content_type or 'html'}) error page"
        return text
    if isinstance(body, dict):
        for key in ("message", "Message", "error", "ErrorMessage"):
            if isinstance(body.get(key), str):
                return body[key]
        data = body.get("Data")
        if isinstance(data, dict) and isinstance(data.get("ErrorMessage"), str):
            return data["ErrorMessage"]
        if isinstance(data, str):
            return data
    return str(body)[:200]
