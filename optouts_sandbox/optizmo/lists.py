"""The Optizmo emulator's opt-out lists: rows stored column by column, and the seed's origins.

A row holds a plain value (or only its hash), a UTC time, whether it was collected or imported,
and its campaign data (see docs/providers/optizmo.md, 'Hashes' and 'Collect').
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass
from datetime import date, datetime

from optouts_providers.optizmo import wire

CAMPAIGNS = [f"Spring Sale {n}" for n in range(5)]
AFFILIATES = [f"Affiliate {n}" for n in range(7)]
SUB_AFFILIATES = [f"sub-{n}" for n in range(3)]
IPS = [f"198.51.100.{n}" for n in range(1, 251)]


@dataclass(slots=True)
class Row:
    plain: str  # "" for a hash-only entry
    hashed: str
    at: datetime  # UTC, whole seconds
    collected: bool
    campaign: str = ""
    affiliate: str = ""
    sub_affiliate: str = ""
    ip: str = ""
    visible_at: datetime | None = None  # collect is asynchronous ('Collect')

    def visible(self, now: datetime) -> bool:
        return self.visible_at is None or self.visible_at <= now


# (collected, campaign, affiliate, sub_affiliate, ip): few distinct values, shared by rows.
Origin = tuple[bool, str, str, str, str]
IMPORTED: Origin = (False, "", "", "", "")
# Where each campaign field sits in an Origin.
ORIGIN_FIELDS = {"campaign": 1, "affiliate": 2, "sub_affiliate": 3, "ip": 4}
# Rows' times are UTC epoch seconds; a day filter compares them with whole days.
DAY = 86_400
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class OptoutList:
    """One list's rows, stored column by column (a row's hash is the MD5 of its plain value,
    computed when needed), so that a list of millions fits in a few hundred bytes a row."""

    def __init__(self, list_id: str, kind: str) -> None:
        self.list_id = list_id
        self.kind = kind  # "email", "sms" or "grouped"
        self.plains: list[str] = []  # "" for a hash-only row
        self.hash_only: dict[int, str] = {}  # row -> its MD5, for hash-only rows
        self.ats = array("q")  # UTC epoch seconds
        self.origins: list[Origin] = []
        self.visible_at: dict[int, datetime] = {}  # rows collect has not yet processed
        self._plains_seen: set[str] = set()
        self._hashes_seen: set[str] = set()  # hash-only rows
        self._plain_hashes: set[str] | None = None  # built when a hash-only row first comes
        self._origins: dict[Origin, Origin] = {IMPORTED: IMPORTED}

    def __len__(self) -> int:
        return len(self.plains)

    def add(self, row: Row) -> bool:
        """Add a row unless its hash is held already ('Hashes': it identifies an opt-out)."""
        origin = (row.collected, row.campaign, row.affiliate, row.sub_affiliate, row.ip)
        value = row.plain or row.hashed
        return self.add_value(value, not row.plain, int(row.at.timestamp()), origin, row.visible_at)

    def add_value(
        self,
        value: str,
        is_hash: bool,
        at: int,
        origin: Origin,
        visible_at: datetime | None = None,
    ) -> bool:
        """Add a plain value (or a hash) unless its hash is held already."""
        if not is_hash:
            if value in self._plains_seen:
                return False
            if self._hashes_seen and md5(value) in self._hashes_seen:
                return False
            self.append(value, None, at, origin, visible_at)
        else:
            if value in self._hashes_seen or value in self._hashes_of_plains():
                return False
            self.append("", value, at, origin, visible_at)
        return True

    def append(
        self,
        plain: str,
        hashed: str | None,
        at: int,
        origin: Origin,
        visible_at: datetime | None = None,
    ) -> None:
        """Store a row known to be new (the seed's rows are)."""
        index = len(self.plains)
        self.plains.append(plain)
        if plain:
            self._plains_seen.add(plain)
            if self._plain_hashes is not None:
                self._plain_hashes.add(hashed or md5(plain))
        else:
            assert hashed is not None
            self.hash_only[index] = hashed
            self._hashes_seen.add(hashed)
        self.ats.append(at)
        self.origins.append(self._origins.setdefault(origin, origin))
        if visible_at is not None:
            self.visible_at[index] = visible_at

    def holds(self, plain: str) -> bool:
        return plain in self._plains_seen

    def _hashes_of_plains(self) -> set[str]:
        if self._plain_hashes is None:
            self._plain_hashes = {md5(plain) for plain in self.plains if plain}
        return self._plain_hashes

    def hashed(self, index: int) -> str:
        return self.hash_only.get(index) or md5(self.plains[index])

    def visible(self, index: int, now: datetime) -> bool:
        if not self.visible_at:
            return True
        when = self.visible_at.get(index)
        return when is None or when <= now


def md5(plain: str) -> str:
    return hashlib.md5(plain.encode("utf-8")).hexdigest()


def epoch_day(day: date) -> int:
    return day.toordinal() - EPOCH_ORDINAL


def whole_seconds(now: datetime) -> datetime:
    return now.replace(microsecond=0)


def row_for(
    kind: str,
    value: str,
    at: datetime,
    *,
    collected: bool,
    visible_at: datetime | None = None,
) -> Row:
    """The row a list of `kind` stores for `value` as sent (an MD5 is kept as a hash)."""
    value = wire.normalize(value)
    if wire.is_md5(value):
        return Row("", value, whole_seconds(at), collected, visible_at=visible_at)
    plain = wire.sms_digits(value) if kind == "sms" else value
    return Row(plain, wire.hash_value(plain), whole_seconds(at), collected, visible_at=visible_at)


def seed_origin(index: int) -> Origin:
    """Where the seed's person `index` came from: every fourth imported, the rest collected."""
    if index % 4 == 0:
        return IMPORTED
    return (
        True,
        CAMPAIGNS[index % len(CAMPAIGNS)],
        AFFILIATES[index % len(AFFILIATES)],
        SUB_AFFILIATES[index % len(SUB_AFFILIATES)],
        IPS[index % len(IPS)],
    )
