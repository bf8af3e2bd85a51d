"""The tap's progress and end-of-run summary (optouts_providers.progress sets the pace).

tap-optouts progress: checkmarket_optouts records=10240 seconds=3.2
tap-optouts progress: optizmo_optouts optout_list_id=901f... done records=138 seconds=1.1
tap-optouts summary: checkmarket_optouts records=170 partitions=1 seconds=0.1 requests=1 ...
tap-optouts summary: total records=568 streams=3 seconds=2.3 status=succeeded
tap-optouts summary json: {...}
"""

from __future__ import annotations

import json
import logging
import typing as t
from dataclasses import dataclass, field

from optouts_providers.progress import Every, fields

if t.TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_optouts.streams.base import OptoutsStream

# Records between two looks at the clock: a mask, so the per-record cost is one `&`.
CHECK_MASK = 1023


def _where(stream: str, context: t.Mapping[str, t.Any] | None) -> str:
    if not context:
        return stream
    return " ".join([stream, *(f"{key}={value}" for key, value in context.items())])


class PartitionProgress:
    """Record counts of one stream partition as they go, and a line when it ends."""

    def __init__(
        self, logger: logging.Logger, stream: str, context: t.Mapping[str, t.Any] | None
    ) -> None:
        self.logger = logger
        self.where = _where(stream, context)
        self.clock = Every()

    def tick(self, records: int) -> None:
        if self.clock.due():
            self.logger.info(
                "tap-optouts progress: %s %s",
                self.where,
                fields(records=records, seconds=self.clock.elapsed()),
            )

    def finish(self, records: int, status: str) -> float:
        seconds = self.clock.elapsed()
        self.logger.info(
            "tap-optouts progress: %s %s %s",
            self.where,
            "done" if status == "succeeded" else status,
            fields(records=records, seconds=seconds),
        )
        return seconds


@dataclass
class StreamTotals:
    records: int = 0
    partitions: int = 0
    seconds: float = 0.0


@dataclass
class RunSummary:
    clock: Every = field(default_factory=Every)
    streams: dict[str, StreamTotals] = field(default_factory=dict)

    def add(self, stream: str, records: int, seconds: float) -> None:
        totals = self.streams.setdefault(stream, StreamTotals())
        totals.records += records
        totals.partitions += 1
        totals.seconds += seconds

    def as_dict(
        self,
        streams: t.Mapping[str, OptoutsStream],
        status: str,
        state: t.Mapping[str, t.Any] | None = None,
    ) -> dict[str, t.Any]:
        out: dict[str, t.Any] = {}
        bookmarks = (state or {}).get("bookmarks") or {}
        for name, totals in self.streams.items():
            entry: dict[str, t.Any] = {
                "records": totals.records,
                "partitions": totals.partitions,
                "seconds": round(totals.seconds, 3),
                "bookmarks": _bookmark_values(bookmarks.get(name)),
            }
            stream = streams.get(name)
            stats = stream.client_stats() if stream is not None else None
            if stats is not None:
                entry.update(stats.as_dict())
            out[name] = entry
        return {
            "status": status,
            "records": sum(totals.records for totals in self.streams.values()),
            "seconds": round(self.clock.elapsed(), 3),
            "streams": out,
        }

    def log(self, logger: logging.Logger, summary: dict[str, t.Any]) -> None:
        for name, entry in summary["streams"].items():
            counts = {key: value for key, value in entry.items() if key != "bookmarks"}
            logger.info("tap-optouts summary: %s %s", name, fields(**counts))
        logger.info(
            "tap-optouts summary: total %s",
            fields(
                records=summary["records"],
                streams=len(summary["streams"]),
                seconds=float(summary["seconds"]),
                status=summary["status"],
            ),
        )
        logger.info("tap-optouts summary json: %s", json.dumps(summary, sort_keys=True))


def _bookmark_values(bookmark: t.Mapping[str, t.Any] | None) -> list[str]:
    """The replication-key values a stream's state ends at (one per partition)."""
    if not bookmark:
        return []
    entries = bookmark.get("partitions") or [bookmark]
    return sorted(
        str(entry["replication_key_value"])
        for entry in entries
        if entry.get("replication_key_value") is not None
    )


def run_summary(tap: Tap) -> RunSummary:
    """The summary of this tap's run, created with the first stream that reports to it."""
    summary = getattr(tap, "optouts_summary", None)
    if summary is None:
        summary = RunSummary()
        tap.optouts_summary = summary  # type: ignore[attr-defined]
    return summary


def log_run_summary(tap: Tap, status: str) -> dict[str, t.Any]:
    summary = run_summary(tap)
    streams = t.cast("t.Mapping[str, OptoutsStream]", tap.streams)
    result = summary.as_dict(streams, status, tap.state)
    summary.log(tap.logger, result)
    return result
