"""Who the SlickText emulators hold from the shared population: opted-out people (some moved
into both passes of the repeated autumn hour), subscribed contacts, never-subscribed ones,
and where each lives."""

from __future__ import annotations

from datetime import datetime, timedelta

from optouts_providers.timeutil import PACIFIC, is_ambiguous_pacific
from optouts_sandbox.seed import DST_REPEATS, Person, at_provider

# Area code -> (city, state, zip): zip is an int on the legacy wire, so 02108 is 2108.
PLACES = {
    "201": ("Jersey City", "NJ", 7302),
    "212": ("New York", "NY", 10001),
    "305": ("Miami", "FL", 33101),
    "312": ("Chicago", "IL", 60601),
    "415": ("San Francisco", "CA", 94103),
    "503": ("Portland", "OR", 97201),
    "617": ("Boston", "MA", 2108),
    "702": ("Las Vegas", "NV", 89101),
    "808": ("Honolulu", "HI", 96813),
    "919": ("Raleigh", "NC", 27601),
}
OPT_IN_METHODS = ("keyword", "api", "web form")
# Where the seed puts too few SlickText rows in the repeated hour: 01:20 PDT and 01:20 PST
# (the same wall time twice), 01:45 PDT and 01:35 PST on 2026-11-01.
DST_RETIMES = (
    timedelta(minutes=20),
    timedelta(minutes=80),
    timedelta(minutes=45),
    timedelta(minutes=95),
)


def slicktext_people(population: list[Person]) -> list[tuple[Person, datetime]]:
    """People opted out at SlickText with a phone, each with the instant SlickText holds.
    Some land in both passes of the repeated autumn hour, even in a small population."""
    people = [p for p in at_provider(population, "slicktext") if p.has_phone]
    times = {p.index: p.opted_out_at for p in people}
    repeat = DST_REPEATS[-1]
    passes = [_pass(p.opted_out_at) for p in people if is_ambiguous_pacific(p.opted_out_at)]
    if passes.count(0) < 2 or passes.count(1) < 2:
        movable = [p for p in people if not is_ambiguous_pacific(p.opted_out_at)]
        for person, offset in zip(movable, DST_RETIMES, strict=False):
            times[person.index] = repeat + offset
    return [(p, times[p.index]) for p in people]


def _pass(instant: datetime) -> int:
    """0 for the first (PDT) pass of a repeated Pacific hour, 1 for the second (PST)."""
    return 0 if instant.astimezone(PACIFIC).utcoffset() == timedelta(hours=-7) else 1


def subscribed_people(population: list[Person]) -> list[Person]:
    """People with a phone not opted out at SlickText: about half are subscribed contacts."""
    return [
        p for p in population if p.has_phone and "slicktext" not in p.providers and p.index % 2 == 0
    ]


def not_subscribed_people(population: list[Person]) -> list[Person]:
    """A few contacts that never subscribed (they must never read as opt-outs)."""
    return [
        p
        for p in population
        if p.has_phone and "slicktext" not in p.providers and p.index % 14 == 1
    ]
