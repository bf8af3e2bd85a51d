"""The deterministic population every emulator draws its opt-outs from.

People have an email, a phone (E.164, US numbers that `phonenumbers` accepts), names and an
opt-out time. Each person opted out at one or more providers, so that a cross-provider sync has
real work to do. Times are fixed (not relative to today) and span both autumn DST changes of
2025 and 2026, so Pacific times in the repeated hour occur; some share a timestamp exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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


@dataclass(frozen=True)
class Person:
    index: int
    email: str
    phone: str  # E.164
    first_name: str
    last_name: str
    opted_out_at: datetime  # UTC, millisecond precision
    providers: frozenset[str]
    has_email: bool
    has_phone: bool


def generate(size: int, seed: int = 7) -> list[Person]:
    """`size` people, deterministic for a given seed."""
    rng = random.Random(seed)
    span_ms = int((SPAN_END - SPAN_START).total_seconds() * 1000)
    people: list[Person] = []
    tied_at: datetime | None = None
    for i in range(size):
        # Every ~20th person starts a run of 2-8 people with the same timestamp (ties that
        # cross page borders at any page size); ~3% fall inside a repeated Pacific hour.
        roll = rng.random()
        if tied_at is not None and rng.random() < 0.75:
            at = tied_at
        elif roll < 0.03:
            base = DST_REPEATS[i % len(DST_REPEATS)]
            at = base + timedelta(milliseconds=rng.randrange(2 * 3600 * 1000))
            tied_at = None
        else:
            at = SPAN_START + timedelta(milliseconds=rng.randrange(span_ms))
            tied_at = at if roll > 0.95 else None
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        first = FIRST_NAMES[rng.randrange(len(FIRST_NAMES))]
        last = LAST_NAMES[rng.randrange(len(LAST_NAMES))]
        email = f"{first}.{last}.{i}@{DOMAINS[i % len(DOMAINS)]}".lower()
        phone = f"+1{AREA_CODES[i % len(AREA_CODES)]}{rng.randrange(200, 999)}{i % 10000:04d}"
        chosen = {p for p in PROVIDERS if rng.random() < 0.5}
        if not chosen:
            chosen = {PROVIDERS[i % len(PROVIDERS)]}
        has_phone = rng.random() < 0.8
        has_email = not has_phone or rng.random() < 0.85
        people.append(
            Person(
                index=i,
                email=email,
                phone=phone,
                first_name=first,
                last_name=last,
                opted_out_at=at,
                providers=frozenset(chosen),
                has_email=has_email,
                has_phone=has_phone,
            )
        )
    return people


def at_provider(people: list[Person], provider: str) -> list[Person]:
    return [p for p in people if provider in p.providers]
