"""Throttling: providers' rate-limit headers, the pacer that keeps requests inside a rate
window, the process-wide wait budget, and the call counters every client keeps.

Used by `http.ProviderSession` (and re-exported there); see docs/RELIABILITY.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests


@dataclass(frozen=True)
class RateHeaders:
    """Names of a provider's rate-limit headers. `reset_is_epoch`: reset is a Unix time
    rather than seconds from now; `auto` guesses by magnitude (Optizmo leaves it open)."""

    limit: str
    remaining: str
    reset: str
    reset_is_epoch: bool | None = None

    def reset_seconds(self, headers: Mapping[str, str], now: float) -> float | None:
        raw = headers.get(self.reset)
        if raw is None:
            return None
        try:
            number = float(raw)
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        epoch = self.reset_is_epoch if self.reset_is_epoch is not None else number > 1e9
        return max(0.0, number - now) if epoch else max(0.0, number)


@dataclass
class CallStats:
    """What one client did: for logs, summaries and the benchmark.

    `throttled_seconds` is every second spent waiting before a request (pacing, exhausted
    rate-limit windows, retry waits); `retry_wait_seconds` is the part spent after failed tries.
    """

    requests: int = 0
    retries: int = 0
    throttled_seconds: float = 0.0
    retry_wait_seconds: float = 0.0
    rate_limited: int = 0
    by_status: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "throttled_seconds": round(self.throttled_seconds, 3),
            "retry_wait_seconds": round(self.retry_wait_seconds, 3),
        }

    def line(self) -> str:
        """`requests=.. retries=.. ...`: the form the tap's and target's logs use."""
        return " ".join(f"{key}={value}" for key, value in self.as_dict().items())

    def minus(self, earlier: CallStats) -> CallStats:
        """What happened since `earlier` (a copy taken before)."""
        return CallStats(
            requests=self.requests - earlier.requests,
            retries=self.retries - earlier.retries,
            throttled_seconds=self.throttled_seconds - earlier.throttled_seconds,
            retry_wait_seconds=self.retry_wait_seconds - earlier.retry_wait_seconds,
            rate_limited=self.rate_limited - earlier.rate_limited,
            by_status={
                status: count - earlier.by_status.get(status, 0)
                for status, count in self.by_status.items()
                if count != earlier.by_status.get(status, 0)
            },
        )

    def copy(self) -> CallStats:
        return CallStats(
            self.requests,
            self.retries,
            self.throttled_seconds,
            self.retry_wait_seconds,
            self.rate_limited,
            dict(self.by_status),
        )

    @classmethod
    def total(cls, parts: Iterable[CallStats]) -> CallStats:
        out = cls()
        for part in parts:
            out.requests += part.requests
            out.retries += part.retries
            out.throttled_seconds += part.throttled_seconds
            out.retry_wait_seconds += part.retry_wait_seconds
            out.rate_limited += part.rate_limited
            for status, count in part.by_status.items():
                out.by_status[status] = out.by_status.get(status, 0) + count
        return out


class WaitBudget:
    """How long a process may wait on providers' failures and throttling in all: retry waits
    (backoff, Retry-After) and exhausted rate-limit windows, summed over every client.
    Steady pacing below a known limit is not counted: it is the planned speed, not a stall."""

    def __init__(self, seconds: float | None = None) -> None:
        self.limit = seconds
        self.spent = 0.0
        self._lock = threading.Lock()

    def allows(self, seconds: float) -> bool:
        return self.limit is None or self.spent + seconds <= self.limit

    def spend(self, seconds: float) -> None:
        with self._lock:
            self.spent += seconds

    def describe(self) -> str:
        return (
            f"the run has already waited {self.spent:.1f}s on providers "
            f"(max_total_wait_seconds={self.limit:g})"
        )


_process_budget = WaitBudget()


def set_total_wait_budget(seconds: float | None) -> WaitBudget:
    """A fresh process-wide budget (the tap and the target call this with their setting)."""
    global _process_budget
    _process_budget = WaitBudget(seconds)
    return _process_budget


def total_wait_budget() -> WaitBudget:
    return _process_budget


# The widest window (in requests) the pacer learns from headers: it keeps one slot a request.
MAX_LEARNED_WINDOW = 1000


@dataclass
class Slot:
    """One request's place in the pacer: when it may go, and how long it waited for that."""

    at: float
    wait: float
    blocked: float  # the part of `wait` the provider imposed (a spent window)
    done: float | None = None


