"""The per-record path of a sync, without the SDK's costs that change nothing for these streams.

singer-sdk spends several times the provider client's own work on each record: a conformance
pass over every property, a deselection pass, a copy for child contexts, a state update, and a
message object. For these streams, most of that changes nothing, so:

- A RECORD message is one msgspec-encoded line, the bytes the SDK's `MsgSpecWriter` writes,
  whenever the SDK would send the record unchanged: every property selected, the identity
  stream map (no alias, filter, flattening or mapping), and no property the schema does not
  know (values come from JSON or the clients, so the conformance pass has nothing to convert).
  Any other record takes the SDK's path.
- The largest replication value is kept here and given to the SDK's state before anything
  reads it (a STATE message, the partition's end): the SDK keeps the largest of an unsorted
  stream, so the state is the same, for one update instead of one per record.
- There are no child streams: a record is not copied for child contexts.
- STATE follows each partition and the stream, not every 10,000 records: between partitions
  an unsorted stream's state holds nothing a resumed run could use, and each STATE makes a
  target drain (write) its batch.
- BATCH messages (`batch_config`, JSON lines): the files are written with msgspec, and one
  STATE follows the last BATCH message (see `get_batches`).
"""

from __future__ import annotations

import atexit
import gzip
import sys
import time
import typing as t
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import cached_property
from uuid import uuid4

import msgspec
from singer_sdk import Stream
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.mapper import SameRecordTransform

from tap_optouts.sdk import BatchFileFormat

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context, Record
    from singer_sdk.singerlib.encoding.simple import Message

    from tap_optouts.sdk import BaseBatchFileEncoding, BatchConfig

_encoder = msgspec.json.Encoder()
# Lines of a BATCH file are gathered and written this many at a time.
BATCH_WRITE_LINES = 4096
# The record counter (its METRIC lines) is advanced this many records at a time.
COUNT_EVERY = 10_000
# RECORD lines are written to stdout in blocks of about this size.
OUTPUT_BLOCK_BYTES = 1 << 16


