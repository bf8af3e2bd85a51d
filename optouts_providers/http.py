"""The one HTTP path every provider client uses (see docs/providers/README.md).

- Credentials only go to the configured base URL; links handed back by an API are either
  resolved against it (CheckMarket) or fetched with no credential at all (pre-signed URLs).
- `http://` is refused except on loopback.
- 429, 5xx, connection resets and timeouts are retried with exponential backoff and full
  jitter (python-backoff; the waits in retries.py), honouring `Retry-After` (seconds or HTTP
  date) and the provider's rate-limit reset header; a server-given wait is never shortened by
  jitter.
- Two caps on waiting, both failing with a message that says which cap: one request may wait
  at most `RetryPolicy.max_wait_seconds`, and the whole process at most its `WaitBudget`
  (retry waits and exhausted rate-limit windows, summed over every client; steady pacing is
  not counted).
- Any other 4xx fails with a `ProviderError` naming the provider, the endpoint
  and the status, with secrets masked. So does an answer that is not what an API answers: a
  2xx HTML page, a body that is not JSON, JSON of the wrong shape (`MalformedAnswerError`, not
  retried).
- A `Pacer` (throttle.py) keeps requests inside the provider's windows and sleeps when the
  provider says a window is spent, so that 429s are the exception, not the way the limit is
  found.
- Every request, answered or not, is one SDK `http_request_duration` metric (provider,
  method, endpoint, status), as the SDK's own REST streams log it.

A request is a `Call`; `ProviderSession._send` tries it until it is answered or retrying must
stop, and each try is: wait for the pacer's slot (`_pace`), send (`_transmit`), judge the
answer (`_judge`).
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import backoff
import msgspec
import requests
from requests.adapters import HTTPAdapter
from singer_sdk import metrics

from optouts_providers.redact import redact, strip_query
from optouts_providers.retries import Retrying
from optouts_providers.retries import RetryPolicy as RetryPolicy
from optouts_providers.throttle import CallStats as CallStats
from optouts_providers.throttle import Pacer as Pacer
from optouts_providers.throttle import RateHeaders as RateHeaders
from optouts_providers.throttle import Slot as Slot
from optouts_providers.throttle import WaitBudget as WaitBudget
from optouts_providers.throttle import set_total_wait_budget as set_total_wait_budget
from optouts_providers.throttle import total_wait_budget as total_wait_budget

logger = logging.getLogger("optouts.http")

DEFAULT_TIMEOUT = (10.0, 60.0)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
T = TypeVar("T")


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


class MalformedAnswerError(ProviderError):
    """An answer that is not the API's: an HTML page, not JSON, or JSON of the wrong shape."""


class RetriesExhausted(ProviderError):
    """Retrying stopped: tries used up, or a wait cap reached. Keeps the last status."""


class WaitBudgetExceeded(RetriesExhausted):
    """The process has waited on providers for longer than its `WaitBudget` allows."""


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
    if parts.netloc.endswith(":"):
        raise ValueError(
            f"URL {url!r} has an empty port: is a variable it is built from unset "
            "(OPTOUTS_SANDBOX_PORT, in meltano.yml's sandbox environment)?"
        )
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
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return max(0.0, (when - current).total_seconds())


def log_request_metric(
    provider: str, method: str, endpoint: str, status: int | None, seconds: float
) -> None:
    """One `http_request_duration` timer point, in the SDK's form (`METRIC: {...}`)."""
    succeeded = status is not None and status < 400
    point = metrics.Point(
        "timer",
        metric=metrics.Metric.HTTP_REQUEST_DURATION,
        value=round(seconds, 6),
        tags={
            "provider": provider,
            "method": method,
            metrics.Tag.ENDPOINT: redact(endpoint),
            metrics.Tag.HTTP_STATUS_CODE: status,
            metrics.Tag.STATUS: metrics.Status.SUCCEEDED if succeeded else metrics.Status.FAILED,
        },
    )
    metrics.log(metrics.get_metrics_logger(), point)


