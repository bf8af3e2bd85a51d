"""The addresses a destination has written in this run, in memory that does not grow with N.

The values are kept (exact, no digests) per channel, in two generations of about
`generation` addresses each (a part of a batch is added at once, so a generation may end a
part's worth over): when the newer is full, the older is dropped. So every address of a run
of up to `generation` distinct addresses (per destination) is remembered, and in a longer run
at least the last `generation`; an address seen before that may be written again,
which the providers answer as already present (writing an opt-out twice does no harm). The
value strings are those of the opt-outs, shared by every destination that keeps them: about
35 bytes an address per destination, plus the string, at most a few tens of MB in all.
"""

from __future__ import annotations

from collections.abc import Iterable

# (channel, value): the same as destinations.Address.
Address = tuple[str, str]

GENERATION = 100_000


class SeenAddresses:
    def __init__(self, generation: int = GENERATION) -> None:
        self.generation = max(1, generation)
        self._new: dict[str, set[str]] = {}
        self._old: dict[str, set[str]] = {}
        self._size = 0  # in the newer generation

    def __contains__(self, address: object) -> bool:
        channel, value = address  # type: ignore[misc]
        return value in self._new.get(channel, _NONE) or value in self._old.get(channel, _NONE)

    def __len__(self) -> int:
        return sum(map(len, self._new.values())) + sum(map(len, self._old.values()))

    def known(self, channel: str) -> tuple[set[str] | frozenset[str], set[str] | frozenset[str]]:
        """The channel's values of both generations (newer, older), to test membership in."""
        return self._new.get(channel, _NONE), self._old.get(channel, _NONE)

    def add(self, address: Address) -> None:
        self.extend(address[0], (address[1],))

    def update(self, addresses: Iterable[Address]) -> None:
        for channel, value in addresses:
            self.extend(channel, (value,))

    def extend(self, channel: str, values: Iterable[str]) -> None:
        """Remember values of one channel; the newer generation ends once it holds
        `generation` values (after a part of many: it may hold a part's worth more)."""
        known = self._new.get(channel)
        if known is None:
            known = self._new[channel] = set()
        before = len(known)
        known.update(values)
        self._size += len(known) - before
        if self._size >= self.generation:
            self._old, self._new, self._size = self._new, {}, 0


_NONE: frozenset[str] = frozenset()
