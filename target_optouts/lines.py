"""JSON lines read in chunks: what the stdin reader and the BATCH file reader share.

A line cut across reads is kept as the list of its pieces and joined once, when its newline
comes: the cost is linear in the line's length (joining the unfinished line to every read
made it quadratic). A line longer than `max_line` bytes is never held whole: as soon as it
passes the cap its pieces are dropped, and the caller either learns its length once its end
is read (`TooLong`, stdin: the rest of the input is still read) or gets `LineTooLong` at once
(a BATCH file: one unreadable line makes the file unreadable, so reading on is pointless).
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

# The longest line read by default (bytes, the newline not counted).
DEFAULT_MAX_LINE_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class TooLong:
    """In place of a line longer than the cap, skipped: its length in bytes (no newline)."""

    length: int


class LineTooLong(Exception):
    """A line passed the cap (`skip_long` false): `length` bytes read of it so far."""

    def __init__(self, length: int, max_line: int) -> None:
        super().__init__(f"a line longer than {max_line} bytes ({length} bytes read of it)")
        self.length = length
        self.max_line = max_line


def whole_line_chunks(
    read: t.Callable[[int], bytes],
    size: int,
    max_line: int = DEFAULT_MAX_LINE_BYTES,
    *,
    skip_long: bool = True,
) -> t.Iterator[bytes | TooLong]:
    """What `read` gives, in chunks that end after a newline (the last one may not), and a
    `TooLong` where a line longer than `max_line` was (`skip_long`), or `LineTooLong`.

    Reads are at most `max_line` bytes, so that a line longer than the cap always spans two
    reads or more and is measured as the unfinished line: the lines inside one read need no
    check."""
    size = max(1, min(size, max_line))
    parts: list[bytes] = []  # the unfinished line, in the pieces it came in
    pending = 0  # its length
    skipping: int | None = None  # the length so far of a line past the cap, being skipped
    while data := read(size):
        start = 0
        if skipping is not None:
            end = data.find(b"\n")
            if end < 0:
                skipping += len(data)
                continue
            yield TooLong(skipping + end)
            skipping, start = None, end + 1
        elif parts:
            end = data.find(b"\n")
            if end >= 0 and pending + end > max_line:
                length, parts, pending = pending + end, [], 0
                if not skip_long:
                    raise LineTooLong(length, max_line)
                yield TooLong(length)
                start = end + 1
        cut = data.rfind(b"\n") + 1
        if cut > start:
            yield b"".join([*parts, data[start:cut]]) if parts else data[start:cut]
            parts, pending = [], 0
            start = cut
        if start < len(data):
            piece = data[start:] if start else data
            parts.append(piece)
            pending += len(piece)
            if pending > max_line:
                if not skip_long:
                    raise LineTooLong(pending, max_line)
                parts, skipping, pending = [], pending, 0
    if skipping is not None:
        yield TooLong(skipping)
    elif parts:
        yield b"".join(parts)


def split_lines(chunk: bytes) -> list[bytes]:
    """A chunk's lines, cut at newlines only (`bytes.splitlines` also cuts at a lone CR, which
    JSON reads as a blank; the line numbers would drift)."""
    lines = chunk.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def line_count(chunk: bytes) -> int:
    """The lines of a chunk (its last line need not end in a newline)."""
    return chunk.count(b"\n") + (not chunk.endswith(b"\n"))
