"""The legacy SlickText API emulator, under /slicktext: Basic auth, `GET optouts[/{id}]`,
form-encoded `POST contacts` (see docs/providers/slicktext.md)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from optouts_providers.slicktext import wire
from optouts_providers.timeutil import utc_to_pacific
from optouts_sandbox import credentials as C
from optouts_sandbox.core import Request, Response, json_response
from optouts_sandbox.seed import Person
from optouts_sandbox.slicktext.base import (
    BadRequest,
    SlickTextBase,
    admin_number,
    email_md5,
    exact_test,
    int_arg,
    normalize_number,
    wall_and_instant,
)
from optouts_sandbox.slicktext.population import (
    OPT_IN_METHODS,
    PLACES,
    slicktext_people,
    subscribed_people,
)

# Fields `admin_add` may set on a legacy opt-out (besides number and optOutDate).
ADMIN_LEGACY_FIELDS = tuple(set(wire.LEGACY_FIELDS) - {"id", "number", "optOutDate"})
TEXTWORDS = ("43434439", "51234987")
LEGACY_ID_BASE = 620548156000000


class SlickTextLegacyEmulator(SlickTextBase):
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
                "hashes": sorted({email_md5(e) for e in emails}),
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
        limit = int_arg(request, "limit", wire.LEGACY_DEFAULT_LIMIT, 1, wire.MAX_PAGE_SIZE)
        offset = int_arg(request, "offset", 0, 0, None)
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
            tests.append(exact_test(name, value))
        else:
            raise BadRequest(f"Unknown filter field {name!r}")
    return tests


def _date_test(field: str, op: str, bound: str) -> Callable[[dict[str, Any]], bool]:
    if op == ">=":
        return lambda item: bool(item.get(field)) and item[field] >= bound
    return lambda item: bool(item.get(field)) and item[field] <= bound
