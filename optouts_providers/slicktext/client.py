"""SlickText clients: the legacy API (HTTP Basic) and the new API (Bearer, brand-scoped).

Both read `slicktext_optouts` records for a window [start, end) and opt numbers out
(see docs/providers/slicktext.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import requests
from singer_sdk.authenticators import BasicAuthenticator, BearerTokenAuthenticator
from singer_sdk.pagination import OffsetPaginator

from optouts_providers.http import (
    DEFAULT_TIMEOUT,
    CallStats,
    MalformedAnswerError,
    Pacer,
    ProviderError,
    ProviderSession,
    RetryPolicy,
    decode_json,
    read_answer,
)
from optouts_providers.pageguard import PageGuard
from optouts_providers.redact import register_secret
from optouts_providers.results import WriteResult
from optouts_providers.slicktext import wire
from optouts_providers.timeutil import to_rfc3339

logger = logging.getLogger("optouts.slicktext")

# A 4xx that concerns one number (it goes to `rejected`); others (401, 403, 404) stop the job.
PER_NUMBER_STATUSES = frozenset({400, 409, 422})


def _page_size(value: int | None) -> int:
    return max(1, min(int(value or wire.MAX_PAGE_SIZE), wire.MAX_PAGE_SIZE))


def _unique(numbers: list[str]) -> tuple[list[str], int]:
    """Numbers in first-seen order, and how many repeats were dropped."""
    seen: dict[str, None] = dict.fromkeys(n.strip() for n in numbers if n and n.strip())
    return list(seen), len(numbers) - len(seen)


class _ItemsPaginator(OffsetPaginator):
    """Offset paging that advances by the rows actually returned (a server that clamps the
    limit must not make the client skip rows) and ends on an empty or last page."""

    def _items(self, response: requests.Response) -> list[dict[str, Any]]:
        raise NotImplementedError

    def get_next(self, response: requests.Response) -> int | None:
        return self.current_value + len(self._items(response))


class _LegacyPaginator(_ItemsPaginator):
    """Until offset >= meta.total or an empty page ('Legacy paging': no next link)."""

    def _items(self, response: requests.Response) -> list[dict[str, Any]]:
        return read_answer(response, wire.legacy_page)[0]

    def has_more(self, response: requests.Response) -> bool:
        items, total = read_answer(response, wire.legacy_page)
        if not items:
            return False
        return total is None or self.current_value + len(items) < total


class _V2Paginator(_ItemsPaginator):
    """Until `pagingData.hasMore` is false or a short page ('New-API paging')."""

    def _items(self, response: requests.Response) -> list[dict[str, Any]]:
        return read_answer(response, wire.v2_page)[0]

    def has_more(self, response: requests.Response) -> bool:
        data, has_more = read_answer(response, wire.v2_page)
        return has_more is not False and len(data) >= self.page_size


class SlickTextLegacyClient:
    """The legacy API: `GET optouts`, `POST contacts` (form-encoded, with an `action`)."""

    provider = wire.LEGACY_PROVIDER

    def __init__(
        self,
        base_url: str,
        public_key: str,
        private_key: str,
        *,
        page_size: int = wire.MAX_PAGE_SIZE,
        optout_action: str = wire.DEFAULT_OPTOUT_ACTION,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        register_secret(public_key)
        register_secret(private_key)
        self.page_size = _page_size(page_size)
        self.optout_action = optout_action or wire.DEFAULT_OPTOUT_ACTION
        self.session = ProviderSession(
            self.provider,
            base_url,
            BasicAuthenticator(username=public_key, password=private_key),
            timeout=timeout,
            retry=retry,
            pacer=Pacer(headers=wire.RATE_HEADERS),
            default_headers={"Accept": "application/json"},
        )

    @property
    def stats(self) -> CallStats:
        return self.session.stats

    def close(self) -> None:
        self.session.close()

    def iter_optouts(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Opt-outs in [start, end). The API's bounds are inclusive Pacific wall times
        ('Repeated hour'), so the query is a little wider and the window is applied here."""
        params = {
            wire.OPTED_OUT_AFTER: wire.lower_bound(start),
            wire.OPTED_OUT_BEFORE: wire.upper_bound(end),
        }
        window = (to_rfc3339(start), to_rfc3339(end))
        guard = PageGuard(self.provider, "GET", "/" + wire.OPTOUTS_PATH)
        paginator = _LegacyPaginator(start_value=0, page_size=self.page_size)
        while not paginator.finished:
            response = self.session.request(
                "GET",
                wire.OPTOUTS_PATH,
                params={**params, "limit": self.page_size, "offset": paginator.current_value},
            )
            items, total = read_answer(response, _objects(wire.legacy_page))
            guard.page(items, total)
            for item in items:
                record = _record(
                    self.provider, guard.endpoint, wire.legacy_record, item, start, end
                )
                if _in_window(record, window):
                    yield record
            paginator.advance(response)

    def optout_numbers(self, numbers: list[str]) -> WriteResult:
        """`POST contacts` `action=<optout_action>&number=<E.164>`, one request per number."""
        unique, repeats = _unique(numbers)
        result = WriteResult(already_present=repeats)
        for number in unique:
            try:
                response = self.session.request(
                    "POST",
                    wire.LEGACY_CONTACTS_PATH,
                    data={"action": self.optout_action, "number": number},
                )
            except ProviderError as exc:
                if exc.status in PER_NUMBER_STATUSES:
                    result.rejected.append((number, exc.detail or f"HTTP {exc.status}"))
                    continue
                raise
            body = _json_or_none(response)
            if isinstance(body, dict) and body.get(wire.ALREADY_OPTED_OUT_FLAG):
                result.already_present += 1
                result.present.append(number)
            else:
                result.written += 1
        return result


