"""CheckMarket API v3 client: read the opt-out lists, add opt-outs.

See docs/providers/checkmarket.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec
import phonenumbers
import requests
from singer_sdk.authenticators import APIKeyAuthenticator
from singer_sdk.pagination import BaseHATEOASPaginator

from optouts_providers.checkmarket import webhooks, wire
from optouts_providers.http import (
    DEFAULT_TIMEOUT,
    CallStats,
    MalformedAnswerError,
    ProviderError,
    ProviderSession,
    RetryPolicy,
    _default_error_detail,
    decode_json,
)
from optouts_providers.pageguard import PageGuard
from optouts_providers.redact import register_secret
from optouts_providers.results import WriteResult
from optouts_providers.timeutil import to_rfc3339

T = TypeVar("T")
logger = logging.getLogger("optouts.checkmarket")


class CheckMarketAuthenticator(APIKeyAuthenticator):
    """Both keys on every request: `X-Master-Key` and `X-Key` ('Authentication')."""

    def __init__(self, master_key: str, key: str) -> None:
        super().__init__(key=wire.MASTER_KEY_HEADER, value=master_key, location="header")
        self.auth_headers[wire.KEY_HEADER] = key


class NextLinkPaginator(BaseHATEOASPaginator):
    """Follows `Links.Next.Href` until it is absent; never computes pages ('Paging and order')."""

    def get_next_url(self, response: requests.Response) -> str | None:
        return wire.next_href(decode_json(response))


def error_detail(response: requests.Response) -> str:
    try:
        message = wire.error_message(decode_json(response))
    except Exception:
        message = None
    return message if message is not None else _default_error_detail(response)


_MILLIS_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def record_timestamp(value: str) -> str:
    """`DateOptOut` as `to_rfc3339` writes it (fixed width, so strings compare like times).
    The documented form `...SS.mmmZ` ('Time formats') is padded as text; anything else is parsed."""
    if _MILLIS_Z.fullmatch(value):
        return value[:-1] + "000Z"
    return to_rfc3339(wire.parse_datetime(value))


def _page(body: Any) -> tuple[list[Any], int | None]:
    """(Data, Meta.TotalRowCount) of a list answer."""
    items = wire.data_items(body)
    meta = body.get("Meta")
    total = meta.get("TotalRowCount") if isinstance(meta, dict) else None
    return items, total if isinstance(total, int) and not isinstance(total, bool) else None


def _sample(value: Any) -> str:
    """A short view of an unexpected value, for an error message (an object by its keys: its
    values may be personal data)."""
    if isinstance(value, dict):
        return f"an object with keys {sorted(map(str, value))[:12]}"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def to_e164(phone: str) -> str:
    """A phone in E.164 when it parses as an international number; else as given
    ('Phone numbers')."""
    value = phone.strip()
    if _E164.fullmatch(value):
        return value  # already E.164: what parse-and-format would give back
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return value
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class CheckMarketClient:
    def __init__(
        self,
        base_url: str,
        master_key: str,
        key: str,
        *,
        page_size: int = 1000,
        batch_size: int = 1000,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        if not master_key or not key:
            raise ValueError("CheckMarket needs both master_key and key")
        register_secret(master_key)
        register_secret(key)
        self.page_size = max(1, int(page_size))
        self.batch_size = max(1, int(batch_size))
        self.session = ProviderSession(
            wire.PROVIDER,
            base_url,
            CheckMarketAuthenticator(master_key, key),
            timeout=timeout,
            retry=retry,
            default_headers={"Accept": "application/json"},
            error_detail=error_detail,
        )

    @property
    def stats(self) -> CallStats:
        return self.session.stats

    def close(self) -> None:
        self.session.close()

    # -- read -----------------------------------------------------------------------------
    def iter_optouts(
        self, start: datetime, end: datetime, survey_id: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Records of `checkmarket_optouts` with start <= DateOptOut < end, in API order; a row
        without a DateOptOut is yielded too (with DateOptOut null, and a warning): it is still
        an opt-out."""
        path = wire.optouts_path(survey_id)
        params = {"top": self.page_size, "filter": wire.window_filter(start, end)}
        low, high = to_rfc3339(start), to_rfc3339(end)
        survey = survey_id or wire.ACCOUNT_LIST
        guard = PageGuard(wire.PROVIDER, "GET", "/" + path)
        paginator = NextLinkPaginator()
        while not paginator.finished:
            link = paginator.current_value
            if link is None:
                response = self.session.request("GET", path, params=params)
            else:
                response = self.session.request("GET", wire.link_path(link.geturl()))
            items, total = self._answer(response, _page)
            guard.page(items, total)
            for item in items:
                record = self._record(response, item, survey)
                at = record["DateOptOut"]
                # The filter's DateTime literal has whole seconds: trim to the exact window.
                if at is None or low <= at < high:
                    yield record
            next_href = self._answer(response, wire.next_href)
            if next_href:
                guard.follow(wire.link_path(next_href))
            paginator.advance(response)

    def _record(self, response: requests.Response, item: Any, survey: int) -> dict[str, Any]:
        """A row as a record; a row of another shape fails naming the endpoint."""
        if not isinstance(item, dict) or item.get("ContactId") is None:
            raise self._malformed(response, f"a row that is not a contact: {_sample(item)}")
        value = item.get("DateOptOut")
        if value is None:
            logger.warning(
                "%s %s: opt-out of ContactId %s has no DateOptOut: written without a date, "
                "the bookmark does not move for it",
                wire.PROVIDER,
                self.session.endpoint(response.url),
                item["ContactId"],
            )
            return {**item, "DateOptOut": None, "SurveyId": survey}
        try:
            at = record_timestamp(value)
        except (TypeError, ValueError, AttributeError):
            detail = f"ContactId {item['ContactId']} has a DateOptOut that is not a date-time"
            raise self._malformed(response, f"{detail}: {_sample(value)}") from None
        return {**item, "DateOptOut": at, "SurveyId": survey}

    def _malformed(self, response: requests.Response, detail: str) -> ProviderError:
        method = response.request.method or "GET"
        endpoint = self.session.endpoint(response.url)
        return MalformedAnswerError(wire.PROVIDER, method, endpoint, response.status_code, detail)

    def _answer(self, response: requests.Response, read: Callable[[Any], T]) -> T:
        """`read` applied to the JSON answer; a body that is not the expected envelope fails
        with a ProviderError naming the endpoint."""
        try:
            return read(decode_json(response))
        except (msgspec.DecodeError, ValueError, KeyError, TypeError) as exc:
            method = response.request.method or "GET"
            endpoint = self.session.endpoint(response.url)
            detail = f"unexpected answer ({type(exc).__name__}: {exc})"
            raise ProviderError(
                wire.PROVIDER, method, endpoint, response.status_code, detail
            ) from None

    # -- hooks ----------------------------------------------------------------------------
    def register_hook(self, url: str) -> dict[str, Any]:
        """Register the `Panelist.Optout` hook at `url`; the registered hook (its `Data`)."""
        response = self.session.request(
            "POST", webhooks.HOOKS_PATH, data=_encode(webhooks.hook_body(url)), headers=JSON_BODY
        )
        data = self._answer(response, lambda body: (body or {}).get("Data"))
        return data if isinstance(data, dict) else {}

    # -- write ----------------------------------------------------------------------------
    def add_optouts(self, emails: Sequence[str], phones: Sequence[str]) -> WriteResult:
        """Add opt-outs in batches of `batch_size`; invalid addresses end up in `rejected`."""
        addresses = [(wire.EMAILS_KEY, e) for e in _unique(emails, str.lower)]
        addresses += [(wire.PHONES_KEY, p) for p in _unique(phones, None, to_e164)]
        result = WriteResult()
        for i in range(0, len(addresses), self.batch_size):
            result.add(self._post(addresses[i : i + self.batch_size]))
        return result

    def _post(self, batch: list[tuple[str, str]]) -> WriteResult:
        emails = [value for kind, value in batch if kind == wire.EMAILS_KEY]
        phones = [value for kind, value in batch if kind == wire.PHONES_KEY]
        response = self.session.request(
            "POST",
            wire.ACCOUNT_OPTOUTS_PATH,
            data=_encode(wire.optouts_body(emails, phones)),
            headers=JSON_BODY,
            ok=(400,),
        )
        if response.status_code == 400:
            # The API refuses the whole batch for one bad address: split until isolated
            # (checkmarket.md, 'Refused batches').
            if len(batch) == 1:
                return WriteResult(rejected=[(batch[0][1], error_detail(response))])
            middle = len(batch) // 2
            return self._post(batch[:middle]).add(self._post(batch[middle:]))
        added = sum(self._answer(response, wire.added_counts))
        return WriteResult(written=added, already_present=max(0, len(batch) - added))


JSON_BODY = {"Content-Type": "application/json"}
_encode = msgspec.json.Encoder().encode
_E164 = re.compile(r"\+[1-9]\d{6,14}")


def _unique(
    values: Sequence[str],
    key: Callable[[str], str] | None,
    convert: Callable[[str], str] | None = None,
) -> list[str]:
    """The non-empty values, trimmed (and converted), first of each key kept, in order."""
    out: dict[str, str] = {}
    for value in values:
        if not value:
            continue
        value = value.strip()
        if not value:
            continue
        if convert is not None:
            value = convert(value)
        out.setdefault(key(value) if key else value, value)
    return list(out.values())
