"""CheckMarket API v3 on the wire: paths, headers, building a filter, time formats, envelopes.

The client and the sandbox both import this module, so they cannot drift apart
(see docs/providers/checkmarket.md). The sandbox parses and evaluates filters in
`optouts_sandbox/checkmarket_query.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from optouts_providers.timeutil import parse_timestamp

PROVIDER = "CheckMarket"
API_VERSION = "3"
ACCOUNT_OPTOUTS_PATH = "3/contacts/optouts"
SURVEY_OPTOUTS_PATH = "3/surveys/{survey_id}/contacts/optouts"
# `SurveyId` of a record read from the account-wide list (no survey has id 0).
ACCOUNT_LIST = 0
MASTER_KEY_HEADER = "X-Master-Key"
KEY_HEADER = "X-Key"
DEFAULT_TOP = 25
# Query options are accepted with and without the `$` prefix (checkmarket.md, 'Query options').
OPTIONS = ("top", "skip", "filter", "orderby", "select")
ITEM_FIELDS = ("DateOptOut", "LangCode", "ContactId", "FirstName", "LastName", "Email")
# Sandbox extension: phone-only opt-outs carry their number (checkmarket.md, 'Reading opt-outs').
PHONE_FIELD = "PhoneNumber"
EMAILS_KEY = "EmailAddresses"
PHONES_KEY = "PhoneNumbers"
EMAILS_ADDED_KEY = "EmailAddressesAdded"
PHONES_ADDED_KEY = "PhoneNumbersAdded"


def optouts_path(survey_id: int | None = None) -> str:
    if survey_id is None:
        return ACCOUNT_OPTOUTS_PATH
    return SURVEY_OPTOUTS_PATH.format(survey_id=int(survey_id))


# -- time formats (checkmarket.md, 'Time formats') ------------------------------------------
def format_datetime_literal(value: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS` in UTC: the text inside a filter's `DateTime'...'` ('Time formats')."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def format_meta_timestamp(value: datetime) -> str:
    """`Meta.Timestamp`: .NET style, seven fractional digits and `Z`."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"


def format_date_optout(value: datetime) -> str:
    """`DateOptOut`: milliseconds and `Z`, e.g. `2019-01-13T08:31:01.033Z`."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_datetime(value: str) -> datetime:
    """Any timestamp CheckMarket sends: `Z` or offsets, 0-7 fractional digits."""
    return parse_timestamp(value)


# -- building a filter (checkmarket.md, 'Filter syntax') -----------------------------------
class FilterError(ValueError):
    """A filter expression that does not parse or does not fit the data."""


OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le")
Literal = datetime | int | str


def format_literal(value: Literal) -> str:
    if isinstance(value, datetime):
        return f"DateTime'{format_datetime_literal(value)}'"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def build_filter(*groups: Sequence[tuple[str, str, Literal]]) -> str:
    """Filter text from groups of (field, op, value): groups are OR-ed, their items AND-ed."""
    texts = []
    for group in groups:
        items = []
        for field, op, value in group:
            if op not in OPERATORS:
                raise FilterError(f"Unknown operator '{op}'")
            items.append(f"{field} {op} {format_literal(value)}")
        if not items:
            raise FilterError("Empty filter group")
        texts.append(" and ".join(items))
    return " or ".join(texts)


def window_filter(start: datetime, end: datetime) -> str:
    """`DateOptOut ge DateTime'{start}' and DateOptOut lt DateTime'{end}'`."""
    return build_filter([("DateOptOut", "ge", start), ("DateOptOut", "lt", end)])


# -- other query options --------------------------------------------------------------------
def option(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The value of option `name`, sent as `$name` or `name` ('Query options')."""
    for key in (f"${name}", name):
        if key in query:
            return query[key][0]
    return None


def query_string(options: Mapping[str, Any]) -> str:
    """`$name=value&...` with values percent-encoded, as in the vendor's next links."""
    return "&".join(
        f"${name}={quote(str(value), safe=chr(39))}"
        for name, value in options.items()
        if value is not None
    )


# -- envelopes (checkmarket.md, 'Envelope') -------------------------------------------------
def link(href: str, method: str = "GET") -> dict[str, str]:
    return {"Href": href, "Method": method}


def envelope(
    data: Any,
    timestamp: datetime,
    *,
    status: int = 200,
    paging: Mapping[str, Any] | None = None,
    links: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"Status": status}
    if paging:
        meta.update(paging)
    meta["Timestamp"] = format_meta_timestamp(timestamp)
    if "IsFiltered" in meta:  # the vendor's field order
        meta["IsFiltered"] = meta.pop("IsFiltered")
    body: dict[str, Any] = {"Meta": meta, "Data": data}
    if links is not None:
        body["Links"] = dict(links)
    return body


def error_envelope(
    status: int, message: str, timestamp: datetime, *, error_type: str | None = None
) -> dict[str, Any]:
    """The error form seen in client code: Data = {ErrorCode, ErrorMessage, ErrorType}."""
    data = {
        "ErrorCode": status,
        "ErrorMessage": message,
        "ErrorType": error_type or ERROR_TYPES.get(status, "Error"),
    }
    return envelope(data, timestamp, status=status)


ERROR_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}


def optouts_body(emails: Sequence[str], phones: Sequence[str]) -> dict[str, list[str]]:
    return {EMAILS_KEY: list(emails), PHONES_KEY: list(phones)}


def added_counts(body: Any) -> tuple[int, int]:
    """(emails added, phones added) from a POST opt-outs answer ('Adding opt-outs')."""
    data = body.get("Data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise ValueError("opt-out answer without a Data object")
    return int(data.get(EMAILS_ADDED_KEY) or 0), int(data.get(PHONES_ADDED_KEY) or 0)


# -- reading answers -------------------------------------------------------------------------
def error_message(body: Any) -> str | None:
    """`Data.ErrorMessage`, or `Data` when it is a plain string ('Errors')."""
    if not isinstance(body, dict):
        return None
    data = body.get("Data")
    if isinstance(data, dict):
        message = data.get("ErrorMessage")
        return message if isinstance(message, str) else None
    return data if isinstance(data, str) else None


def data_items(body: Any) -> list[dict[str, Any]]:
    data = body.get("Data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ValueError("list answer without a Data array")
    return data


def next_href(body: Any) -> str | None:
    """`Links.Next.Href`, absent on the last page."""
    links = body.get("Links") if isinstance(body, dict) else None
    nxt = links.get("Next") if isinstance(links, dict) else None
    href = nxt.get("Href") if isinstance(nxt, dict) else None
    return href or None


def link_path(href: str) -> str:
    """The API path and query of a link, from its `3/` segment on, without scheme or host:
    the part a client resolves against its own base URL (checkmarket.md, 'Next links': the
    vendor sample points at a legacy host)."""
    parts = urlsplit(href)
    segments = parts.path.split("/")
    if API_VERSION in segments:
        path = "/".join(segments[segments.index(API_VERSION) :])
    else:
        path = parts.path.lstrip("/")
    return f"{path}?{parts.query}" if parts.query else path