class SlickTextV2Client:
    """The new API: brand-scoped contacts; an opt-out is a contact whose `opt_in_status` is
    `unsubscribed` or `blocked` ('New-API reading'). Paced below the rate limit."""

    provider = wire.V2_PROVIDER

    def __init__(
        self,
        base_url: str,
        api_key: str,
        brand_id: int | None = None,
        *,
        page_size: int = wire.MAX_PAGE_SIZE,
        requests_per_second: float | None = None,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        register_secret(api_key)
        self.page_size = _page_size(page_size)
        self._brand_id = int(brand_id) if brand_id is not None else None
        rate = float(requests_per_second or wire.DEFAULT_REQUESTS_PER_SECOND)
        self.session = ProviderSession(
            self.provider,
            base_url,
            BearerTokenAuthenticator(token=api_key),
            timeout=timeout,
            retry=retry,
            # Sliding windows anchored on answers (http.Pacer): the full rate, no 429s.
            pacer=Pacer(requests_per_second=rate, headers=wire.RATE_HEADERS),
            default_headers={"Accept": "application/json"},
        )

    @property
    def stats(self) -> CallStats:
        return self.session.stats

    def close(self) -> None:
        self.session.close()

    @property
    def brand_id(self) -> int:
        """The configured brand, else the one `GET brands` names."""
        if self._brand_id is None:
            response = self.session.request("GET", wire.BRANDS_PATH)
            brand_id = wire.brand_id_from(_json_or_none(response))
            if brand_id is None:
                raise ProviderError(
                    self.provider,
                    "GET",
                    wire.BRANDS_PATH,
                    response.status_code,
                    "the answer names no brand_id; set slicktext.brand_id",
                )
            self._brand_id = brand_id
        return self._brand_id

    def _contacts(self, **filters: str) -> Iterator[dict[str, Any]]:
        path = wire.brand_contacts_path(self.brand_id)
        guard = PageGuard(self.provider, "GET", "/" + path)
        paginator = _V2Paginator(start_value=0, page_size=self.page_size)
        while not paginator.finished:
            response = self.session.request(
                "GET",
                path,
                params={**filters, "limit": self.page_size, "offset": paginator.current_value},
            )
            data = read_answer(response, _objects(wire.v2_page))[0]
            guard.page(data, _v2_total(decode_json(response)))
            yield from data
            paginator.advance(response)

    def iter_optouts(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Unsubscribed, then blocked contacts whose status changed in [start, end). The API
        has no date filter ('New-API reading'): every opted-out contact is read, the window
        applied here."""
        window = (to_rfc3339(start), to_rfc3339(end))
        endpoint = "/" + wire.brand_contacts_path(self.brand_id)
        for status in wire.OPTED_OUT_STATUSES:
            for contact in self._contacts(opt_in_status=status):
                record = _record(self.provider, endpoint, wire.v2_record, contact, start, end)
                if _in_window(record, window):
                    yield record

    def optout_numbers(self, numbers: list[str]) -> WriteResult:
        """One pass over the brand's contacts maps numbers to contacts; then `PUT` the known
        ones to `unsubscribed` and `POST` the others as new unsubscribed contacts
        ('New-API writes')."""
        unique, repeats = _unique(numbers)
        result = WriteResult(already_present=repeats)
        if not unique:
            return result
        wanted = set(unique)
        known: dict[str, tuple[Any, str | None]] = {}
        for contact in self._contacts():
            number = contact.get("mobile_number")
            if number in wanted:
                known[number] = (contact.get("contact_id"), contact.get("opt_in_status"))
        for number in unique:
            contact_id, status = known.get(number, (None, None))
            if status in wire.OPTED_OUT_STATUSES:
                result.already_present += 1
                result.present.append(number)
                continue
            try:
                if contact_id is not None and self._unsubscribe(contact_id):
                    result.written += 1
                    continue
                self._create_unsubscribed(number)
            except ProviderError as exc:
                if exc.status in PER_NUMBER_STATUSES:
                    result.rejected.append((number, exc.detail or f"HTTP {exc.status}"))
                    continue
                raise
            result.written += 1
        return result

    def _unsubscribe(self, contact_id: Any) -> bool:
        """PUT the contact to `unsubscribed`; False when it vanished since the lookup."""
        response = self.session.request(
            "PUT",
            wire.brand_contact_path(self.brand_id, contact_id),
            json={"opt_in_status": wire.OPTOUT_STATUS},
            ok=(404,),
        )
        return response.status_code != 404

    def _create_unsubscribed(self, number: str) -> None:
        self.session.request(
            "POST",
            wire.brand_contacts_path(self.brand_id),
            json={"mobile_number": number, "opt_in_status": wire.OPTOUT_STATUS},
        )


_TOTAL = re.compile(r"\bof\s+(\d+)\s*$")


def _v2_total(body: Any) -> int | None:
    """The row count in `pagingData.currentPageString` ("1-10 of 50"), when it is there."""
    paging = body.get("pagingData") if isinstance(body, dict) else None
    text = paging.get("currentPageString") if isinstance(paging, dict) else None
    match = _TOTAL.search(text) if isinstance(text, str) else None
    return int(match.group(1)) if match else None


Page = tuple[list[dict[str, Any]], Any]


def _objects(read: Callable[[Any], Page]) -> Callable[[Any], Page]:
    """`read`, refusing a page with a row that is not an object (TypeError: read_answer makes
    it an error naming the endpoint)."""

    def checked(body: Any) -> Page:
        page = read(body)
        for row in page[0]:
            if not isinstance(row, dict):
                raise TypeError(f"a row that is a {type(row).__name__}, not an object")
        return page

    return checked


def _record(
    provider: str,
    endpoint: str,
    convert: Callable[[dict[str, Any], datetime, datetime], dict[str, Any]],
    item: dict[str, Any],
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """`convert(item, start, end)`; a row it cannot read fails naming provider and endpoint."""
    try:
        return convert(item, start, end)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"unexpected row ({type(exc).__name__}: {exc})"
        raise MalformedAnswerError(provider, "GET", endpoint, None, detail) from None


def _in_window(record: dict[str, Any], window: tuple[str, str]) -> bool:
    value = record.get("optOutDate")
    return value is not None and window[0] <= value < window[1]


def _json_or_none(response: requests.Response) -> Any:
    try:
        return decode_json(response)
    except Exception:
        return None
