"""The new SlickText API emulator, under /slicktext-v2: Bearer auth, `GET brands`,
brand-scoped contacts CRUD (see docs/providers/slicktext.md). A duplicate `mobile_number` on
create is answered 409; `POST contacts` answers 201 with the contact."""

from __future__ import annotations

from collections.abc import Iterable
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
    not_subscribed_people,
    slicktext_people,
    subscribed_people,
)

V2_ID_BASE = 9_100_000
V2_WRITABLE = frozenset(wire.V2_CONTACT_FIELDS[2:16])
V2_READ_ONLY = frozenset(wire.V2_CONTACT_FIELDS) - V2_WRITABLE | {"force_double_opt_in"}
TIMEZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")


class SlickTextV2Emulator(SlickTextBase):
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
                "hashes": sorted({email_md5(e) for e in emails}),
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
            limit = int_arg(request, "limit", wire.V2_DEFAULT_LIMIT, 1, wire.MAX_PAGE_SIZE)
            offset = int_arg(request, "offset", 0, 0, None)
        else:
            limit = int_arg(request, "pageSize", wire.V2_DEFAULT_LIMIT, 1, wire.MAX_PAGE_SIZE)
            offset = (int_arg(request, "page", 1, 1, None) - 1) * limit
        tests = []
        for name, values in request.query.items():
            if name in ("limit", "offset", "page", "pageSize"):
                continue
            if name not in V2_WRITABLE | V2_READ_ONLY:
                raise BadRequest(f"Unknown filter field {name!r}")
            tests.append(exact_test(name, values[0]))
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
