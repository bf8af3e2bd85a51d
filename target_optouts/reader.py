"""Reading Singer messages so that bad input is rejected, never a crash.

The input is read as bytes where it has them (stdin, `--input`): a line that is not UTF-8, not
JSON, not an object or has no `type` goes to `on_invalid` with its line number and a reason,
and the next line is read. Valid lines cost what msgspec costs (no text decoding step).

RECORD messages of one stream that come in a row are handed over together (`take_records`,
up to `RECORD_BLOCK` at a time) when the target offers a taker for the stream: one call per
block instead of a dozen per record. Any other message, a change of stream, the end of input or
a stop first hands over what was gathered, so the order of records and STATE messages holds.

`busy` is true while a message or a block is handled (a batch may be in flight); a termination
signal that arrives then sets `stop_signal`, and reading stops after it (see target.py).

A line longer than `max_line` bytes is not read into memory: it is rejected with its length and
number, and the next line is read (`lines.whole_line_chunks`).
"""

from __future__ import annotations

import logging
import sys
import typing as t
from collections import Counter

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder

from target_optouts.lines import (
    DEFAULT_MAX_LINE_BYTES,
    TooLong,
    line_count,
    split_lines,
    whole_line_chunks,
)

logger = logging.getLogger("target-optouts")

# RECORD messages of one stream handed over at a time (see the module docstring).
RECORD_BLOCK = 1000
# Bytes of input read at a time (at most: a pipe gives what it holds).
CHUNK_BYTES = 1 << 16
# What takes a stream's records a block at a time, or None (each message takes the SDK's path).
BlockTaker = t.Callable[[str], t.Callable[[list[dict[str, t.Any]]], None] | None]


class StopReading(Exception):
    """Raised by the signal handler to stop waiting for input."""


def _log_only(number: int, reasons: list[str], text: str) -> None:
    logger.warning("input line %d rejected: %s", number, "; ".join(reasons))


