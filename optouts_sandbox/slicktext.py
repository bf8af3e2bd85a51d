"""SlickText emulators: the legacy API under /slicktext, the new API under /slicktext-v2.

See docs/providers/slicktext.md. Times are stored as SlickText shows them, naive Pacific
`YYYY-MM-DD HH:MM:SS`, and compared as wall times; the true UTC instant of each row is kept
aside (`instants`) so that tests can check what a client makes of the repeated autumn hour.
Choices where the vendor is silent: `limit` over 10,000 is refused (400); a filter on an
unknown field is refused (400); the new API answers a duplicate `mobile_number` on create
with 409; `POST contacts` answers 201 with the contact.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers

from optouts_providers.slicktext import wire
from optouts_providers.timeutil import (
    PACIFIC,
    is_ambiguous_pacific,
    pacific_to_utc,
    parse_timestamp,
    utc_to_pacific,
)
from optouts_sandbox import credentials as C
from optouts_sandbox.core import Emulator, RateLimit, Request, Response, json_response
from optouts_sandbox.seed import DST_REPEATS, Person, at_provider

# Area code -> (city, state, zip): zip is an int on the legacy wire, so 02108 is 2108.
PLACES = {
    "201": ("Jersey City", "NJ", 7302),
    "212": ("New York", "NY", 10001),
    "305": ("Miami", "FL", 33101),
    "312": ("Chicago", "IL", 60601),
    "415": ("San Francisco", "CA", 94103),
    "503": ("Portland", "OR", 97201),
    "617": ("Boston", "MA", 2108),
    "702": ("Las Vegas", "NV", 89101),
    "808": ("Honolulu", "HI", 96813),
    "919": ("Raleigh", "NC", 27601),
}
# Fields `admin_add` may set on a legacy opt-out (besides number and optOutDate).
ADMIN_LEGACY_FIELDS = tuple(set(wire.LEGACY_FIELDS) - {"id", "number", "optOutDate"})
E164 = re.compile(r"\+[1-9]\d{7,14}")
TEXTWORDS = ("43434439", "51234987")
OPT_IN_METHODS = ("keyword", "api", "web form")
LEGACY_ID_BASE = 620548156000000
V2_ID_BASE = 9_100_000
# Where the seed puts too few SlickText rows in the repeated hour: 01:20 PDT and 01:20 PST
# (the same wall time twice), 01:45 PDT and 01:35 PST on 2026-11-01.
DST_RETIMES = (
    timedelta(minutes=20),
    timedelta(minutes=80),
    timedelta(minutes=45),
    timedelta(minutes=95),
)
V2_WRITABLE = frozenset(wire.V2_CONTACT_FIELDS[2:16])
V2_READ_ONLY = frozenset(wire.V2_CONTACT_FIELDS) - V2_WRITABLE | {"force_double_opt_in"}
TIMEZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
PAGING_PARAMS = frozenset({"limit", "offset", "page", "pageSize"})


class BadRequest(Exception):
    """A 400 with a message (or another status)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def slicktext_people(population: list[Person]) -> list[tuple[Person, datetime]]:
    """People opted out at SlickText with a phone, each with the instant SlickText holds.
    Some land in both passes of the repeated autumn hour, even in a small population."""
    people = [p for p in at_provider(population, "slicktext") if p.has_phone]
    times = {p.index: p.opted_out_at for p in people}
    repeat = DST_REPEATS[-1]
    passes = [_pass(p.opted_out_at) for p in people if is_ambiguous_pacific(p.opted_out_at)]
    if passes.count(0) < 2 or passes.count(1) < 2:
        movable = [p for p in people if not is_ambiguous_pacific(p.opted_out_at)]
        for person, offset in zip(movable, DST_RETIMES, strict=False):
            times[person.index] = repeat + offset
    return [(p, times[p.index]) for p in people]


def _pass(instant: datetime) -> int:
    """0 for the first (PDT) pass of a repeated Pacific hour, 1 for the second (PST)."""
    return 0 if instant.astimezone(PACIFIC).utcoffset() == timedelta(hours=-7) else 1


