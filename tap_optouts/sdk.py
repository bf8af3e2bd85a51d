"""Every private singer-sdk name the tap uses: imported, overridden, copied or called here only
(tests/test_sdk_private_names.py keeps it so), each with why. Everything else in the tap uses the
SDK's public hooks.

Imported: `BatchFileFormat`, `BaseBatchFileEncoding`, `BatchConfig`, the BATCH message's
encoding and configuration (singer-sdk 0.54 has them in `singer_sdk.helpers._batch` only).

Overridden (`StreamHooks`), because the SDK's per-record path costs several times the provider
client's own work (the figures: benchmarks/README.md, "What each private SDK use buys"):
- `_write_record_message`: a RECORD the SDK would send unchanged is one msgspec-encoded line
  (`record_output.RecordLines`); any other takes the SDK's path.
- `_sync_records` (a copy of the SDK's loop) with `_process_record`: the loop without its
  per-record steps that do nothing here (no record limit, no post_process, no child streams,
  every record selected), the largest replication value kept in a local and given to the
  SDK's state at the partition's end (one update instead of one per record: the SDK keeps the
  largest value of an unsorted stream, so the state is the same), the record counter advanced
  every COUNT_EVERY records. Any stream these do not hold for takes the SDK's loop. Without
  it the tap takes x1.23 (CheckMarket) to x1.37 (Optizmo) as long: tap:checkmarket falls from
  0.4 x the orjson writer, the budget, to about 0.31.
- `_finalize_state`: a finished partition's STATE is written at once (a later partition that
  fails does not lose it), where the SDK writes one at the stream's end; STATE_MSG_FREQUENCY
  (public) is off, since between partitions an unsorted stream's state holds nothing a resumed
  run could use, and each STATE makes a target drain.
- `_sync_batches` (a copy of the SDK's, and the public `get_batches`): the files are written with
  msgspec, and one STATE follows the last BATCH message instead of one per file (a STATE between
  them carries only progress markers, and makes the target write each file separately: for
  Optizmo one bulk upload per file).
- called by the loop's copy: `_get_state_partition_context`, `_write_starting_replication_value`,
  `_increment_stream_state`, `_finalize_state`, `_write_state_message`; by `_sync_batches`:
  `_write_batch_message`. Read: `_tap` (the tap's message writer).

`SDK_SOURCES` holds a digest of the source of every SDK function named above, for the pinned
singer-sdk: the test fails when an upgrade changes one, and names what to re-read.
`use_stock_sdk` switches hooks off by name (`HOOKS`): the equivalence tests and
benchmarks/sdk_variants.py.
"""

from __future__ import annotations

import typing as t
from functools import cached_property

from singer_sdk import Stream
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig, BatchFileFormat
from singer_sdk.helpers.conform import TypeConformanceLevel

from optouts_providers.sdk_digest import sdk_source_digest
from tap_optouts.record_output import COUNT_EVERY, RecordLines, write_jsonl_files

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context, Record

__all__ = [
    "HOOKS",
    "SDK_SOURCES",
    "BaseBatchFileEncoding",
    "BatchConfig",
    "BatchFileFormat",
    "StreamHooks",
    "sdk_source_digest",
    "use_stock_sdk",
]

# The sha256 (16 hex digits) of `inspect.getsource` of each SDK function the hooks override,
# copy or call, for singer-sdk 0.54.x. When one changes, re-read it against its hook below,
# then record the new digest.
SDK_SOURCES = {
    "singer_sdk.streams.core.Stream._sync_records": "8928dc7f50e9bf57",
    "singer_sdk.streams.core.Stream._process_record": "8529b9f3ce2f849d",
    "singer_sdk.streams.core.Stream._get_state_partition_context": "e621b72985cafacf",
    "singer_sdk.streams.core.Stream._sync_batches": "a42df0f3a08779dc",
    "singer_sdk.streams.core.Stream._write_record_message": "292b7bed39883bd9",
    "singer_sdk.streams.core.Stream._increment_stream_state": "cabc0edb2fd4f000",
    "singer_sdk.streams.core.Stream._write_state_message": "f82ecd8d16986823",
    "singer_sdk.streams.core.Stream._write_starting_replication_value": "0a24e5d05cd5353c",
    "singer_sdk.streams.core.Stream._finalize_state": "e08e1d0714a904b2",
    "singer_sdk.streams.core.Stream._write_batch_message": "a92596532ab9daed",
    "singer_sdk.streams.core.Stream.get_batches": "a30339d2f28a2f9b",
}


