"""BATCH messages and their files: what this target can read, and reading it.

A BATCH message stands for a whole file of opt-outs, so anything that keeps the target from
reading one (an encoding other than JSON lines, a compression other than gzip, storage that
cannot be opened, a line longer than `max_line_bytes`) is a `BatchFileError`, which stops the
run with no STATE after it: the next run reads the file again from the last STATE. A line of a
file that is not JSON is a reject with its number, as one bad RECORD line is.
"""

from __future__ import annotations

import gzip
import io
import logging
import typing as t
from contextlib import ExitStack, contextmanager

import msgspec
from singer_sdk.contrib.msgspec import decoder

from optouts_providers.redact import redact
from target_optouts.errors import BatchFileError
from target_optouts.lines import LineTooLong, TooLong, line_count, split_lines, whole_line_chunks
from target_optouts.reader import StopReading
from target_optouts.sdk import BaseBatchFileEncoding, StorageTarget

logger = logging.getLogger("target-optouts")
GZIP_MAGIC = b"\x1f\x8b"  # no JSON line starts with these bytes

# Bytes of a batch file read at a time.
READ_BYTES = 1 << 20
FORMATS = ("jsonl",)
COMPRESSIONS = (None, "", "none", "gzip")


def message_problem(message: dict[str, t.Any], streams: t.Container[str]) -> str | None:
    """Why this target cannot read a BATCH message's files (None: it can try)."""
    stream, encoding = message.get("stream"), message.get("encoding")
    manifest = message.get("manifest")
    if not isinstance(stream, str) or stream not in streams:
        return f"it is for stream {stream!r}, which no SCHEMA described before it"
    if not isinstance(encoding, dict) or not isinstance(encoding.get("format"), str):
        return "it has no encoding format"
    if not isinstance(manifest, list) or not all(isinstance(f, str) for f in manifest):
        return "its manifest is not a list of file names"
    try:
        BaseBatchFileEncoding.from_dict(encoding)  # what the SDK makes of it next
    except (TypeError, ValueError) as exc:
        return f"its encoding cannot be read ({type(exc).__name__}: {exc})"
    return encoding_problem(encoding["format"], encoding.get("compression"))


def encoding_problem(file_format: object, compression: object) -> str | None:
    """Why this target cannot read files of this encoding (None: it can)."""
    if file_format not in FORMATS:
        return f"encoding format {file_format!r} is not supported (jsonl only)"
    if compression not in COMPRESSIONS:
        return f"compression {compression!r} is not supported (gzip or none)"
    return None


def unreadable(stream: str, reason: str) -> BatchFileError:
    return BatchFileError(
        f"target-optouts: a BATCH message of stream {stream!r} cannot be read: {reason}; its "
        "opt-outs are not acknowledged (no STATE covers them): run the tap again from the "
        "last STATE"
    )


@contextmanager
def open_file(
    path: str, storage: StorageTarget | None, compression: str | None, stream: str
) -> t.Iterator[t.IO[bytes]]:
    """A batch file's bytes (gzip undone). Storage that cannot be opened (a file gone, a
    scheme without its filesystem package) is a `BatchFileError`."""
    with ExitStack() as stack:
        try:
            head, tail = StorageTarget.split_url(path)
            handle = stack.enter_context((storage or StorageTarget.from_url(head)).open(tail))
        except (OSError, ImportError, ValueError) as exc:
            raise unreadable(stream, f"file {path!r}: {redact(exc)}") from None
        if compression != "gzip":
            # singer-sdk's own batcher compresses its files whatever the encoding names.
            handle = handle if hasattr(handle, "peek") else io.BufferedReader(handle)
            if handle.peek(2)[:2] == GZIP_MAGIC:
                logger.warning(
                    "target-optouts: stream %r: file %r is gzip-compressed though its BATCH "
                    "message names no compression; read as gzip",
                    stream,
                    path.rsplit("/", 1)[-1],
                )
                compression = "gzip"
        if compression == "gzip":
            handle = stack.enter_context(gzip.open(handle))
        yield handle


def read_records(
    handle: t.IO[bytes],
    name: str,
    stream: str,
    reject: t.Callable[[str], None],
    *,
    max_line: int,
    stopped: t.Callable[[], bool],
) -> t.Iterator[tuple[list[t.Any], int]]:
    """A JSON-lines file's records, decoded a block of lines at a time (one call for
    thousands of lines), each block with its number of non-blank lines. A line that is not
    JSON is rejected with its number; a line longer than `max_line` or a read error is a
    `BatchFileError`; a termination signal (`stopped`) stops the reading (`StopReading`)."""
    number = 0  # lines before the block
    chunks = whole_line_chunks(handle.read, READ_BYTES, max_line, skip_long=False)
    while True:
        if stopped():
            raise StopReading
        try:
            block = next(chunks, None)
        except LineTooLong as exc:
            reason = (
                f"line {number + 1} of file {name!r} is longer than max_line_bytes "
                f"({exc.max_line}): {exc.length} bytes read of it"
            )
            raise unreadable(stream, reason) from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise unreadable(stream, f"file {name!r}: {redact(exc)}") from None
        if block is None:
            return
        assert not isinstance(block, TooLong)  # skip_long is false
        try:
            records = decoder.decode_lines(block)  # the SDK's: numbers as Decimal
            number += line_count(block)
            yield records, len(records)
        except (msgspec.DecodeError, UnicodeDecodeError):
            records, lines = [], 0
            for line in split_lines(block):
                number += 1
                if not line.strip():
                    continue
                lines += 1
                try:
                    records.append(decoder.decode(line))
                except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                    reject(f"line {number} of batch file {name!r} is not JSON ({exc})")
            yield records, lines