def normalize_number(value: str, *, strict: bool) -> str:
    """E.164 of a valid number; `strict` demands E.164 input (new API), else US national
    numbers are accepted too (legacy example `number=5556567777`)."""
    text = (value or "").strip()
    if strict and not text.startswith("+"):
        raise BadRequest("mobile_number must be in E.164 format, e.g. +15555550117")
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else "US")
    except phonenumbers.NumberParseException:
        raise BadRequest(f"Invalid phone number: {text!r}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise BadRequest(f"Invalid phone number: {text!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def admin_number(value: Any) -> str:
    """A number given to `admin_add` (trusted test input): E.164 taken as is, which keeps bulk
    loads fast; anything else goes through full validation."""
    text = str(value or "").strip()
    return text if E164.fullmatch(text) else normalize_number(text, strict=False)


def wall_and_instant(value: Any, default: datetime) -> tuple[str, datetime]:
    """A Pacific wall time and its instant from a naive Pacific string (earlier instant when
    ambiguous), an RFC 3339 string (exact), or `default` (UTC)."""
    if not value:
        instant = default
    else:
        text = str(value).strip()
        try:
            wire.parse_pacific_wall(text)
        except ValueError:
            instant = parse_timestamp(text)
        else:
            return text, pacific_to_utc(text)
    instant = instant.astimezone(UTC).replace(microsecond=0)
    return utc_to_pacific(instant), instant


def _md5(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def _int_arg(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.arg(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if value < low:
        raise BadRequest(f"{name} must be at least {low}")
    if high is not None and value > high:
        raise BadRequest(f"{name} may be at most {high}")
    return value


class _SlickTextBase(Emulator):
    """What both APIs share: rate-limit headers, JSON errors, routing with 400s."""

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        self._listings: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}

    def rate_limit_headers(self, limit: RateLimit, remaining: int, reset: float) -> dict[str, str]:
        headers = wire.RATE_HEADERS
        ceiling = limit.per_window or limit.per_second or 0
        return {
            headers.limit: str(int(ceiling)),
            headers.remaining: str(remaining),
            headers.reset: str(max(0, int(-(-reset // 1)))),
        }

    def handle(self, request: Request) -> Response:
        if not self.authorized(request):
            return self.error(request, 401, "Unauthenticated: invalid API credentials")
        try:
            with self.lock:
                try:
                    return self.route(request, [s for s in request.path.split("/") if s])
                finally:
                    if request.method != "GET":
                        self.changed()
        except BadRequest as exc:
            return self.error(request, exc.status, str(exc))

    def changed(self) -> None:
        """The stored contacts or opt-outs may have changed: forget the cached listings."""
        self._listings.clear()

    def matching(
        self, request: Request, rows: Callable[[], Iterable[dict[str, Any]]], tests: list[Any]
    ) -> list[dict[str, Any]]:
        """The rows a listing's filters select, computed once per distinct filter set while
        nothing changes (a client pages through the same listing many times)."""
        key = tuple(
            sorted(
                (name, values[0])
                for name, values in request.query.items()
                if name not in PAGING_PARAMS
            )
        )
        cached = self._listings.get(key)
        if cached is None:
            if len(self._listings) >= 16:
                self._listings.clear()
            cached = self._listings[key] = [r for r in rows() if all(t(r) for t in tests)]
        return cached

    def authorized(self, request: Request) -> bool:
        raise NotImplementedError

    def route(self, request: Request, parts: list[str]) -> Response:
        raise NotImplementedError

    def now_wall(self) -> tuple[str, datetime]:
        instant = self.clock.now().replace(microsecond=0)
        return utc_to_pacific(instant), instant


class SlickTextLegacyEmulator(_SlickTextBase):
    """The legacy API: Basic auth, `GET optouts[/{id}]`, form-encoded `POST contacts`."""

    prefix = "slicktext"
    rate_limit_key = "slicktext"

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        self.optouts: dict[str, dict[str, Any]] = {}
        self.instants: dict[str, datetime] = {}
        self.by_number: dict[str, str] = {}
        self.contacts: dict[str, dict[str, Any]] = {}  # subscribed, by number
        self._order: list[dict[str, Any]] | None = None
        self._next_id = LEGACY_ID_BASE + 10_000_000

    # -- seed, inspection, admin ----------------------------------------------------------
    def seed(self, population: Iterable[Person]) -> None:
        population = list(population)
        with self.lock:
            self.changed()
            self.optouts.clear()
            self.instants.clear()
            self.by_number.clear()
            self.contacts.clear()
            self._order = None
            for person, instant in slicktext_people(population):
                item = self._item_for(person, instant)
                self._store(item, instant)
            for person in subscribed_people(population):
                self.contacts[person.phone] = self._item_for(person, None)

    def _item_for(self, person: Person, instant: datetime | None) -> dict[str, Any]:
        city, state, zip_code = PLACES.get(person.phone[2:5], (None, None, None))
        subscribed = (instant or person.opted_out_at) - timedelta(days=1 + person.index % 400)
        born = None
        if person.index % 4 == 0:
            born = (
                f"{1960 + person.index % 40}-{person.index % 12 + 1:02d}-"
                f"{person.index % 28 + 1:02d} 00:00:00"
            )
        return {
            "id": str(LEGACY_ID_BASE + person.index),
            "number": person.phone,
            "city": city,
            "state": state,
            "zipCode": zip_code,
            "country": "US",
            "textword": TEXTWORDS[person.index % len(TEXTWORDS)],
            "subscribedDate": utc_to_pacific(subscribed),
            "optOutDate": utc_to_pacific(instant) if instant else None,
            "firstName": person.first_name,
            "lastName": person.last_name,
            "birthDate": born,
            "email": person.email if person.has_email else None,
            "optInMethod": OPT_IN_METHODS[person.index % len(OPT_IN_METHODS)],
        }

    def _store(self, item: dict[str, Any], instant: datetime) -> None:
        self.optouts[item["id"]] = item
        self.instants[item["id"]] = instant
        self.by_number[item["number"]] = item["id"]
        self._order = None

    def _opt_out(
        self, number: str, wall: str, instant: datetime, fields: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Move a subscribed contact to the opt-outs, or create the opt-out."""
        item = self.contacts.pop(number, None)
        if item is None:
            self._next_id += 1
            item = dict.fromkeys(wire.LEGACY_FIELDS)
            item.update(id=str(self._next_id), number=number, country="US", optInMethod="api")
            item.update(textword=TEXTWORDS[0], subscribedDate=wall)
        item = {**item, **(fields or {}), "optOutDate": wall}
        self._store(item, instant)
        self.sandbox.webhooks.slicktext_optout(_subscriber(item), instant.timestamp())
        return item

    def inspect(self) -> dict[str, Any]:
        with self.lock:
            emails = sorted({i["email"].lower() for i in self.optouts.values() if i["email"]})
            return {
                "count": len(self.optouts),
                "phones": sorted(self.by_number),
                "emails": emails,
                "hashes": sorted({_md5(e) for e in emails}),
                "subscribed_count": len(self.contacts),
            }

    def admin_add(self, records: list[dict[str, Any]]) -> int:
        added = 0
        with self.lock:
            self.changed()
            for record in records:
                number = admin_number(record.get("number"))
                if number in self.by_number:
                    continue
                wall, instant = wall_and_instant(record.get("optOutDate"), self.clock.now())
                extra = {k: record[k] for k in ADMIN_LEGACY_FIELDS if k in record}
                self._opt_out(number, wall, instant, extra)
                added += 1
        return added

    # -- HTTP -----------------------------------------------------------------------------
    def credential(self, request: Request) -> str | None:
        pair = _basic_credentials(request)
        return pair[0] if pair else None

    def authorized(self, request: Request) -> bool:
        # Keys in the URL are not recognised ('Legacy authentication'): only the Authorization
        # header counts.
        return _basic_credentials(request) == (C.SLICKTEXT_PUBLIC_KEY, C.SLICKTEXT_PRIVATE_KEY)

    def route(self, request: Request, parts: list[str]) -> Response:
        if parts == ["optouts"] and request.method == "GET":
            return self._list(request)
        if len(parts) == 2 and parts[0] == "optouts" and request.method == "GET":
            item = self.optouts.get(parts[1])
            if item is None:
                raise BadRequest(f"No opt-out with id {parts[1]}", 404)
            return json_response(
                {"links": {"self": f"{request.base_url}/optouts/{parts[1]}"}, "optOuts": [item]}
            )
        if parts == ["contacts"] and request.method == "POST":
            return self._contacts_post(request)
        if parts and parts[0] in ("optouts", "contacts"):
            raise BadRequest(f"{request.method} is not allowed here", 405)
        raise BadRequest(f"Unknown resource /{'/'.join(parts)}", 404)

    def _ordered(self) -> list[dict[str, Any]]:
        if self._order is None:
            self._order = sorted(
                self.optouts.values(), key=lambda i: (i["optOutDate"], int(i["id"]))
            )
        return self._order

    def _list(self, request: Request) -> Response:
        limit = _int_arg(request, "limit", wire.LEGACY_DEFAULT_LIMIT, 1, wire.MAX_PAGE_SIZE)
        offset = _int_arg(request, "offset", 0, 0, None)
        tests = _legacy_filters(request)
        matched = self.matching(request, self._ordered, tests)
        self_link = f"{request.base_url}/optouts"
        if request.raw_query:
            self_link += "?" + request.raw_query
        return json_response(
            {
                "meta": {"limit": limit, "offset": offset, "total": len(matched)},
                "links": {"self": self_link},
                "optOuts": matched[offset : offset + limit],
            }
        )

    def _contacts_post(self, request: Request) -> Response:
        content_type = (request.header("content-type") or "").lower()
        if "json" in content_type or request.body.lstrip()[:1] in (b"{", b"["):
            raise BadRequest("POST bodies must be application/x-www-form-urlencoded, not JSON")
        form = request.form()
        action = form.get("action")
        if not action:
            raise BadRequest("action is required")
        if action != wire.DEFAULT_OPTOUT_ACTION:
            raise BadRequest(f"Unsupported action {action!r}")
        number = normalize_number(form.get("number", ""), strict=False)
        existing = self.by_number.get(number)
        if existing is not None:
            return json_response(
                {
                    "message": "This number is already opted out.",
                    wire.ALREADY_OPTED_OUT_FLAG: True,
                    "optOut": self.optouts[existing],
                }
            )
        wall, instant = self.now_wall()
        item = self._opt_out(number, wall, instant)
        return json_response(
            {"message": "Contact opted out.", wire.ALREADY_OPTED_OUT_FLAG: False, "optOut": item}
        )


def _subscriber(item: dict[str, Any]) -> dict[str, Any]:
    """A legacy opt-out as the OptOut webhook's `Subscriber`."""
    return {
        "SubscriberId": item["id"],
        "TextwordId": item.get("textword"),
        "Number": item["number"],
        "City": item.get("city"),
        "State": item.get("state"),
        "Zip": item.get("zipCode"),
        "Country": item.get("country"),
        "FirstName": item.get("firstName"),
        "LastName": item.get("lastName"),
        "Birthdate": item.get("birthDate"),
        "Email": item.get("email"),
        "DateSubscribed": item.get("subscribedDate"),
        "DateOptedOut": item.get("optOutDate"),
        "OptInSource": item.get("optInMethod"),
    }


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.header("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        user, sep, password = base64.b64decode(token.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _legacy_filters(request: Request) -> list[Callable[[dict[str, Any]], bool]]:
    """Date bounds (inclusive Pacific wall times) and exact, case-sensitive field filters."""
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for name, values in request.query.items():
        if name in ("limit", "offset"):
            continue
        value = values[0]
        if name in wire.LEGACY_DATE_PARAMS:
            field, op = wire.LEGACY_DATE_PARAMS[name]
            try:
                bound = wire.format_pacific_wall(wire.parse_pacific_wall(value))
            except ValueError:
                raise BadRequest(
                    f"Invalid {name}: expected YYYY-MM-DD HH:MM:SS (Pacific time)"
                ) from None
            tests.append(_date_test(field, op, bound))
        elif name in wire.LEGACY_FIELDS:
            tests.append(_exact_test(name, value))
        else:
            raise BadRequest(f"Unknown filter field {name!r}")
    return tests


def _date_test(field: str, op: str, bound: str) -> Callable[[dict[str, Any]], bool]:
    if op == ">=":
        return lambda item: bool(item.get(field)) and item[field] >= bound
    return lambda item: bool(item.get(field)) and item[field] <= bound


def _exact_test(field: str, value: str) -> Callable[[dict[str, Any]], bool]:
    def test(item: dict[str, Any]) -> bool:
        current = item.get(field)
        return ("" if current is None else str(current)) == value

    return test


def subscribed_people(population: list[Person]) -> list[Person]:
    """People with a phone not opted out at SlickText: about half are subscribed contacts."""
    return [
        p for p in population if p.has_phone and "slicktext" not in p.providers and p.index % 2 == 0
    ]


def not_subscribed_people(population: list[Person]) -> list[Person]:
    """A few contacts that never subscribed (they must never read as opt-outs)."""
    return [
        p
        for p in population
        if p.has_phone and "slicktext" not in p.providers and p.index % 14 == 1
    ]


class SlickTextV2Emulator(_SlickTextBase):
    """The new API: Bearer auth, `GET brands`, brand-scoped contacts CRUD."""

    prefix = "slicktext-v2"
    rate_limit_key = "slicktext-v2"

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        self.contacts: dict[int, dict[str, Any]] = {}  # insertion order = contact_id order
        self.instants: dict[int, datetime] = {}
        self.by_number: dict[str, int] = {}
        self._next_id = V2_ID_BASE + 10_000_000

    # -- seed, inspection, admin ----------------------------------------------------------
    def seed(self, population: Iterable[Person]) -> None:
        population = list(population)
        rows: list[tuple[Person, str, datetime | None]] = []
        for person, instant in slicktext_people(population):
            status = "blocked" if person.index % 5 == 0 else "unsubscribed"
            rows.append((person, status, instant))
        rows += [(p, "subscribed", None) for p in subscribed_people(population)]
        rows += [(p, "not subscribed", None) for p in not_subscribed_people(population)]
        with self.lock:
            self.changed()
            self.contacts.clear()
            self.instants.clear()
            self.by_number.clear()
            for person, status, instant in sorted(rows, key=lambda r: r[0].index):
                self._insert(self._contact_for(person, status, instant), instant)

    def _contact_for(self, person: Person, status: str, instant: datetime | None) -> dict[str, Any]:
        city, state, zip_code = PLACES.get(person.phone[2:5], (None, None, None))
        created = (instant or person.opted_out_at) - timedelta(days=1 + person.index % 400)
        changed = instant or (created if status == "subscribed" else None)
        return {
            "contact_id": V2_ID_BASE + person.index,
            "_brand_id": C.SLICKTEXT_V2_BRAND_ID,
            "first_name": person.first_name,
            "last_name": person.last_name,
            "mobile_number": person.phone,
            "mobile_number_carrier": None,
            "email": person.email if person.has_email else None,
            "birthdate": None,
            "address": None,
            "city": city,
            "state": state,
            "zip": None if zip_code is None else f"{zip_code:05d}",
            "country": "US",
            "source": OPT_IN_METHODS[person.index % len(OPT_IN_METHODS)],
            "_source_id": None,
            "sub_source": None,
            "_sub_source_id": None,
            "custom_fields": None,
            "timezone": "America/Los_Angeles",
            "language": "en",
            "opt_in_status": status,
            "last_opt_in_status_change": utc_to_pacific(changed) if changed else None,
            "created": utc_to_pacific(created),
            "last_updated": utc_to_pacific(changed or created),
        }

    def _insert(self, contact: dict[str, Any], instant: datetime | None) -> None:
        self.contacts[contact["contact_id"]] = contact
        self.by_number[contact["mobile_number"]] = contact["contact_id"]
        if instant is not None:
            self.instants[contact["contact_id"]] = instant

    def _new_contact(self, number: str) -> dict[str, Any]:
        self._next_id += 1
        wall, _ = self.now_wall()
        contact = dict.fromkeys(wire.V2_CONTACT_FIELDS)
        contact.update(contact_id=self._next_id, _brand_id=C.SLICKTEXT_V2_BRAND_ID)
        contact.update(mobile_number=number, source="api", opt_in_status="not subscribed")
        contact.update(created=wall, last_updated=wall)
        return contact

    def _set_status(
        self, contact: dict[str, Any], status: str, wall: str, instant: datetime
    ) -> None:
        if contact["opt_in_status"] != status:
            contact["opt_in_status"] = status
            contact["last_opt_in_status_change"] = wall
            self.instants[contact["contact_id"]] = instant
            if status in wire.OPTED_OUT_STATUSES:
                contact["last_updated"] = wall
                self.sandbox.webhooks.slicktext_v2_optout(dict(contact), instant.timestamp())
        contact["last_updated"] = wall

    def inspect(self) -> dict[str, Any]:
        with self.lock:
            out = [
                c for c in self.contacts.values() if c["opt_in_status"] in wire.OPTED_OUT_STATUSES
            ]
            emails = sorted({c["email"].lower() for c in out if c["email"]})
            return {
                "count": len(out),
                "phones": sorted(c["mobile_number"] for c in out),
                "emails": emails,
                "hashes": sorted({_md5(e) for e in emails}),
                "subscribed_count": sum(
                    1 for c in self.contacts.values() if c["opt_in_status"] == "subscribed"
                ),
                "blocked_count": sum(1 for c in out if c["opt_in_status"] == "blocked"),
            }

    def admin_add(self, records: list[dict[str, Any]]) -> int:
        added = 0
        with self.lock:
            self.changed()
            for record in records:
                raw = record.get("mobile_number") or record.get("number") or ""
                number = admin_number(raw)
                status = record.get("opt_in_status", wire.OPTOUT_STATUS)
                if status not in wire.OPT_IN_STATUSES:
                    raise ValueError(f"unknown opt_in_status {status!r}")
                when = record.get("optOutDate") or record.get("last_opt_in_status_change")
                wall, instant = wall_and_instant(when, self.clock.now())
                contact_id = self.by_number.get(number)
                if contact_id is None:
                    contact = self._new_contact(number)
                    contact.update(
                        {
                            k: v
                            for k, v in record.items()
                            if k in V2_WRITABLE and k not in ("mobile_number", "opt_in_status")
                        }
                    )
                    self._insert(contact, None)
                else:
                    contact = self.contacts[contact_id]
                    if contact["opt_in_status"] == status:
                        continue
                self._set_status(contact, status, wall, instant)
                added += 1
        return added

    # -- HTTP -----------------------------------------------------------------------------
    def credential(self, request: Request) -> str | None:
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    def authorized(self, request: Request) -> bool:
        return self.credential(request) == C.SLICKTEXT_V2_API_KEY

    def route(self, request: Request, parts: list[str]) -> Response:
        method = request.method
        if parts == ["brands"] and method == "GET":
            return json_response(_brand())
        if len(parts) < 3 or parts[0] != "brands" or parts[2] != "contacts":
            raise BadRequest(f"Unknown resource /{'/'.join(parts)}", 404)
        if parts[1] != str(C.SLICKTEXT_V2_BRAND_ID):
            raise BadRequest("Brand not found", 404)
        if len(parts) == 3:
            if method == "GET":
                return self._list(request)
            if method == "POST":
                return self._create(request)
        elif len(parts) == 4:
            contact = self._contact(parts[3])
            if method == "GET":
                return json_response(contact)
            if method == "PUT":
                return self._update(request, contact)
            if method == "DELETE":
                del self.contacts[contact["contact_id"]]
                del self.by_number[contact["mobile_number"]]
                return json_response({"message": "Contact deleted."})
        raise BadRequest(f"{method} is not allowed here", 405)

    def _contact(self, raw_id: str) -> dict[str, Any]:
        contact = self.contacts.get(int(raw_id)) if raw_id.isdigit() else None
        if contact is None:
            raise BadRequest("Contact not found", 404)
        return contact

    def _list(self, request: Request) -> Response:
        if request.arg("limit", "offset") is not None or request.arg("page", "pageSize") is None:
            limit = _int_arg(request, "limit", wire.V2_DEFAULT_LIMIT, 1, wire.MAX_PAGE_SIZE)
            offset = _int_arg(request, "offset", 0, 0, None)
        else:
            limit = _int_arg(request, "pageSize", wire.V2_DEFAULT_LIMIT, 1, wire.MAX_PAGE_SIZE)
            offset = (_int_arg(request, "page", 1, 1, None) - 1) * limit
        tests = []
        for name, values in request.query.items():
            if name in ("limit", "offset", "page", "pageSize"):
                continue
            if name not in V2_WRITABLE | V2_READ_ONLY:
                raise BadRequest(f"Unknown filter field {name!r}")
            tests.append(_exact_test(name, values[0]))
        matched = self.matching(request, self.contacts.values, tests)
        page = matched[offset : offset + limit]
        return json_response(
            {
                "data": page,
                "pagingData": wire.v2_paging_data(offset, limit, len(page), len(matched)),
            }
        )

    def _create(self, request: Request) -> Response:
        body = _json_object(request)
        if not body.get("mobile_number"):
            raise BadRequest("mobile_number is required")
        number = normalize_number(str(body["mobile_number"]), strict=True)
        if number in self.by_number:
            raise BadRequest("A contact with this mobile_number already exists.", 409)
        contact = self._new_contact(number)
        self._apply(contact, {k: v for k, v in body.items() if k != "mobile_number"})
        self._insert(contact, None)
        return json_response(contact, 201)

    def _update(self, request: Request, contact: dict[str, Any]) -> Response:
        self._apply(contact, _json_object(request))
        return json_response(contact)

    def _apply(self, contact: dict[str, Any], changes: dict[str, Any]) -> None:
        """Validate every change first, then apply them (a 400 changes nothing)."""
        unknown = set(changes) - V2_WRITABLE - V2_READ_ONLY
        if unknown:
            raise BadRequest(f"Unknown field(s): {', '.join(sorted(unknown))}")
        updates = {k: v for k, v in changes.items() if k in V2_WRITABLE}
        status = updates.pop("opt_in_status", None)
        if status is not None and status not in wire.OPT_IN_STATUSES:
            raise BadRequest(f"opt_in_status must be one of: {', '.join(wire.OPT_IN_STATUSES)}")
        if updates.get("timezone") not in (None, *TIMEZONES):
            raise BadRequest(f"timezone must be one of: {', '.join(TIMEZONES)}")
        if "mobile_number" in updates:
            number = normalize_number(str(updates["mobile_number"]), strict=True)
            if self.by_number.get(number, contact["contact_id"]) != contact["contact_id"]:
                raise BadRequest("A contact with this mobile_number already exists.", 409)
            self.by_number.pop(contact["mobile_number"], None)
            updates["mobile_number"] = number
            self.by_number[number] = contact["contact_id"]
        contact.update(updates)
        wall, instant = self.now_wall()
        if status is not None:
            self._set_status(contact, status, wall, instant)
        contact["last_updated"] = wall


def _brand() -> dict[str, Any]:
    return {
        "brand_id": C.SLICKTEXT_V2_BRAND_ID,
        "name": "Sandbox Brand",
        "opt_out_intel_enabled": False,
        "timezone": "America/Los_Angeles",
    }


def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object")
    return body
