"""CheckMarket API v3 emulator: the account's opt-out list and two surveys' lists
(see docs/providers/checkmarket.md). Wire details come from `optouts_providers.checkmarket.wire`."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec
import phonenumbers

from optouts_providers.checkmarket import webhooks as cm_hooks
from optouts_providers.checkmarket import wire
from optouts_providers.timeutil import parse_timestamp
from optouts_sandbox import credentials as C
from optouts_sandbox.checkmarket_query import Filter, link_query, list_options
from optouts_sandbox.core import Emulator, RateLimit, Request, Response, json_response
from optouts_sandbox.seed import Person

CONTACT_ID_BASE = 50_000_000
SURVEY_IDS = (1001, 1002)
# Page sizes whose borders the seed makes sure a tie on DateOptOut straddles.
TIE_PAGE_SIZES = (25, 1000)
LANG_CODES = ("en", "nl", "fr", "de")
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "DateOptOut": datetime,
    "LangCode": str,
    "ContactId": int,
    "FirstName": str,
    "LastName": str,
    "Email": str,
    wire.PHONE_FIELD: str,
}
_encoder = msgspec.json.Encoder()
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
_SURVEY_PATH = re.compile(r"^/3/surveys/([^/]+)/contacts/optouts/?$")


@dataclass(slots=True)
class Row:
    contact_id: int
    date_optout: datetime
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    lang_code: str = "en"
    surveys: frozenset[int] = frozenset()
    _encoded: msgspec.Raw | None = None  # the page item as JSON, made once

    def encoded(self) -> msgspec.Raw:
        """The row as a page item (every field), encoded once: pages are mostly this."""
        if self._encoded is None:
            self._encoded = msgspec.Raw(_encoder.encode(self.item()))
        return self._encoded

    def get(self, name: str, default: Any = None) -> Any:
        """One typed value by field name (what filters and sorting read)."""
        getter = _FIELD_GETTERS.get(name)
        if getter is None:
            return default
        value = getter(self)
        return default if value is None else value

    def values(self) -> dict[str, Any]:
        """Typed values, for filters and sorting."""
        out: dict[str, Any] = {
            "DateOptOut": self.date_optout,
            "LangCode": self.lang_code,
            "ContactId": self.contact_id,
            "FirstName": self.first_name,
            "LastName": self.last_name,
            "Email": self.email,
        }
        if self.email is None:
            out[wire.PHONE_FIELD] = self.phone
        return out

    def item(self) -> dict[str, Any]:
        out = self.values()
        out["DateOptOut"] = wire.format_date_optout(self.date_optout)
        return out


_FIELD_GETTERS: dict[str, Callable[[Row], Any]] = {
    "DateOptOut": attrgetter("date_optout"),
    "LangCode": attrgetter("lang_code"),
    "ContactId": attrgetter("contact_id"),
    "FirstName": attrgetter("first_name"),
    "LastName": attrgetter("last_name"),
    "Email": attrgetter("email"),
    wire.PHONE_FIELD: lambda row: None if row.email is not None else row.phone,
}


def default_order_key(row: Row) -> int:
    """No order is promised ('Paging and order'): a fixed shuffle by ContactId, stable for
    offset paging."""
    return (row.contact_id * 2654435761) % 2**32


def _all_valid_emails(values: list[Any]) -> bool:
    return all(type(v) is str for v in values) and all(map(_EMAIL.match, values))


def valid_email(value: Any) -> bool:
    return isinstance(value, str) and bool(_EMAIL.match(value))


def valid_phone(value: Any) -> bool:
    """E.164 only ('Phone numbers'): `+` and digits, and a number phonenumbers accepts."""
    if not isinstance(value, str) or not re.fullmatch(r"\+[1-9]\d{6,14}", value):
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(value, None))
    except phonenumbers.NumberParseException:
        return False


class CheckMarketEmulator(Emulator):
    prefix = "checkmarket"
    rate_limit_key = "checkmarket"

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        self.rows: list[Row] = []
        self._by_email: dict[str, Row] = {}
        self._by_phone: dict[str, Row] = {}
        self._next_id = CONTACT_ID_BASE
        # Filtered, ordered views of the rows, valid while `_version` is unchanged.
        self._version = 0
        self._views: dict[tuple[Any, ...], tuple[int, list[Row]]] = {}
        # Tests: absolute base of the links handed out (None = the sandbox's own host), e.g.
        # the legacy host of the vendor sample ('Next links'); a hook called before each list page.
        self.link_base: str | None = None
        self.page_hook: Callable[[Request], None] | None = None

    # -- hooks of the sandbox -----------------------------------------------------------------
    def credential(self, request: Request) -> str | None:
        return request.header(wire.KEY_HEADER)

    def rate_limited(self, request: Request, retry_after: float) -> Response:
        # 'Throttling': the status is undocumented; 429 in the envelope with Retry-After.
        wait = max(1, math.ceil(retry_after))
        response = self.error(request, 429, "API throttling limit reached")
        response.headers["Retry-After"] = str(wait)
        return response

    def rate_limit_headers(self, limit: RateLimit, remaining: int, reset: float) -> dict[str, str]:
        return {}

    def error(self, request: Request, status: int, message: str) -> Response:
        return json_response(wire.error_envelope(status, message, self.clock.now()), status)

    # -- seed, inspection, admin ----------------------------------------------------------------
    def seed(self, population: Iterable[Person]) -> None:
        with self.lock:
            self.rows, self._by_email, self._by_phone = [], {}, {}
            size = 0
            for person in population:
                size += 1
                if self.prefix not in person.providers:
                    continue
                row = Row(
                    contact_id=CONTACT_ID_BASE + person.index,
                    date_optout=person.opted_out_at,
                    email=person.email if person.has_email else None,
                    phone=None if person.has_email else person.phone,
                    first_name=person.first_name,
                    last_name=person.last_name,
                    lang_code=LANG_CODES[person.index % len(LANG_CODES)],
                    surveys=_surveys_of(person.index),
                )
                self._store(row)
            self._next_id = CONTACT_ID_BASE + size
            _straddle_ties(self.rows)
            self._views.clear()
            self._version += 1

    def _store(self, row: Row) -> None:
        self._version += 1
        self.rows.append(row)
        if row.email is not None:
            self._by_email[row.email.lower()] = row
        if row.phone is not None:
            self._by_phone[row.phone] = row

    def inspect(self) -> dict[str, Any]:
        with self.lock:
            emails = sorted(r.email.lower() for r in self.rows if r.email)
            return {
                "count": len(self.rows),
                "emails": emails,
                "phones": sorted(r.phone for r in self.rows if r.phone),
                "hashes": sorted(hashlib.md5(e.encode()).hexdigest() for e in emails),
                "surveys": {
                    str(s): sum(1 for r in self.rows if s in r.surveys) for s in SURVEY_IDS
                },
            }

    def admin_add(self, records: list[dict[str, Any]]) -> int:
        """Records {"Email", "PhoneNumber", "DateOptOut"?, "SurveyId"?, "FirstName"?,
        "LastName"?}; an address already opted out only joins the survey. Returns rows added."""
        added = 0
        with self.lock:
            for record in records:
                at = record.get("DateOptOut")
                when = parse_timestamp(at) if at else self.clock.now()
                row = self._add(
                    record.get("Email"),
                    record.get(wire.PHONE_FIELD),
                    when,
                    record.get("FirstName"),
                    record.get("LastName"),
                )
                if row is None:
                    row = self._find(record.get("Email"), record.get(wire.PHONE_FIELD))
                else:
                    added += 1
                survey = record.get("SurveyId")
                if survey is not None and row is not None:
                    row.surveys = _shared(row.surveys | {int(survey)})
                    self._version += 1
        return added

    def _find(self, email: str | None, phone: str | None) -> Row | None:
        if email:
            return self._by_email.get(email.lower())
        return self._by_phone.get(phone) if phone else None

    def _add(
        self,
        email: str | None,
        phone: str | None,
        when: datetime,
        first: str | None = None,
        last: str | None = None,
    ) -> Row | None:
        """A new opt-out row, or None when the address is already opted out."""
        if (not email and not phone) or self._find(email, phone) is not None:
            return None
        if when.microsecond % 1000:
            when = when.replace(microsecond=when.microsecond // 1000 * 1000)
        row = Row(self._next_id, when, email or None, None if email else phone, first, last)
        self._next_id += 1
        self._store(row)
        self._emit(row)
        return row

    def _emit(self, row: Row) -> None:
        """The Panelist.Optout webhook of a new opt-out (to every registered hook)."""
        if self.sandbox.webhooks.hooks:
            contact = {**row.item(), "OptoutSourceId": 64, "Surveys": [], "Groups": []}
            self.sandbox.webhooks.checkmarket_optout(contact, row.date_optout.timestamp())

    def _add_emails(self, emails: list[str], when: datetime) -> int:
        """`_add` for each email (when in whole milliseconds), in one loop: POSTs carry
        thousands."""
        known, rows, next_id = self._by_email, self.rows, self._next_id
        for email in emails:
            lowered = email.lower()
            if lowered in known:
                continue
            row = Row(next_id, when, email, None, None, None)
            next_id += 1
            rows.append(row)
            known[lowered] = row
            self._emit(row)
        added = next_id - self._next_id
        self._next_id = next_id
        self._version += added
        return added

    # -- the API ------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        master = request.header(wire.MASTER_KEY_HEADER)
        key = request.header(wire.KEY_HEADER)
        if master != C.CHECKMARKET_MASTER_KEY or key not in (
            C.CHECKMARKET_KEY,
            C.CHECKMARKET_KEY_NO_ROLES,
        ):
            return self.error(request, 401, "Invalid or missing X-Master-Key / X-Key")
        path = request.path.rstrip("/")
        if path == "/" + cm_hooks.HOOKS_PATH or path.startswith(f"/{cm_hooks.HOOKS_PATH}/"):
            return self.sandbox.webhooks.hooks_api(request, path)
        survey = _SURVEY_PATH.match(request.path)
        if path != "/" + wire.ACCOUNT_OPTOUTS_PATH and survey is None:
            return self.error(request, 404, f"No resource at {request.path}")
        if key == C.CHECKMARKET_KEY_NO_ROLES:
            return self.error(request, 403, "The key lacks the Contacts role for this call")
        if survey is not None:
            if request.method != "GET":
                return self.error(request, 405, "Method not allowed")
            raw = survey.group(1)
            if not raw.isdigit() or int(raw) not in SURVEY_IDS:
                return self.error(request, 404, f"Survey {raw} not found")
            return self._list(request, int(raw))
        if request.method == "GET":
            return self._list(request, None)
        if request.method == "POST":
            return self._post(request)
        return self.error(request, 405, "Method not allowed")

    def _list(self, request: Request, survey_id: int | None) -> Response:
        try:
            top, skip, text, expression, order, select = list_options(
                request.query, int(self.switches.checkmarket_max_top), FIELD_TYPES
            )
        except wire.FilterError as exc:
            return self.error(request, 400, str(exc))
        if self.page_hook is not None:
            self.page_hook(request)
        rows = self._view(survey_id, text, expression, order)
        page = rows[skip : skip + top]
        items = [_item(row.values(), select) if select else row.encoded() for row in page]
        total = len(rows)
        options = {"top": top, "filter": text, "orderby": request_orderby(request)}
        options["select"] = ",".join(select) if select else None
        base = (self.link_base or request.base_url).rstrip("/") + "/" + request.path.lstrip("/")
        links: dict[str, Any] = {}
        if skip + top < total:
            links["Next"] = wire.link(f"{base}?{link_query({**options, 'skip': skip + top})}")
        if skip > 0:
            links["Previous"] = wire.link(
                f"{base}?{link_query({**options, 'skip': max(0, skip - top)})}"
            )
        paging = {
            "TotalRowCount": total,
            "Limit": top,
            "Offset": skip,
            "TotalPageCount": math.ceil(total / top),
            "StartRec": skip + 1 if page else 0,
            "StopRec": skip + len(page),
            "IsFiltered": text is not None,
        }
        return json_response(wire.envelope(items, self.clock.now(), paging=paging, links=links))

    def _view(
        self,
        survey_id: int | None,
        text: str | None,
        expression: Filter | None,
        order: list[tuple[str, bool]],
    ) -> list[Row]:
        """The rows of a list, filtered and ordered (cached until the rows change)."""
        key = (survey_id, text, tuple(order))
        with self.lock:
            cached = self._views.get(key)
            if cached is not None and cached[0] == self._version:
                return cached[1]
            rows = [r for r in self.rows if survey_id is None or survey_id in r.surveys]
            rows.sort(key=default_order_key)
            if expression is not None:
                rows = [r for r in rows if expression.matches(r)]
            for name, descending in reversed(order):
                rows.sort(key=lambda r, n=name: _sort_key(r.get(n)), reverse=descending)
            if len(self._views) >= 16:
                self._views.clear()
            self._views[key] = (self._version, rows)
            return rows

    def _post(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return self.error(request, 400, "The body is not valid JSON")
        if not isinstance(body, dict):
            return self.error(request, 400, "The body must be a JSON object")
        emails = body.get(wire.EMAILS_KEY) or []
        phones = body.get(wire.PHONES_KEY) or []
        if not isinstance(emails, list) or not isinstance(phones, list):
            return self.error(request, 400, "EmailAddresses and PhoneNumbers must be arrays")
        if not emails and not phones:
            return self.error(request, 400, "No EmailAddresses or PhoneNumbers given")
        if not _all_valid_emails(emails):  # one pass for the whole list; then which one
            for value in emails:
                if not valid_email(value):
                    return self.error(request, 400, f"Invalid email address: {value!r}")
        for value in phones:
            if not valid_phone(value):
                return self.error(request, 400, f"Invalid phone number: {value!r}")
        now = self.clock.now()
        when = now.replace(microsecond=now.microsecond // 1000 * 1000)
        with self.lock:
            emails_added = self._add_emails(emails, when)
            phones_added = sum(self._add(None, p, when) is not None for p in phones)
        data = {wire.EMAILS_ADDED_KEY: emails_added, wire.PHONES_ADDED_KEY: phones_added}
        return json_response(wire.envelope(data, now))


def _surveys_of(index: int) -> frozenset[int]:
    """Deterministic, overlapping subsets: 1001 holds about 2/3, 1002 about 1/2."""
    out = set()
    if index % 3 != 2:
        out.add(SURVEY_IDS[0])
    if index % 2 == 0:
        out.add(SURVEY_IDS[1])
    return _shared(frozenset(out))


_SURVEY_SETS: dict[frozenset[int], frozenset[int]] = {}


def _shared(surveys: frozenset[int]) -> frozenset[int]:
    """One object per distinct set of surveys (rows share them)."""
    return _SURVEY_SETS.setdefault(surveys, surveys)


def _straddle_ties(rows: list[Row]) -> None:
    """Make a tie on DateOptOut straddle every page border of TIE_PAGE_SIZES in DateOptOut
    order: the row after a border gets the time of the row before it (the order is kept)."""
    ordered = sorted(rows, key=lambda r: (r.date_optout, r.contact_id))
    borders = {b for size in TIE_PAGE_SIZES for b in range(size, len(ordered), size)}
    for border in sorted(borders):
        before, after = ordered[border - 1], ordered[border]
        if after.date_optout != before.date_optout:
            after.date_optout = before.date_optout
            after._encoded = None


def request_orderby(request: Request) -> str | None:
    return wire.option(request.query, "orderby")


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if value is None else (1, value)


def _item(values: dict[str, Any], select: list[str]) -> dict[str, Any]:
    out = dict(values)
    out["DateOptOut"] = wire.format_date_optout(values["DateOptOut"])
    if select:
        out = {k: out.get(k) for k in select}
    return out
