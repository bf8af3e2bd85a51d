"""RECORD messages of one stream in a row, taken a block at a time.

The SDK spends about as much on each RECORD message as the sink does: it copies the record for
every stream map, maps it, looks the sink up and asserts it exists (twice), checks the
message's keys, and asks whether the sink is full through three properties. For a stream
whose only map is the identity (no alias, filter, flattening or mapping; the common case) and
whose sink adds no `_sdc` metadata, the reader hands its RECORD messages in a row over as one
block (`record_taker`): the block is tallied, validated and normalised by the sink in one call
(`OptoutsSink.take_records`), and the sink is drained when the block fills it, as it would be
after the record that filled it. Any other stream's records take the SDK's path, one message
at a time. The sink a stream uses is looked up again after each SCHEMA message (a new schema
makes a new sink).
"""

from __future__ import annotations

import functools
import typing as t

from singer_sdk.mapper import SameRecordTransform

from target_optouts.sdk import TargetHooks

if t.TYPE_CHECKING:
    from singer_sdk.sinks import Sink


class RecordBlocks(TargetHooks):
    record_blocks: t.ClassVar[bool] = True  # False: every RECORD message the SDK's way
    _plain_sinks: dict[str, Sink | None] | None = None

    def forget_plain_sinks(self) -> None:
        """After a SCHEMA message: a stream's sink may have changed."""
        self._plain_sinks = None

    def plain_sink(self, stream: t.Any) -> Sink | None:
        """The stream's sink when its records reach it unchanged; None otherwise."""
        if self._plain_sinks is None:
            self._plain_sinks = {}
        if stream in self._plain_sinks:
            return self._plain_sinks[stream]
        sink = None
        maps = self.mapper.stream_maps.get(stream) if isinstance(stream, str) else None
        if maps and len(maps) == 1:
            only = maps[0]
            unchanged = type(only) is SameRecordTransform and not (
                only.flattening_options and only.flattening_enabled
            )
            found = self.active_sink(stream)
            if unchanged and only.stream_alias == stream and found is not None:
                sink = None if found.include_sdc_metadata_properties else found
        self._plain_sinks[stream] = sink
        return sink

    def record_taker(self, stream: str) -> t.Callable[[list[dict[str, t.Any]]], None] | None:
        """What takes this stream's records a block at a time; None: one message at a time."""
        sink = self.plain_sink(stream) if self.record_blocks else None
        if sink is None or not hasattr(sink, "take_records"):
            return None
        return functools.partial(self.take_record_block, sink)

    def take_record_block(self, sink: Sink, records: list[dict[str, t.Any]]) -> None:
        while records:
            # No more than the sink holds: it drains where the SDK's path would drain it.
            room = max(1, sink.max_size - sink.current_size)
            part, records = records[:room], records[room:]
            sink.tally_record_read(len(part))
            sink.take_records(part)  # type: ignore[attr-defined]
            sink.record_counter_metric.increment(len(part))
            if sink.current_size >= sink.max_size:
                self.logger.info(
                    "Target sink for '%s' is full. Current size is '%s'. Draining...",
                    sink.stream_name,
                    sink.current_size,
                )
                self.drain_one(sink)
        self.handle_max_record_age()
