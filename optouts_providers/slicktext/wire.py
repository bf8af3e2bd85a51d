"""SlickText wire format, shared by the clients and the sandbox emulators.

Both APIs (see docs/providers/slicktext.md) speak naive Pacific `YYYY-MM-DD HH:MM:SS`; records
carry RFC 3339 UTC ('Pacific time').
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from optouts_providers.http import RateHeaders
from optouts_providers.timeutil import (
    NAIVE_FORMAT,
    PACIFIC,
    is_ambiguous_pacific,
    pacific_to_utc,
    to_rfc3339,
    utc_to_pacific,
)

LEGACY_PROVIDER = "SlickText"
V2_PROVIDER = "SlickText (new API)"
LEGACY_DEFAULT_BASE_URL = "https://api.slicktext.com/v1"
V2_DEFAULT_BASE_URL = "https://dev.slicktext.com/v1"

MAX_PAGE_SIZE = 10_000
LEGACY_DEFAULT_LIMIT = 20
V2_DEFAULT_LIMIT = 50

# -- legacy API paths and fields ---------------------------------------------------------
OPTOUTS_PATH = "optouts"
LEGACY_CONTACTS_PATH = "contacts"
DEFAULT_OPTOUT_ACTION = "OPTOUT"  # inferred ('Legacy writes'): keep it a setting
OPTED_OUT_AFTER = "optedOutAfter"
OPTED_OUT_BEFORE = "optedOutBefore"
SUBSCRIBED_AFTER = "subscribedAfter"
SUBSCRIBED_BEFORE = "subscribedBefore"
LEGACY_DATE_PARAMS = {
    OPTED_OUT_AFTER: ("optOutDate", ">="),
    OPTED_OUT_BEFORE: ("optOutDate", "<="),
    SUBSCRIBED_AFTER: ("subscribedDate", ">="),
    SUBSCRIBED_BEFORE: ("subscribedDate", "<="),
}
LEGACY_FIELDS = (
    "id",
    "number",
    "city",
    "state",
    "zipCode",
    "country",
    "textword",
    "subscribedDate",
    "optOutDate",
    "firstName",
    "lastName",
    "birthDate",
    "email",
    "optInMethod",
)
# A legacy POST answer for a number that was already opted out carries this flag.
ALREADY_OPTED_OUT_FLAG = "alreadyOptedOut"

# -- new API paths and values ------------------------------------------------------------
BRANDS_PATH = "brands"
OPT_IN_STATUSES = ("not subscribed", "subscribed", "unsubscribed", "blocked")
OPTED_OUT_STATUSES = ("unsubscribed", "blocked")
OPTOUT_STATUS = "unsubscribed"

# A contact's fields in the order the API lists them; [2:16] are the writable ones.
V2_CONTACT_FIELDS = (
    "contact_id",
    "_brand_id",
    "first_name",
    "last_name",
    "mobile_number",
    "email",
    "birthdate",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "timezone",
    "language",
    "opt_in_status",
    "custom_fields",
    "mobile_number_carrier",
    "source",
    "_source_id",
    "sub_source",
    "_sub_source_id",
    "last_opt_in_status_change",
    "created",
    "last_updated",
)

RATE_HEADERS = RateHeaders(
    limit="x-RateLimit",
    remaining="x-RateLimit-Remaining",
    reset="x-RateLimit-Reset",
    reset_is_epoch=False,  # seconds until the window resets ('Rate limits')
)
DEFAULT_REQUESTS_PER_SECOND = 8.0


def brand_contacts_path(brand_id: int | str) -> str:
    return f"{BRANDS_PATH}/{brand_id}/contacts"


def brand_contact_path(brand_id: int | str, contact_id: int | str) -> str:
    return f"{BRANDS_PATH}/{brand_id}/contacts/{contact_id}"


# -- Pacific time ------------------------------------------------------------------------
def parse_pacific_wall(value: str) -> datetime:
    """A naive Pacific wall time `YYYY-MM-DD HH:MM:SS` (strict); raises ValueError."""
    return datetime.strptime(value.strip(), NAIVE_FORMAT)


def format_pacific_wall(value: datetime) -> str:
    return value.strftime(NAIVE_FORMAT)


def pacific_instants(wall: str) -> tuple[datetime, datetime]:
    """Both UTC instants of a Pacific wall time: equal unless it is in the repeated hour.
    (A wall time skipped in spring reads as timeutil reads it, with the standard offset.)"""
    local = parse_pacific_wall(wall)
    early = local.replace(tzinfo=PACIFIC, fold=0).astimezone(UTC)
    late = local.replace(tzinfo=PACIFIC, fold=1).astimezone(UTC)
    return early, max(early, late)


def pacific_in_window(wall: str, start: datetime, end: datetime) -> datetime:
    """UTC instant of a Pacific wall time read for the window [start, end).

    An ambiguous time maps to the earlier instant ('Repeated hour'), unless only the later one
    lies in the window: then the row can only be an opt-out from the repeated hour's second pass,
    which the earlier mapping would drop as older than the bookmark.
    """
    early, late = pacific_instants(wall)
    if early < start <= late < end:
        return late
    return early


def lower_bound(start: datetime) -> str:
    """`optedOutAfter` for an inclusive window start: floored to the second, and one hour
    earlier when the start is in the repeated hour (the API compares wall times)."""
    bound = start.astimezone(UTC).replace(microsecond=0)
    return _wall_shift(bound, -1 if is_ambiguous_pacific(bound) else 0)


def upper_bound(end: datetime) -> str:
    """`optedOutBefore` (inclusive, second-granular) covering every row before `end`:
    ceiled to the second, one hour later in the repeated hour. Rows at or after `end`
    are then dropped client-side."""
    bound = end.astimezone(UTC)
    if bound.microsecond:
        bound = bound.replace(microsecond=0) + timedelta(seconds=1)
    return _wall_shift(bound, 1 if is_ambiguous_pacific(bound) else 0)


def _wall_shift(instant: datetime, hours: int) -> str:
    """The Pacific wall time of `instant`, moved `hours` on the wall clock."""
    wall = parse_pacific_wall(utc_to_pacific(instant)) + timedelta(hours=hours)
    return format_pacific_wall(wall)


def _utc_or_none(wall: Any, start: datetime, end: datetime) -> str | None:
    if not wall:
        return None
    text = str(wall)
    return wall_to_rfc3339(text) or to_rfc3339(pacific_in_window(text, start, end))


def _utc(wall: Any) -> str | None:
    if not wall:
        return None
    text = str(wall)
    return wall_to_rfc3339(text) or to_rfc3339(pacific_to_utc(text))


def wall_to_rfc3339(wall: str) -> str | None:
    """`to_rfc3339` of a `YYYY-MM-DD HH:MM:SS` Pacific wall time whose hour is neither
    repeated nor skipped; None otherwise, and the caller takes the exact path. Records carry
    several such times: this is their cost. Each wall hour's UTC hour is worked out once
    (Pacific offsets are whole hours), and minutes and seconds are copied."""
    if (
        len(wall) != 19
        or wall[10] != " "
        or wall[4] != "-"
        or wall[7] != "-"
        or wall[13] != ":"
        or wall[16] != ":"
        or wall[0] == "0"
    ):
        return None
    hour = wall[:13]
    utc_hour = _UTC_HOURS.get(hour, False)
    if utc_hour is False:
        utc_hour = _utc_hour(hour)
    if (
        utc_hour is None
        or wall[14] not in _SEXAGESIMAL
        or wall[15] not in _DIGITS
        or wall[17] not in _SEXAGESIMAL
        or wall[18] not in _DIGITS
    ):
        return None
    return utc_hour + wall[13:] + ".000000Z"


def _utc_hour(hour: str) -> str | None:
    """The UTC hour `YYYY-MM-DDTHH` of a Pacific wall hour `YYYY-MM-DD HH`; None when the
    hour is repeated or skipped (both folds differ), its offset is not whole hours (before
    standard time), or it is not a time."""
    if len(_UTC_HOURS) >= 100_000:
        _UTC_HOURS.clear()
    utc_hour = None
    try:
        local = datetime.fromisoformat(hour + ":00:00")
        first = local.replace(tzinfo=PACIFIC, fold=0).utcoffset()
        second = local.replace(tzinfo=PACIFIC, fold=1).utcoffset()
        if first is not None and first == second and not first % timedelta(hours=1):
            utc = local - first
            if utc.year >= 1000:
                utc_hour = utc.isoformat()[:13]
    except (ValueError, OverflowError):
        pass
    _UTC_HOURS[hour] = utc_hour
    return utc_hour


_UTC_HOURS: dict[str, str | None] = {}
_SEXAGESIMAL = frozenset("012345")
_DIGITS = frozenset("0123456789")


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _date(value: Any) -> str | None:
    """A birth date as `YYYY-MM-DD` (the legacy API sends `YYYY-MM-DD HH:MM:SS`)."""
    text = _text(value)
    return text[:10] if text else None


# -- records -----------------------------------------------------------------------------
RECORD_FIELDS = (
    "id",
    "number",
    "optOutDate",
    "optInStatus",
    "subscribedDate",
    "textword",
    "firstName",
    "lastName",
    "email",
    "birthDate",
    "city",
    "state",
    "zipCode",
    "country",
    "optInMethod",
)


def legacy_record(item: dict[str, Any], start: datetime, end: datetime) -> dict[str, Any]:
    """A legacy `optOuts[]` item as a `slicktext_optouts` record."""
    return {
        "id": str(item["id"]),
        "number": item.get("number"),
        "optOutDate": _utc_or_none(item.get("optOutDate"), start, end),
        "optInStatus": None,
        "subscribedDate": _utc(item.get("subscribedDate")),
        "textword": _text(item.get("textword")),
        "firstName": _text(item.get("firstName")),
        "lastName": _text(item.get("lastName")),
        "email": _text(item.get("email")),
        "birthDate": _date(item.get("birthDate")),
        "city": _text(item.get("city")),
        "state": _text(item.get("state")),
        "zipCode": _text(item.get("zipCode")),
        "country": _text(item.get("country")),
        "optInMethod": _text(item.get("optInMethod")),
    }


def contact_opt_out_wall(contact: dict[str, Any]) -> str | None:
    """When a new-API contact opted out. `last_opt_in_status_change` may be null on imported
    contacts ('New-API reading'): then the last update, then the creation time."""
    for key in ("last_opt_in_status_change", "last_updated", "created"):
        if contact.get(key):
            return str(contact[key])
    return None


def v2_record(contact: dict[str, Any], start: datetime, end: datetime) -> dict[str, Any]:
    """A new-API contact (unsubscribed or blocked) as a `slicktext_optouts` record."""
    return {
        "id": str(contact["contact_id"]),
        "number": contact.get("mobile_number"),
        "optOutDate": _utc_or_none(contact_opt_out_wall(contact), start, end),
        "optInStatus": _text(contact.get("opt_in_status")),
        "subscribedDate": None,
        "textword": None,
        "firstName": _text(contact.get("first_name")),
        "lastName": _text(contact.get("last_name")),
        "email": _text(contact.get("email")),
        "birthDate": _date(contact.get("birthdate")),
        "city": _text(contact.get("city")),
        "state": _text(contact.get("state")),
        "zipCode": _text(contact.get("zip")),
        "country": _text(contact.get("country")),
        "optInMethod": _text(contact.get("source")),
    }


# -- envelopes ---------------------------------------------------------------------------
def legacy_page(body: Any) -> tuple[list[dict[str, Any]], int | None]:
    """(items, meta.total) of a legacy `GET optouts` answer; ValueError for another shape (a
    page read as empty would end the listing early and lose the rest)."""
    items = body.get("optOuts") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ValueError("not an opt-out list: no optOuts array")
    total = (body.get("meta") or {}).get("total")
    return items, int(total) if total is not None else None


def v2_page(body: Any) -> tuple[list[dict[str, Any]], bool | None]:
    """(data, pagingData.hasMore) of a new-API list answer; ValueError for another shape."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ValueError("not a contact list: no data array")
    paging = body.get("pagingData") or {}
    has_more = paging.get("hasMore")
    return data, None if has_more is None else bool(has_more)


def v2_paging_data(offset: int, limit: int, returned: int, total: int) -> dict[str, Any]:
    """The new API's `pagingData` for a page at `offset` (pages are 1-based)."""
    page = offset // limit + 1 if limit else 1
    has_more = offset + returned < total
    first = offset + 1 if returned else offset
    return {
        "prevPage": page - 1 if page > 1 else None,
        "currentPage": page,
        "nextPage": page + 1 if has_more else None,
        "currentPageString": f"{first}-{offset + returned} of {total}",
        "hasMore": has_more,
    }


def brand_id_from(body: Any) -> int | None:
    """`GET brands` answers one object with `brand_id`; accept a `data` wrapper too."""
    if isinstance(body, dict) and "data" in body and "brand_id" not in body:
        body = body["data"]
    if isinstance(body, list):
        body = body[0] if body else None
    if isinstance(body, dict) and body.get("brand_id") is not None:
        return int(body["brand_id"])
    return None
