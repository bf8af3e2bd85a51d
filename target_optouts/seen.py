"""The addresses a destination has written in this run, in memory that does not grow with N.

The values are kept (exact, no digests) per channel, in two generations of at most
`generation` addresses each: when the newer is full, the older is dropped. So every address of
a run of up to `generation` distinct addresses (per destination) is remembered, and in a
longer run at least the last `generation`; an address seen before that may be written again,
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
        new = self._new.get(channel)
        if new is not None and value in new:
            return True
        old = self._old.get(channel)
        return old is not None and value in old

    def __len__(self) -> int:
        return sum(map(len, self._new.values())) + sum(map(len, self._old.values()))

    def add(self, address: Address) -> None:
        channel, value = address
        values = self._new.get(channel)
        if values is None:
            values = self._new[channel] = set()
        if value not in values:
            values.add(value)
            self._size += 1
            if self._size >= self.generation:
                self._old, self._new, self._size = self._new, {}, 0

    def update(self, addresses: Iterable[Address]) -> None:
        for channel, value in addresses:
            values = self._new.get(channel)
            if values is None:
                values = self._new[channel] = set()
            if value not in values:
                values.add(value)
                self._size += 1
                if self._size >= self.generation:
                    self._old, self._new, self._size = self._new, {}, 0
