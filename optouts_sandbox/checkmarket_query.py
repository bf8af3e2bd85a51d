"""Reading a CheckMarket list request's query options: `$top` and `$skip`, `$filter` parsed
and evaluated, `$orderby` and `$select`; and writing them back into the paging links (see
docs/providers/checkmarket.md, 'Filter syntax' and 'Query options').

The client only builds filters (`optouts_providers.checkmarket.wire.build_filter`); the
sandbox parses them, so the text form is written by that one function here too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from optouts_providers.checkmarket import wire
from optouts_providers.checkmarket.wire import FilterError, Literal
from optouts_providers.timeutil import parse_timestamp

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<datetime>DateTime'(?P<dt>[^']*)')"
    r"|(?P<string>'(?P<str>(?:[^']|'')*)')"
    r"|(?P<int>[+-]?\d+)(?![\w.])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    r")"
)
_DATETIME_LITERAL = re.compile(r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2})?$")
# The options a paging link repeats, in the vendor's order.
LINK_OPTIONS = ("top", "skip", "filter", "orderby", "select")


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
            actual = wire.parse_datetime(actual)
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
                    f"Field '{c.field}' cannot be compared with {wire.format_literal(c.value)}"
                )

    def __str__(self) -> str:
        return wire.build_filter(*([(c.field, c.op, c.value) for c in g] for g in self.groups))


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
        if k2 != "word" or op not in wire.OPERATORS:
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


class ListOptions(NamedTuple):
    top: int
    skip: int
    text: str | None  # the filter as sent (less a stray leading `=`), None when there is none
    expression: Filter | None
    order: list[tuple[str, bool]]  # (field, descending)
    select: list[str]


def list_options(
    query: Mapping[str, Sequence[str]],
    max_top: int,
    field_types: Mapping[str, type | tuple[type, ...]],
) -> ListOptions:
    """The options of a list request, `top` capped at `max_top`; FilterError when invalid
    (a field not in `field_types` included)."""
    top_raw, skip_raw = wire.option(query, "top"), wire.option(query, "skip")
    try:
        top = int(top_raw) if top_raw not in (None, "") else wire.DEFAULT_TOP
        skip = int(skip_raw) if skip_raw not in (None, "") else 0
    except ValueError:
        raise FilterError("top and skip must be integers") from None
    if top < 1 or skip < 0:
        raise FilterError("top must be positive and skip not negative")
    top = min(top, max_top)
    text = wire.option(query, "filter")
    expression = None
    if text:
        # The vendor's own example writes `filter==...`: tolerate the stray `=`.
        text = text.lstrip("=")
        expression = parse_filter(text)
        expression.check_fields(field_types)
    raw_order = wire.option(query, "orderby")
    order = parse_orderby(raw_order) if raw_order else []
    raw_select = wire.option(query, "select")
    select = parse_select(raw_select) if raw_select else []
    for name in [n for n, _ in order] + select:
        if name not in field_types:
            raise FilterError(f"Unknown field '{name}'")
    return ListOptions(top, skip, text or None, expression, order, select)


def link_query(options: Mapping[str, Any]) -> str:
    """The query of a paging link: the LINK_OPTIONS given, in that order."""
    return wire.query_string({k: options.get(k) for k in LINK_OPTIONS})