class StreamHooks(Stream):
    """The private Stream methods the tap overrides (see the module docstring)."""

    STATE_MSG_FREQUENCY = 1 << 62  # public knob: STATE per partition and stream instead
    # The hooks switched off, the SDK's own path taken instead (`use_stock_sdk`): the
    # equivalence tests and the benchmark of what each buys. Names from HOOKS.
    stock_parts: t.ClassVar[frozenset[str]] = frozenset()
    _in_batches = False

    @cached_property
    def _record_lines(self) -> RecordLines:
        return RecordLines(self, self._tap.message_writer)

    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> t.Generator[dict, t.Any, t.Any]:
        # The SDK's loop, with its per-record steps that do nothing here taken out of it. Any
        # stream these do not hold for takes the SDK's loop: a record limit (dry runs and the
        # standard tests set one), child streams, post_process, a sorted stream.
        if (
            "loop" in self.stock_parts
            or self.ABORT_AT_RECORD_COUNT is not None
            or self.child_streams
            or not self.selected
            or type(self).post_process is not Stream.post_process
            or self.is_sorted
        ):
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        record_counter = self.get_record_counter()
        timer = self.get_sync_timer()
        key = self.replication_key
        write = self._write_record_message if write_messages else None
        with record_counter, timer:
            for element in ([context] if context is not None else self.partitions) or [{}]:
                record_counter.with_context(element)
                timer.with_context(element)
                current = element or None
                partition = self._get_state_partition_context(current)
                self._write_starting_replication_value(current)
                extra = list((partition or {}).items())
                largest: str | None = None
                count = 0
                for record in self.get_records(current):
                    for name, value in extra:
                        if name not in record:
                            record[name] = value
                    if write is not None:
                        write(record)
                    value = record.get(key) if key else None
                    if isinstance(value, str):
                        if largest is None or value > largest:
                            largest = value
                    elif key and value is not None:
                        self._increment_stream_state(record, context=current)
                    count += 1
                    if count % COUNT_EVERY == 0:
                        record_counter.increment(COUNT_EVERY)
                    yield record
                record_counter.increment(count % COUNT_EVERY)
                if largest is not None:
                    self._increment_stream_state({key: largest}, context=current)
                if current == partition:
                    self._finalize_state(self.get_context_state(current))
        if not context:
            self._finalize_state(self.stream_state)
        if write_messages:
            self._write_state_message()

    def _write_record_message(self, record: Record) -> None:
        if "record_lines" not in self.stock_parts and self._record_lines.write(record):
            self.state_manager.is_flushed = False
        else:
            super()._write_record_message(record)

    def _process_record(
        self,
        record: Record,
        child_context: Context | None = None,
        partition_context: Context | None = None,
    ) -> None:
        if "loop" in self.stock_parts or self.child_streams:
            super()._process_record(record, child_context, partition_context)
            return
        for key, value in (partition_context or {}).items():
            if key not in record:
                record[key] = value

    def _finalize_state(self, state: dict | None = None) -> None:
        super()._finalize_state(state)
        if "finalize_state" not in self.stock_parts and not self._in_batches:
            self._write_state_message()  # a finished partition's bookmark, at once

    def _sync_batches(self, batch_config: BatchConfig, context: Context | None = None) -> None:
        if "batches" in self.stock_parts:
            super()._sync_batches(batch_config, context)
            return
        self._in_batches = True
        try:
            with self.get_batch_counter() as counter:
                for encoding, manifest in self.get_batches(batch_config, context):
                    counter.increment()
                    self._write_batch_message(encoding=encoding, manifest=manifest)
        finally:
            self._in_batches = False
        self._write_state_message()

    def get_batches(
        self, batch_config: BatchConfig, context: Context | None = None
    ) -> t.Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        encoding = batch_config.encoding
        plain = self._record_lines.plain
        stock = "record_lines" in self.stock_parts
        if stock or encoding.format != BatchFileFormat.JSONL or not plain:
            yield from super().get_batches(batch_config, context)
            return
        records = self._sync_records(context, write_messages=False)
        for manifest in write_jsonl_files(self, batch_config, records):
            yield encoding, manifest


# What each hook is called in `stock_parts` and `use_stock_sdk`.
HOOKS = {
    "record_lines": "_write_record_message and get_batches: RECORD lines and files by msgspec",
    "loop": "_sync_records and _process_record: the record loop's copy",
    "finalize_state": "_finalize_state: a STATE after each finished partition",
    "batches": "_sync_batches: one STATE after the last BATCH message, not one per file",
    "state_frequency": "STATE_MSG_FREQUENCY off (public): STATE per partition, not per 10,000",
}


def use_stock_sdk(parts: t.Iterable[str] = tuple(HOOKS), *, knobs: bool = False) -> None:
    """The hooks named by `parts` (all by default) off: the tap takes the SDK's own path for
    them. With `knobs`, also the public TYPE_CONFORMANCE_LEVEL NONE. For the equivalence tests
    and the benchmark of what each hook buys."""
    chosen = frozenset(parts)
    unknown = chosen - HOOKS.keys()
    if unknown:
        raise ValueError(f"no such hook: {sorted(unknown)} (known: {sorted(HOOKS)})")
    StreamHooks.stock_parts = chosen
    if "state_frequency" in chosen:
        StreamHooks.STATE_MSG_FREQUENCY = Stream.STATE_MSG_FREQUENCY
    if knobs:
        StreamHooks.TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