class OptoutsReader(MsgSpecReader):
    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0
        self.busy = False
        self.stop_signal: int | None = None
        self.max_line = DEFAULT_MAX_LINE_BYTES  # bytes (`max_line_bytes`)
        self.on_invalid: t.Callable[[int, list[str], str], None] = _log_only
        self._raw: bytes | str = b""
        self._line_rejected = False
        self.take_records: BlockTaker = _no_blocks
        self._block: _Block | None = None
        # The chunk being read and the number of its first line (see `_messages`).
        self._chunk: tuple[bytes, int] | None = None

    @property
    def default_input(self) -> t.IO[bytes]:  # type: ignore[override]
        return sys.stdin.buffer

    def current_text(self) -> str:
        """The line being handled, as text (undecodable bytes shown as escapes)."""
        if self._chunk is not None:  # a line of a chunk read at once: found when asked for
            chunk, first = self._chunk
            self._raw = chunk.split(b"\n")[self.line_number - first]
            self._chunk = None
        raw = self._raw
        text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
        return text.rstrip("\r\n")

    def reject_current(self, reason: str) -> None:
        if self._block is not None and self._block.records:
            self._block.hand_over()  # the records before this line are handled before it
        self._line_rejected = True
        self.on_invalid(self.line_number, [reason], self.current_text())

    def deserialize_json(self, line: bytes | str) -> dict:  # type: ignore[override]
        message = self.parse(line)
        if message is None:
            raise ValueError(f"line {self.line_number} is not a Singer message")
        return message

    def parse(self, raw: bytes | str) -> dict[str, t.Any] | None:
        """The message of one line, or None (blank, or rejected with its reason)."""
        self._raw = raw
        self._chunk = None
        try:
            message = decoder.decode(raw)
        except (UnicodeDecodeError, msgspec.DecodeError) as exc:
            # msgspec 0.23 says "Invalid UTF-8" as a DecodeError; older ones raised
            # UnicodeDecodeError.
            position = _first_bad_byte(raw)
            if position is not None:
                self.reject_current(f"not valid UTF-8 (byte {position} of the line)")
            elif raw.strip():
                self.reject_current(f"not JSON ({exc})")
            return None
        if not isinstance(message, dict):
            self.reject_current(f"not a JSON object ({type(message).__name__})")
            return None
        if not isinstance(message.get("type"), str):
            self.reject_current("a message without a type")
            return None
        return message

    def process_lines(
        self,
        file_input: t.IO[t.Any] | None,
        callbacks: dict[str, t.Callable[[dict], None]],
    ) -> t.Counter[str]:
        counts: Counter[str] = Counter()
        source = file_input if file_input is not None else self.default_input
        source = getattr(source, "buffer", source)
        block = self._block = _Block(self, counts)
        try:
            for message in self._messages(source):
                kind = message["type"]
                if kind == "RECORD" and block.add(message):
                    if self.stop_signal is not None:
                        break
                    continue
                if block.records and not block.hand_over():
                    break
                callback = callbacks.get(kind)
                if callback is None:
                    self.reject_current(f"unknown message type {kind!r}")
                    continue
                self.busy = True
                self._line_rejected = False
                try:
                    callback(message)
                finally:
                    self.busy = False
                if not self._line_rejected:  # counted once: as a message or as a reject
                    counts[kind] += 1
                if self.stop_signal is not None:
                    break
        except StopReading:
            pass
        if block.records:  # the end of input, or a stop: what was read is handed over
            block.hand_over()
        return counts

    def _messages(self, source: t.IO[t.Any]) -> t.Iterator[dict[str, t.Any]]:
        """The input's messages, `line_number` at each one's line. Bytes are read a chunk at a
        time (what the pipe holds, up to CHUNK_BYTES) and a chunk of sound messages is decoded
        in one call; a chunk with a line that is not one (or a blank line) is read line by line
        (`parse`, which rejects it with its number)."""
        read = getattr(source, "read1", None)
        if read is None:  # text: line by line
            yield from self._parse_lines(source)
            return
        for chunk in whole_line_chunks(read, CHUNK_BYTES, self.max_line):
            if isinstance(chunk, TooLong):
                self.line_number += 1
                self._raw, self._chunk = b"", None
                self.reject_current(
                    f"a line of {chunk.length} bytes, longer than max_line_bytes "
                    f"({self.max_line}): not read"
                )
                continue
            messages = self._decode_chunk(chunk)
            if messages is None:
                yield from self._parse_lines(split_lines(chunk))
                continue
            first = self.line_number + 1
            for message in messages:
                self.line_number += 1
                self._chunk = (chunk, first)
                yield message

    def _parse_lines(self, lines: t.Iterable[bytes | str]) -> t.Iterator[dict[str, t.Any]]:
        """Each line's message (`parse`: a line that is not one is rejected with its number)."""
        for raw in lines:
            self.line_number += 1
            message = self.parse(raw)
            if message is not None:
                yield message

    def _decode_chunk(self, chunk: bytes) -> list[dict[str, t.Any]] | None:
        """A chunk's messages, when each of its lines is one (a JSON object with a type)."""
        try:
            messages = decoder.decode_lines(chunk)  # the SDK's: numbers as Decimal
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        if len(messages) != line_count(chunk):  # a blank line
            return None
        for message in messages:
            if type(message) is not dict or type(message.get("type")) is not str:
                return None
        return messages


class _Block:
    """RECORD messages of one stream in a row, gathered for the stream's taker."""

    def __init__(self, reader: OptoutsReader, counts: Counter[str]) -> None:
        self.reader = reader
        self.counts = counts
        self.stream: str | None = None
        self.taker: t.Callable[[list[dict[str, t.Any]]], None] | None = None
        self.records: list[dict[str, t.Any]] = []

    def add(self, message: dict[str, t.Any]) -> bool:
        """Gather the message's record; False when it must take the one-message path."""
        stream, record = message.get("stream"), message.get("record")
        if type(record) is not dict:
            return False
        if stream != self.stream or self.taker is None:
            if not isinstance(stream, str):
                return False
            taker = self.reader.take_records(stream)
            if taker is None:
                return False
            if self.records and not self.hand_over():
                return True  # stopped by a signal: this record is not read
            self.stream, self.taker = stream, taker
        self.records.append(record)
        if len(self.records) >= RECORD_BLOCK:
            self.hand_over()
        return True

    def hand_over(self) -> bool:
        """Give the gathered records to the taker; False when a signal asks to stop."""
        records, self.records = self.records, []
        taker, self.stream, self.taker = self.taker, None, None
        if records and taker is not None:
            self.reader.busy = True
            try:
                taker(records)
            finally:
                self.reader.busy = False
            self.counts["RECORD"] += len(records)
        return self.reader.stop_signal is None


def _no_blocks(stream: str) -> None:
    return None


def _first_bad_byte(raw: bytes | str) -> int | None:
    """Where a line of bytes stops being UTF-8; None when it is UTF-8 (or text)."""
    if isinstance(raw, str):
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return None