@dataclass(frozen=True)
class Call:
    """One request as its caller asked for it."""

    method: str
    url: str
    endpoint: str  # what errors, logs and metrics name
    auth: Any
    params: Any = None
    json: Any = None
    data: Any = None
    headers: Mapping[str, str] | None = None
    ok: frozenset[int] = frozenset()  # statuses handed back to the caller, not raised
    stream: bool = False
    retry: bool = True


def http_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Retry policy and timeouts for a provider client, from a connector's settings
    (max_retry_wait_seconds, request_timeout_seconds): the same in the tap and the target."""
    return {
        "retry": RetryPolicy(max_wait_seconds=float(config.get("max_retry_wait_seconds", 900))),
        "timeout": (10.0, float(config.get("request_timeout_seconds", 60))),
    }


def decode_json(response: requests.Response) -> Any:
    """The JSON body, decoded once per response (paginators and callers share it). A body
    that is not JSON is a `MalformedAnswerError` naming the provider and the endpoint."""
    cached = getattr(response, "_optouts_json", None)
    if cached is None:
        try:
            cached = msgspec.json.decode(response.content)
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise _malformed(response, f"the answer is not JSON ({_body_kind(response)})") from None
        response._optouts_json = cached  # type: ignore[attr-defined]
    return cached


def read_answer(response: requests.Response, read: Callable[[Any], T]) -> T:
    """`read` applied to the decoded JSON answer. `read` raises ValueError, KeyError or
    TypeError on a shape it does not know: that becomes a `MalformedAnswerError`."""
    body = decode_json(response)
    try:
        return read(body)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _malformed(response, f"unexpected answer ({type(exc).__name__}: {exc})") from None


def _body_kind(response: requests.Response) -> str:
    content_type = response.headers.get("Content-Type", "") or "no content type"
    head = response.content[:64].lstrip().lower() if response.content else b""
    if "html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html")):
        return f"an HTML page, {content_type}"
    return content_type if response.content else "an empty body"


def _malformed(response: requests.Response, detail: str) -> MalformedAnswerError:
    request_method = response.request.method if response.request is not None else None
    provider, method, endpoint = getattr(
        response, "_optouts_where", ("provider", request_method or "GET", response.url or "")
    )
    return MalformedAnswerError(provider, method, endpoint, response.status_code, detail)


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
        budget: WaitBudget | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = check_url(base_url.rstrip("/") + "/")
        self._auth = auth
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.pacer = pacer or Pacer()
        self.stats = CallStats()
        self._budget = budget
        self._error_detail = error_detail or _default_error_detail
        self._sleep = sleep
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers.update({"User-Agent": "optouts-connectors/0.1"})
        if default_headers:
            self.session.headers.update(default_headers)

    @property
    def budget(self) -> WaitBudget:
        return self._budget or total_wait_budget()

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
        call = Call(
            method,
            url,
            self.endpoint(url),
            self._auth,
            params=params,
            json=json,
            data=data,
            headers=headers,
            ok=frozenset(ok),
            stream=stream,
        )
        return self._send(call)

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
        call = Call(
            method,
            url,
            self.endpoint(url),
            _NoCredentials(),
            data=data,
            headers=headers,
            ok=frozenset(ok),
            stream=stream,
            retry=retry,
        )
        return self._send(call)

    def _send(self, call: Call) -> requests.Response:
        """Try `call` until it is answered, retrying what is worth retrying (429, 5xx, a
        reset, a timeout) until the tries, the request's wait cap or the budget run out."""
        if not call.retry:
            return self._try(call)
        retrying = Retrying(
            self.provider, call.method, call.endpoint, self.retry, self.budget, self.stats
        )
        try:
            for attempt in backoff.retry_context(
                RetryableProviderError,
                retrying.waits,
                max_tries=self.retry.max_tries,
                jitter=None,  # `waits` jitters: a server-given wait is only ever lengthened
                on_backoff=retrying.before_retry,
                logger=None,
            ):
                with attempt:
                    return self._try(call)
        except RetryableProviderError as last:
            stopped = WaitBudgetExceeded if retrying.budget_ran_out else RetriesExhausted
            detail = retrying.gave_up(last.detail)
            raise stopped(self.provider, call.method, call.endpoint, last.status, detail) from None
        raise AssertionError("retry_context ends by returning or raising")

    def _try(self, call: Call) -> requests.Response:
        """One try: wait for the pacer's slot, send, and judge the answer."""
        slot = self._pace(call)
        response = self._transmit(call, slot)
        return self._judge(call, response)

    def _pace(self, call: Call) -> Slot:
        """Take the pacer's next slot and wait for it; a spent window counts on the budget."""
        slot = self.pacer.reserve_slot()
        if slot.blocked > 0:
            budget = self.budget
            if not budget.allows(slot.blocked):
                self.pacer.answered(slot, None)
                raise WaitBudgetExceeded(
                    self.provider,
                    call.method,
                    call.endpoint,
                    detail=f"the rate-limit window is spent for {slot.blocked:.1f}s more and "
                    + budget.describe(),
                )
            budget.spend(slot.blocked)
            logger.info(
                "%s throttle: waiting_seconds=%.1f reason=rate_limit_window request=%s %s",
                self.provider,
                slot.wait,
                call.method,
                call.endpoint,
            )
        self.pacer.wait(slot)
        self.stats.throttled_seconds += slot.wait
        return slot

    def _transmit(self, call: Call, slot: Slot) -> requests.Response:
        """Send the request; count it, time it, and tell the pacer how it went. No answer
        (a reset, a timeout, a body cut short) is retryable."""
        self.stats.requests += 1
        started = time.monotonic()
        try:
            response = self.session.request(
                call.method,
                call.url,
                params=call.params,
                json=call.json,
                data=call.data,
                headers=call.headers,
                auth=call.auth,
                timeout=self.timeout,
                stream=call.stream,
                allow_redirects=False,
            )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            self.pacer.answered(slot, None)
            self._metric(call, None, started)
            raise RetryableProviderError(
                self.provider, call.method, call.endpoint, detail=type(exc).__name__
            ) from None
        self._metric(call, response.status_code, started)
        self.pacer.answered(slot, response)
        response._optouts_where = (self.provider, call.method, call.endpoint)  # type: ignore[attr-defined]
        status = response.status_code
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        return response

    def _judge(self, call: Call, response: requests.Response) -> requests.Response:
        """The answer, when it is one the caller takes (below 300, or a status in `ok`);
        else the error it is: retryable (429, 5xx, with the server's wait) or not."""
        status = response.status_code
        if status < 300:
            if "html" in response.headers.get("Content-Type", "").lower():
                response.close()
                raise MalformedAnswerError(
                    self.provider,
                    call.method,
                    call.endpoint,
                    status,
                    "the answer is an HTML page, not the API's (a proxy or maintenance "
                    "page, or a base_url that is not the API)",
                )
            return response
        if status in call.ok:
            return response
        detail = self._error_detail(response)
        response.close()
        if status not in RETRY_STATUSES:
            raise ProviderError(self.provider, call.method, call.endpoint, status, detail)
        if status == 429:
            self.stats.rate_limited += 1
        raise RetryableProviderError(
            self.provider,
            call.method,
            call.endpoint,
            status,
            detail,
            wait_seconds=self._server_wait(response),
        )

    def _server_wait(self, response: requests.Response) -> float | None:
        """Retry-After, else (on 429) the rate-limit reset header."""
        wait = parse_retry_after(response.headers.get("Retry-After"))
        if wait is None and response.status_code == 429 and self.pacer.headers is not None:
            wait = self.pacer.headers.reset_seconds(response.headers, time.time())
        return wait

    def _metric(self, call: Call, status: int | None, started: float) -> None:
        log_request_metric(
            self.provider, call.method, call.endpoint, status, time.monotonic() - started
        )

    def close(self) -> None:
        self.session.close()


def _default_error_detail(response: requests.Response) -> str:
    """A short, secret-free description of an error body: a JSON message or the first text."""
    try:
        body = decode_json(response)
    except Exception:
        kind = _body_kind(response)
        if kind.startswith("an HTML page"):
            return f"non-JSON ({kind}) error page"
        return response.text[:200] if response.content else ""
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
