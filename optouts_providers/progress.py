"""Progress lines a person can follow in a long run, in one form: `<what>: key=value ...`.

How often: the connector's `progress_interval_seconds` setting (default 30; with no setting,
the environment variable `OPTOUTS_PROGRESS_SECONDS`) is the least time between two progress
lines of one stream, download or upload; 0 logs one at every check (each 1,024 records, each
chunk of a download, each poll). Start and end lines are always logged; nothing is logged per
record.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

DEFAULT_SECONDS = 30.0
ENV = "OPTOUTS_PROGRESS_SECONDS"


_configured: float | None = None


def configure(seconds: float | None) -> None:
    """Set the interval from the connector's setting; None (unset) leaves the environment's."""
    global _configured
    _configured = None if seconds is None else max(0.0, float(seconds))


def interval_seconds() -> float:
    if _configured is not None:
        return _configured
    raw = os.environ.get(ENV, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_SECONDS
    except ValueError:
        return DEFAULT_SECONDS
    return seconds if seconds >= 0 else DEFAULT_SECONDS


class Every:
    """`due()` is true at most once per interval (first after one interval has passed)."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = interval_seconds() if seconds is None else seconds
        self.started = time.monotonic()
        self._next = self.started + self.seconds

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.seconds
        return True

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def fields(**values: Any) -> str:
    """`key=value ...` in the given order; floats to 0.1, None left out."""
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.1f}"
        parts.append(f"{key}={value}")
    return " ".join(parts)


class Transfer:
    """One download or upload: its status changes (always logged), its polls and bytes (at
    the progress pace). Lines read `<what>: <labels> status=<status> key=value ...`."""

    def __init__(self, logger: logging.Logger, what: str, **labels: Any) -> None:
        self.logger = logger
        self.prefix = f"{what}: {fields(**labels)}".rstrip()
        self.clock = Every()
        self.polls = 0
        self.bytes = 0

    def status(self, status: str, **values: Any) -> None:
        self.logger.info("%s status=%s %s", self.prefix, status, fields(**values))

    def poll(self, status: str, **values: Any) -> None:
        self.polls += 1
        if self.clock.due():
            self.status(status, polls=self.polls, seconds=self.clock.elapsed(), **values)

    def received(self, size: int) -> None:
        self.bytes += size
        if self.clock.due():
            self.status("downloading", bytes=self.bytes, seconds=self.clock.elapsed())

    def elapsed(self) -> float:
        return self.clock.elapsed()
