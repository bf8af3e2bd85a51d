"""The base class of every opt-out stream: incremental, window frozen at sync start.

A provider stream implements `fetch(context, start, end)`, yielding records whose replication
key is an RFC 3339 UTC string (`optouts_providers.timeutil.to_rfc3339`, fixed width so strings
sort like times). This class computes the window: from the bookmark (or `start_date`) less
`lookback_minutes`, to the sync start. The lookback widens the query only; rows before the
window start (a day-granular API brings some back) and rows at or after the sync start are
dropped here, whatever the provider did.
"""

from __future__ import annotations

import logging
import typing as t
from datetime import UTC, datetime, timedelta
from importlib import resources

from singer_sdk import Stream

from optouts_providers.timeutil import to_rfc3339
from tap_optouts.sdk import StreamHooks
from tap_optouts.sync_report import CHECK_MASK, PartitionProgress, run_summary

if t.TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from optouts_providers.http import CallStats

logger = logging.getLogger("optouts.tap")


def load_schema(name: str) -> dict[str, t.Any]:
    import json

    text = resources.files("tap_optouts").joinpath("schemas", f"{name}.json").read_text()
    return json.loads(text)


class OptoutsStream(StreamHooks, Stream):
    """An incremental opt-out stream over one provider client."""

    replication_method = "INCREMENTAL"
    is_sorted = False  # providers promise no order; the bookmark is the largest value seen
    provider_key: str = ""  # the config object naming this provider ("checkmarket", ...)

    def __init__(self, tap: Tap, schema: dict | None = None, name: str | None = None) -> None:
        super().__init__(tap=tap, schema=schema, name=name)
        self.owner_tap = tap  # the SDK keeps it private; the sync start and summary live there

    @property
    def provider_config(self) -> dict[str, t.Any]:
        return dict(self.config.get(self.provider_key) or {})

    @property
    def sync_started_at(self) -> datetime:
        return self.owner_tap.sync_started_at  # type: ignore[attr-defined]

    def window(self, context: Context | None) -> tuple[datetime, datetime]:
        """(query start, frozen end) for this partition."""
        start = self.get_starting_timestamp(context)
        if start is None:
            start = datetime(1970, 1, 1, tzinfo=UTC)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        lookback = timedelta(minutes=float(self.config.get("lookback_minutes", 60) or 0))
        try:
            return start - lookback, self.sync_started_at
        except OverflowError:  # a bookmark in year 1: the lookback reaches before any date
            return datetime.min.replace(tzinfo=UTC), self.sync_started_at

    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        start, end = self.window(context)
        low, high = to_rfc3339(start), to_rfc3339(end)
        key = self.replication_key
        assert key is not None
        if start >= end:
            # A bookmark (or start_date) past the sync start, as a skewed clock leaves it:
            # nothing can be new yet. A request would ask the provider for from > to.
            self.logger.warning(
                "%s%s: nothing to read: the window starts at %s, after the sync start %s "
                "(a bookmark or start_date in the future); the bookmark is kept",
                self.name,
                f" ({context})" if context else "",
                low,
                high,
            )
            if self.is_last_partition(context):
                self.close_client()
            return
        self.logger.info(
            "%s: reading opt-outs from %s to %s%s",
            self.name,
            low,
            high,
            f" ({context})" if context else "",
        )
        before = self.client_stats()
        before = before.copy() if before is not None else None
        progress = PartitionProgress(self.logger, self.name, context)
        count = 0
        status = "failed"
        try:
            for record in self.fetch(context, start, end):
                value = record.get(key)
                # A record without a value is still an opt-out (its client warned): it is
                # written, and does not move the bookmark.
                if value is not None and (value < low or value >= high):
                    continue
                count += 1
                if not count & CHECK_MASK:
                    progress.tick(count)
                yield record
            status = "succeeded"
        except GeneratorExit:
            status = "stopped"
            raise
        finally:
            self.log_calls(context, before)
            seconds = progress.finish(count, status)
            run_summary(self.owner_tap).add(self.name, count, seconds)
            if self.is_last_partition(context):
                self.close_client()

    def fetch(
        self, context: Context | None, start: datetime, end: datetime
    ) -> t.Iterator[dict[str, t.Any]]:
        raise NotImplementedError

    def client_stats(self) -> CallStats | None:
        """The provider client's call counters (None until the client exists)."""
        client = self.__dict__.get("client")  # the `client` cached_property, once built
        return getattr(client, "stats", None)

    def is_last_partition(self, context: Context | None) -> bool:
        """The stream reads nothing after this partition (or it has none)."""
        partitions = self.partitions
        return not partitions or context == partitions[-1]

    def close_client(self) -> None:
        """Close the provider client's connections, once the stream needs them no more."""
        client = self.__dict__.get("client")  # the `client` cached_property, once built
        if client is not None:
            client.close()

    def log_calls(self, context: Context | None, before: CallStats | None) -> None:
        """Requests, retries and time spent throttled for this stream or partition."""
        stats = self.client_stats()
        if stats is None:
            return
        spent = stats.minus(before) if before is not None else stats
        where = f" ({context})" if context else ""
        self.logger.info("%s calls%s: %s", self.name, where, spent.line())