class Pacer:
    """Keeps requests inside a provider's rate windows.

    - Known windows (`requests_per_second`, or `windows` as (count, seconds) pairs): a request
      may go once the request `count` places back has been *answered* `seconds` ago. A server
      has counted a request by the time it answers it, whatever the network delay, so a
      sliding-window limit is never exceeded, and is used to within one round trip per window.
    - Headers: when the provider says `remaining <= reserve`, wait until its reset. With no
      known window, what remains of the provider's window is spread until it resets, until
      the headers have told the window itself: its size is the limit header, its length the
      longest reset seen (a reset is never longer than the window: it is at its longest on a
      window's first request). From then on that window is paced as a known one. Spreading
      alone uses half of a small window: the reserve, a reset rounded up to whole seconds and
      the wait counted from the last answer rather than the oldest each cost part of it.
    """

    def __init__(
        self,
        requests_per_second: float | None = None,
        headers: RateHeaders | None = None,
        reserve: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        windows: Iterable[tuple[int, float]] = (),
    ) -> None:
        self.windows = [(int(count), float(seconds)) for count, seconds in windows]
        if requests_per_second:
            count = max(1, round(requests_per_second))
            self.windows.append((count, count / requests_per_second))
        self.headers = headers
        # With known windows, the headers only need to stop a request the server would refuse.
        self.reserve = reserve if reserve is not None else (0 if self.windows else 1)
        self._sleep = sleep
        self._clock = clock
        depth = max((count for count, _ in self.windows), default=1)
        self._history: deque[Slot] = deque(maxlen=depth)
        # Headers alone: learn the provider's window from them (see the class notes).
        self._learning = headers is not None and not self.windows
        self._spread_next = 0.0
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def reserve_slot(self) -> Slot:
        """The next request's slot; the caller waits `slot.wait`, then sends."""
        with self._lock:
            now = self._clock()
            at = max(now, self._spread_next)
            for count, seconds in self.windows:
                if len(self._history) >= count:
                    anchor = self._history[-count]
                    at = max(at, (anchor.done if anchor.done is not None else anchor.at) + seconds)
            blocked = max(0.0, self._blocked_until - at)
            at += blocked
            slot = Slot(at, at - now, blocked)
            self._history.append(slot)
            return slot

    def wait(self, slot: Slot) -> None:
        if slot.wait > 0:
            self._sleep(slot.wait)

    def before_request(self) -> float:
        """Reserve a slot and wait for it; return the seconds waited (single-call form)."""
        slot = self.reserve_slot()
        self.wait(slot)
        return slot.wait

    def answered(self, slot: Slot, response: requests.Response | None) -> None:
        """The request of `slot` is over (answered, or failed when `response` is None)."""
        slot.done = self._clock()
        if response is not None:
            self.after_response(response)

    def after_response(self, response: requests.Response) -> None:
        if self.headers is None:
            return
        remaining = response.headers.get(self.headers.remaining)
        if remaining is None:
            return
        try:
            left = int(float(remaining))
        except (ValueError, OverflowError):
            return
        reset = self.headers.reset_seconds(response.headers, time.time())
        if not reset:
            return
        with self._lock:
            now = self._clock()
            if self._learning:
                self._learn_window(response.headers.get(self.headers.limit), left, reset)
            if left <= self.reserve:
                self._blocked_until = max(self._blocked_until, now + reset)
            elif not self.windows:
                # Spread what is left of the window over the time until it resets.
                self._spread_next = max(self._spread_next, now + reset / (left + 1))

    def _learn_window(self, raw_limit: str | None, left: int, reset: float) -> None:
        """Take (limit, longest reset seen) as the provider's window (caller holds the lock).
        Only headers that describe one window are believed: a request was just counted, so
        what remains is below the limit (a limit per second beside what remains of a longer
        window, say, is not one window)."""
        try:
            count = int(float(raw_limit)) if raw_limit is not None else 0
        except (ValueError, OverflowError):
            return
        if not 1 <= count <= MAX_LEARNED_WINDOW or not 0 <= left < count:
            return
        if self.windows and self.windows[0][0] == count and self.windows[0][1] >= reset:
            return
        self.windows = [(count, reset)]
        self.reserve = 0
        if (self._history.maxlen or 0) < count:
            self._history = deque(self._history, maxlen=count)
