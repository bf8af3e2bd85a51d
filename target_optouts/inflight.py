"""Writes that run while the next part of a batch is read: one worker thread per destination.

A sink hands a destination its batch in parts; the destination's POSTs for one part can wait
for the provider's answer while the target already reads and normalises the next (the wait
releases the GIL). At most `depth` writes of a stream are in flight: `submit` returns the
results of those that have finished, waiting when there are too many, and `wait` returns the
rest. A failed write raises from `submit` or `wait`, so the batch is never acknowledged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from optouts_providers.results import WriteResult


class InFlight:
    def __init__(self, name: str, depth: int = 2) -> None:
        self.depth = max(1, depth)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._running: dict[str, deque[Future[WriteResult]]] = {}

    def submit(self, stream: str, write: Callable[[], WriteResult]) -> WriteResult:
        """Start `write`; the results of this stream's writes that have finished."""
        running = self._running.setdefault(stream, deque())
        running.append(self._executor.submit(write))
        done = WriteResult()
        while running and (len(running) > self.depth or running[0].done()):
            done.add(running.popleft().result())
        return done

    def wait(self, stream: str) -> WriteResult | None:
        """Every write of this stream finished; their results (None when there were none)."""
        running = self._running.pop(stream, None)
        if not running:
            return None
        done = WriteResult()
        while running:
            done.add(running.popleft().result())
        return done

    def close(self) -> None:
        self._running.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)
