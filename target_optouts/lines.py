"""JSON lines read in chunks: what the stdin reader and the BATCH file reader share."""

from __future__ import annotations

import typing as t


def whole_line_chunks(read: t.Callable[[int], bytes], size: int) -> t.Iterator[bytes]:
    """What `read(size)` gives, in chunks that end after a newline (the last one may not): a
    line cut across reads is completed by the next read before it is handed on."""
    rest = b""
    while data := read(size):
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        rest = data[cut:]
    if rest:
        yield rest


def line_count(chunk: bytes) -> int:
    """The lines of a chunk (its last line need not end in a newline)."""
    return chunk.count(b"\n") + (not chunk.endswith(b"\n"))
