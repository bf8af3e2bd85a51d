"""CheckMarket API v3 on the wire: paths, headers, the filter grammar, time formats, envelopes.

The client and the sandbox both import this module, so they cannot drift apart
(see docs/providers/checkmarket.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
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


# -- the filter grammar (checkmarket.md, 'Filter syntax') -----------------------------------
class FilterError(ValueError):
    """A filter expression that does not parse or does not fit the data."""


OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le")
Literal = datetime | int | str

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<datetime>DateTime'(?P<dt>[^']*)')"
    r"|(?P<string>'(?P<str>(?:[^']|'')*)')"
    r"|(?P<int>[+-]?\d+)(?![\w.])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    r")"
)
_DATETIME_LITERAL = re.compile(r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2})?$")


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    value: Literal

    def matches(self, row: Mapping[str, Any]) -> bool:
        actual = row.get(self.field)
        if actual is None:
            return self.op == "ne"
        if isinstance(self.value, datetime) and isinstance(actual, str):
            actual = parse_datetime(actual)
        return _compare(actual, self.op, self.value)


def _compare(actual: Any, op: str, expected: Literal) -> bool:
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op == "gt":
        return actual > expected
    if op == "ge":
        return actual >= expected
    if op == "lt":
        return actual < expected
    return actual <= expected


@dataclass(frozen=True)
class Filter:
    """Comparisons joined by `and`/`or`; `and` binds tighter (no parentheses: 'Filter syntax').

    `groups` is the disjunction of conjunctions: [[a, b], [c]] means `a and b or c`.
    """

    groups: tuple[tuple[Comparison, ...], ...]

    def comparisons(self) -> Iterator[Comparison]:
        for group in self.groups:
            yield from group

    def matches(self, row: Mapping[str, Any]) -> bool:
        return any(all(c.matches(row) for c in group) for group in self.groups)

    def check_fields(self, types: Mapping[str, type | tuple[type, ...]]) -> None:
        """Raise FilterError for an unknown field or a literal of the wrong type."""
        for c in self.comparisons():
            if c.field not in types:
                raise FilterError(f"Unknown field '{c.field}' in filter")
            if not isinstance(c.value, types[c.field]):
                raise FilterError(
                    f"Field '{c.field}' cannot be compared with {format_literal(c.value)}"
                )

    def __str__(self) -> str:
        return " or ".join(
            " and ".join(f"{c.field} {c.op} {format_literal(c.value)}" for c in group)
            for group in self.groups
        )


def format_literal(value: Literal) -> str:
    if isinstance(value, datetime):
        return f"DateTime'{format_datetime_literal(value)}'"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def build_filter(*groups: Sequence[tuple[str, str, Literal]]) -> str:
    """Filter text from groups of (field, op, value): groups are OR-ed, their items AND-ed."""
    parsed = []
    for group in groups:
        items = []
        for field, op, value in group:
            if op not in OPERATORS:
                raise FilterError(f"Unknown operator '{op}'")
            items.append(Comparison(field, op, value))
        if not items:
            raise FilterError("Empty filter group")
        parsed.append(tuple(items))
    return str(Filter(tuple(parsed)))


def window_filter(start: datetime, end: datetime) -> str:
    """`DateOptOut ge DateTime'{start}' and DateOptOut lt DateTime'{end}'`."""
    return build_filter([("DateOptOut", "ge", start), ("DateOptOut", "lt", end)])


def parse_filter(text: str) -> Filter:
    """Parse `Field op Literal [(and|or) Field op Literal ...]`."""
    tokens = list(_tokens(text))
    if not tokens:
        raise FilterError("Empty filter")
    groups: list[tuple[Comparison, ...]] = []
    current: list[Comparison] = []
    pos = 0
    while True:
        if pos + 3 > len(tokens):
            raise FilterError(f"Incomplete comparison at the end of filter '{text}'")
        (k1, field), (k2, op), (k3, value) = tokens[pos : pos + 3]
        if k1 != "word" or field.lower() in ("and", "or"):
            raise FilterError(f"Expected a field name in filter, found {field!r}")
        if k2 != "word" or op not in OPERATORS:
            raise FilterError(f"Unknown operator {op!r} in filter")
        if k3 == "word":
            raise FilterError(f"Expected a literal after '{field} {op}', found {value!r}")
        current.append(Comparison(field, op, value))
        pos += 3
        if pos == len(tokens):
            break
        kind, joiner = tokens[pos]
        if kind != "word" or joiner not in ("and", "or"):
            raise FilterError(f"Expected 'and' or 'or' in filter, found {joiner!r}")
        if joiner == "or":
            groups.append(tuple(current))
            current = []
        pos += 1
    groups.append(tuple(current))
    return Filter(tuple(groups))


def _tokens(text: str) -> Iterator[tuple[str, Any]]:
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"Cannot parse filter at {text[pos : pos + 20]!r}")
        pos = m.end()
        if m.group("datetime"):
            raw = m.group("dt")
            if not _DATETIME_LITERAL.match(raw):
                raise FilterError(f"Invalid DateTime literal '{raw}'")
            try:
                yield "literal", parse_timestamp(raw)
            except ValueError:
                raise FilterError(f"Invalid DateTime literal '{raw}'") from None
        elif m.group("string") is not None:
            yield "literal", m.group("str").replace("''", "'")
        elif m.group("int"):
            yield "literal", int(m.group("int"))
        else:
            yield "word", m.group("word")


# -- other query options --------------------------------------------------------------------
def option(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The value of option `name`, sent as `$name` or `name` ('Query options')."""
    for key in (f"${name}", name):
        if key in query:
            return query[key][0]
    return None


def parse_orderby(text: str) -> list[tuple[str, bool]]:
    """`Field [asc|desc][, ...]` as (field, descending)."""
    out = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2:
            raise FilterError(f"Invalid orderby '{text}'")
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise FilterError(f"Invalid orderby direction '{words[1]}'")
        out.append((words[0], direction == "desc"))
    return out


def parse_select(text: str) -> list[str]:
    fields = [f.strip() for f in text.split(",") if f.strip()]
    if not fields:
        raise FilterError("Empty select")
    return fields


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
