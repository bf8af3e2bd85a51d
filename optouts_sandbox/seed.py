"""The deterministic population every emulator draws its opt-outs from.

People have an email, a phone (E.164, US numbers that `phonenumbers` accepts), names and an
opt-out time. Each person opted out at one or more providers, so that a cross-provider sync has
real work to do. Times are fixed (not relative to today) and span both autumn DST changes of
2025 and 2026, so Pacific times in the repeated hour occur; some share a timestamp exactly.

`only` (the benchmark's population): every person opted out at exactly those providers and has
both an email and a phone, so that each of their lists holds `size` rows and the other
providers hold nothing. `iter_people` yields people one at a time (big lists are seeded
without the whole population in memory).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

FIRST_NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elif", "Finn", "Grace", "Hugo", "Ines", "Jon"]
LAST_NAMES = ["Adams", "Brown", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Horvat"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "example.co.uk", "gmail.com"]
# Area codes with exchanges that phonenumbers treats as valid US numbers.
AREA_CODES = ["201", "212", "305", "312", "415", "503", "617", "702", "808", "919"]

SPAN_START = datetime(2025, 10, 1, tzinfo=UTC)
SPAN_END = datetime(2026, 11, 15, tzinfo=UTC)
# Both autumn repeated hours in Pacific time, in UTC: 08:00-10:00Z on these days covers
# 01:00-02:00 PDT and 01:00-02:00 PST.
DST_REPEATS = [datetime(2025, 11, 2, 8, tzinfo=UTC), datetime(2026, 11, 1, 8, tzinfo=UTC)]

PROVIDERS = ("checkmarket", "slicktext", "optizmo")


class Person(NamedTuple):
    index: int
    email: str
    phone: str  # E.164
    first_name: str
    last_name: str
    opted_out_at: datetime  # UTC, millisecond precision
    providers: frozenset[str]
    has_email: bool
    has_phone: bool


def generate(size: int, seed: int = 7, only: Collection[str] | None = None) -> list[Person]:
    """`size` people, deterministic for a given seed (and `only`)."""
    return list(iter_people(size, seed, only))


def iter_people(size: int, seed: int = 7, only: Collection[str] | None = None) -> Iterator[Person]:
    """The population one person at a time (the same people `generate` returns)."""
    if only is not None:
        unknown = set(only) - set(PROVIDERS)
        if unknown or not only:
            raise ValueError(f"only takes providers among {', '.join(PROVIDERS)}")
    rng = random.Random(seed)
    rand = rng.random
    bits = rng.getrandbits

    def below(n: int) -> int:
        # random.Random.randrange(n) without its argument checks: the same numbers.
        k = n.bit_length()
        r = bits(k)
        while r >= n:
            r = bits(k)
        return r

    span_ms = int((SPAN_END - SPAN_START).total_seconds() * 1000)
    fixed = frozenset(only) if only is not None else None
    all_providers = {frozenset(c) for c in _subsets(PROVIDERS)}
    shared = {c: c for c in all_providers}  # one frozenset object per combination
    tied_at: datetime | None = None
    for i in range(size):
        # Every ~20th person starts a run of 2-8 people with the same timestamp (ties that
        # cross page borders at any page size); ~3% fall inside a repeated Pacific hour.
        roll = rand()
        if tied_at is not None and rand() < 0.75:
            at = tied_at
        elif roll < 0.03:
            at = DST_REPEATS[i % 2] + timedelta(milliseconds=below(2 * 3600 * 1000))
            tied_at = None
        else:
            at = SPAN_START + timedelta(milliseconds=below(span_ms))
            tied_at = at if roll > 0.95 else None
        first = FIRST_NAMES[below(10)]
        last = LAST_NAMES[below(8)]
        email = f"{first}.{last}.{i}@{DOMAINS[i % 5]}".lower()
        if fixed is not None:
            # Unique numbers (the exchange counts the ten-thousands), so each list is `size`.
            phone = f"+1{AREA_CODES[i % 10]}{200 + i // 10000 % 799}{i % 10000:04d}"
            yield Person(i, email, phone, first, last, at, fixed, True, True)
            continue
        phone = f"+1{AREA_CODES[i % 10]}{200 + below(799)}{i % 10000:04d}"
        chosen = frozenset(p for p in PROVIDERS if rand() < 0.5)
        if not chosen:
            chosen = frozenset((PROVIDERS[i % 3],))
        has_phone = rand() < 0.8
        has_email = not has_phone or rand() < 0.85
        yield Person(i, email, phone, first, last, at, shared[chosen], has_email, has_phone)


def _subsets(items: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    for mask in range(1, 2 ** len(items)):
        yield tuple(item for bit, item in enumerate(items) if mask >> bit & 1)


def at_provider(people: Iterable[Person], provider: str) -> list[Person]:
    return [p for p in people if provider in p.providers]
