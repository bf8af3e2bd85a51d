"""Timestamps: every record carries RFC 3339 UTC; providers speak in other forms.

- CheckMarket: ISO 8601 with `Z` or an offset and 1-7 fractional digits (checkmarket.md,
  'Time formats').
- SlickText: naive `YYYY-MM-DD HH:MM:SS` in America/Los_Angeles (slicktext.md, 'Pacific time'). An
  ambiguous time (the repeated autumn hour) maps to the earlier instant ('Repeated hour').
- Optizmo: UTC, `YYYY-MM-DD HH:MM:SS` or RFC 3339 (optizmo.md, 'Time zone').

The notes are in docs/providers/.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")
NAIVE_FORMAT = "%Y-%m-%d %H:%M:%S"

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: str, naive_zone: tzinfo = UTC) -> datetime:
    """Parse an ISO 8601 / RFC 3339 / `YYYY-MM-DD HH:MM:SS` string into an aware UTC datetime.

    Accepts `Z`, `+HH:MM`/`+HHMM` offsets and 1-9 fractional digits (kept to microseconds).
    A string without a zone is read in `naive_zone`; an ambiguous local time is the earlier one.
    """
    m = _ISO.match(value.strip())
    if not m:
        raise ValueError(f"not a timestamp: {value!r}")
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    local = datetime(
        int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0), micro
    )
    if zone is None:
        aware = local.replace(tzinfo=naive_zone, fold=0)
    elif zone in ("Z", "z"):
        aware = local.replace(tzinfo=UTC)
    else:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        aware = (local - sign * offset).replace(tzinfo=UTC)
    return aware.astimezone(UTC)


def to_rfc3339(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC, always with six fractional digits and `Z`,
    so that formatted timestamps sort as strings (bookmarks compare them that way)."""
    utc = value.astimezone(UTC)
    if utc.year < 1000:  # isoformat pads the year; strftime's %Y need not
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.isoformat(timespec="microseconds")[:26] + "Z"


def pacific_to_utc(value: str) -> datetime:
    """SlickText's naive Pacific time to UTC (the earlier instant when ambiguous)."""
    return parse_timestamp(value, PACIFIC)


def utc_to_pacific(value: datetime) -> str:
    """UTC to SlickText's naive Pacific `YYYY-MM-DD HH:MM:SS`."""
    local = value.astimezone(PACIFIC)
    if local.year < 1000:  # isoformat pads the year; strftime's %Y need not
        return local.strftime(NAIVE_FORMAT)
    return local.isoformat(" ", "seconds")[:19]


def is_ambiguous_pacific(value: datetime) -> bool:
    """True when the Pacific wall time of `value` occurs twice (the autumn repeated hour)."""
    local = value.astimezone(PACIFIC)
    return local.utcoffset() != local.replace(fold=1 - local.fold).utcoffset()


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_date(value: datetime) -> date:
    return value.astimezone(UTC).date()