class LineWriter(MsgSpecWriter):
    """The SDK's msgspec writer, plus `write_line` for lines made elsewhere, gathered into
    blocks: one write per block instead of per record (stdout is often unbuffered, as under
    PYTHONUNBUFFERED). Any other message first writes what is gathered, so the order holds."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[bytes] = []
        self._size = 0
        atexit.register(self.flush_lines)

    def write_line(self, line: bytes) -> None:
        self._pending.append(line)
        self._size += len(line)
        if self._size >= OUTPUT_BLOCK_BYTES:
            self.flush_lines()

    def flush_lines(self) -> None:
        if self._pending:
            block = b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            sys.stdout.buffer.write(block)
            sys.stdout.flush()

    def write_message(self, message: Message) -> None:
        self.flush_lines()
        super().write_message(message)


class RecordLines:
    """Writes a stream's RECORD messages to stdout as the SDK's MsgSpecWriter would."""

    def __init__(self, stream: Stream) -> None:
        self.plain = _plain_output(stream)
        schema = stream.schema
        self.open_schema = bool(schema.get("additionalProperties", False))
        self.properties = frozenset(schema.get("properties") or {})
        name = _encoder.encode(stream.stream_maps[0].stream_alias if stream.stream_maps else "")
        self.prefix = b'{"type":"RECORD","stream":' + name + b',"record":'
        writer = stream._tap.message_writer
        self.write_line = writer.write_line if isinstance(writer, LineWriter) else _write_stdout
        self._stamped_at = 0.0
        self._suffix = b""

    def write(self, record: Record) -> bool:
        """Write the record's message; False when the SDK's path must write it instead."""
        if not self.plain or not (self.open_schema or record.keys() <= self.properties):
            return False
        now = time.time()
        if now - self._stamped_at >= 0.001:  # time_extracted, to the millisecond
            self._stamped_at = now
            stamp = _encoder.encode(datetime.fromtimestamp(now, UTC))
            self._suffix = b',"time_extracted":' + stamp + b"}\n"
        self.write_line(self.prefix + _encoder.encode(record) + self._suffix)
        return True


def _write_stdout(line: bytes) -> None:
    sys.stdout.buffer.write(line)
    sys.stdout.flush()


def _plain_output(stream: Stream) -> bool:
    """True when the SDK would send a record exactly as the stream produced it."""
    maps = stream.stream_maps
    if len(maps) != 1 or type(maps[0]) is not SameRecordTransform:
        return False
    only = maps[0]
    if only.stream_alias != stream.name or (only.flattening_options and only.flattening_enabled):
        return False
    return all(selected for selected in stream.mask.values())


class FastSyncMixin(Stream):
    """Mixed into a stream class (see the module docstring)."""

    STATE_MSG_FREQUENCY = 1 << 62  # STATE per partition and stream instead (see above)
    _in_batches = False

    @cached_property
    def _record_lines(self) -> RecordLines:
        return RecordLines(self)

    @cached_property
    def _largest_seen(self) -> dict[int, tuple[Context | None, str, bool]]:
        """Per partition (by its context object): the largest replication value seen, and
        whether the SDK's state has yet to be given it."""
        return {}

    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> t.Generator[dict, t.Any, t.Any]:
        # The SDK's loop, with its per-record steps that do nothing here taken out of the
        # loop: no record limit (dry runs and the standard tests set one: the SDK's loop),
        # no post_process, no child streams, every record selected; the largest replication
        # value kept in a local and given to the state at the partition's end (nothing reads
        # the state in between: STATE is written per partition), the record counter advanced
        # every COUNT_EVERY records.
        if (
            self.ABORT_AT_RECORD_COUNT is not None
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
        if self._record_lines.write(record):
            self.state_manager.is_flushed = False
        else:
            super()._write_record_message(record)

    def _process_record(
        self,
        record: Record,
        child_context: Context | None = None,
        partition_context: Context | None = None,
    ) -> None:
        if self.child_streams:
            super()._process_record(record, child_context, partition_context)
            return
        for key, value in (partition_context or {}).items():
            if key not in record:
                record[key] = value

    def _write_starting_replication_value(self, context: Context | None) -> None:
        self._give_largest()
        self._largest_seen.pop(id(context), None)  # a partition (re)starts from its state
        super()._write_starting_replication_value(context)

    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        # The largest value is kept here and given to the SDK's state before anything reads
        # it (a STATE message, the partition's end): the same state, one update instead of one
        # per record (a list sorted by date would make every record the new largest).
        value = latest_record.get(self.replication_key) if self.replication_key else None
        if value is None and self.replication_key:
            return  # a record without a replication value moves no bookmark
        if not isinstance(value, str) or self.is_sorted:
            self._give_largest()
            super()._increment_stream_state(latest_record, context=context)
            return
        seen = self._largest_seen.get(id(context))
        if seen is None or seen[0] is not context or value > seen[1]:
            self._largest_seen[id(context)] = (context, value, True)

    def _give_largest(self) -> None:
        key = self.replication_key
        for slot, (context, value, pending) in list(self._largest_seen.items()):
            if pending and key:
                super()._increment_stream_state({key: value}, context=context)
                self._largest_seen[slot] = (context, value, False)

    def _write_state_message(self) -> None:
        self._give_largest()
        super()._write_state_message()

    def _finalize_state(self, state: dict | None = None) -> None:
        self._give_largest()
        super()._finalize_state(state)
        if not self._in_batches:
            self._write_state_message()  # a finished partition's bookmark, at once

    # -- BATCH messages ---------------------------------------------------------------------
    def _sync_batches(self, batch_config: BatchConfig, context: Context | None = None) -> None:
        # As the SDK, but one STATE after the last BATCH message: a STATE between them would
        # only carry progress markers (unsorted streams), and would make the target write each
        # file's opt-outs separately (for Optizmo, one bulk upload per file).
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
        if encoding.format != BatchFileFormat.JSONL or not self._record_lines.plain:
            yield from super().get_batches(batch_config, context)
            return
        records = self._sync_records(context, write_messages=False)
        for manifest in _write_jsonl_files(self, batch_config, records):
            yield encoding, manifest


def _write_jsonl_files(
    stream: Stream, batch_config: BatchConfig, records: t.Iterator[Record]
) -> t.Iterator[list[str]]:
    """JSON-lines files of at most `batch_size` records (gzip when the encoding says so), each
    yielded as a manifest of one file once it is complete."""
    storage = batch_config.storage
    compressed = batch_config.encoding.compression == "gzip"
    name = f"{storage.prefix or ''}{stream.tap_name}--{stream.name}-{uuid4()}"
    limit = max(1, int(batch_config.batch_size or 10_000))
    number, written, pending = 1, 0, []
    with ExitStack() as files:
        handle = None
        for record in records:
            if handle is None:
                filename = f"{name}-{number}.json" + (".gz" if compressed else "")
                raw = files.enter_context(storage.open(filename, mode="wb"))
                handle = (
                    files.enter_context(gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1))
                    if compressed
                    else raw
                )
            pending.append(record)
            written += 1
            if len(pending) >= BATCH_WRITE_LINES:
                handle.write(_encoder.encode_lines(pending))
                pending.clear()
            if written == limit:
                if pending:
                    handle.write(_encoder.encode_lines(pending))
                    pending.clear()
                files.close()
                handle = None
                yield [storage.get_url(filename)]
                number, written = number + 1, 0
        if handle is not None:
            if pending:
                handle.write(_encoder.encode_lines(pending))
            files.close()
            yield [storage.get_url(filename)]
