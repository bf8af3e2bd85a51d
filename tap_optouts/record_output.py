"""RECORD lines and BATCH files written as the SDK's msgspec writer would write them, for less.

For these streams singer-sdk spends several times the provider client's own work on each
record (a conformance pass over every property, a deselection pass, a copy for child contexts,
a state update, a message object). Whenever the SDK would send a record unchanged (every
property selected, the identity stream map, no property the schema does not know: values come
from JSON or the clients, so the conformance pass has nothing to convert), its RECORD message
is one msgspec-encoded line, the bytes `MsgSpecWriter` writes. `tap_optouts/sdk.py` decides
when this applies (it holds the SDK hooks); any other record takes the SDK's path.
"""

from __future__ import annotations

import atexit
import gzip
import sys
import time
import typing as t
from contextlib import ExitStack
from datetime import UTC, datetime
from uuid import uuid4

import msgspec
from singer_sdk import Stream
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.mapper import SameRecordTransform

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Record
    from singer_sdk.singerlib.encoding.simple import Message

    from tap_optouts.sdk import BatchConfig

_encoder = msgspec.json.Encoder()
# The record counter (its METRIC lines) is advanced this many records at a time.
COUNT_EVERY = 10_000
# Lines of a BATCH file are gathered and written this many at a time.
BATCH_WRITE_LINES = 4096
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

    def __init__(self, stream: Stream, writer: object) -> None:
        self.plain = plain_output(stream)
        schema = stream.schema
        self.open_schema = bool(schema.get("additionalProperties", False))
        self.properties = frozenset(schema.get("properties") or {})
        name = _encoder.encode(stream.stream_maps[0].stream_alias if stream.stream_maps else "")
        self.prefix = b'{"type":"RECORD","stream":' + name + b',"record":'
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


def plain_output(stream: Stream) -> bool:
    """True when the SDK would send a record exactly as the stream produced it."""
    maps = stream.stream_maps
    if len(maps) != 1 or type(maps[0]) is not SameRecordTransform:
        return False
    only = maps[0]
    if only.stream_alias != stream.name or (only.flattening_options and only.flattening_enabled):
        return False
    return all(selected for selected in stream.mask.values())


def write_jsonl_files(
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
