"""Reading a downloaded file (docs/providers/optizmo.md, 'The download file'): a plain CSV or a
ZIP of CSVs, streamed in chunks, as text whose physical lines are capped ('Long lines'); and
the files' timestamps ('Time zone')."""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

import requests
import urllib3

from optouts_providers.http import ProviderError, RetryableProviderError
from optouts_providers.optizmo import wire
from optouts_providers.progress import Transfer
from optouts_providers.timeutil import parse_timestamp, to_rfc3339

CHUNK_BYTES = 1 << 16
# An opt-out row (an address, its MD5, a time, campaign names, an IP) is well under 2 KB: a
# physical line (its bytes before the `\n`) longer than this is not one, and is refused
# before it is held in memory.
MAX_LINE_BYTES = 1 << 20


def csv_texts(
    response: requests.Response,
    link: str,
    progress: Transfer | None = None,
    *,
    what: str = "the file",
) -> Iterator[io.TextIOWrapper]:
    """'The download file': a plain CSV, or a ZIP of CSVs told apart by its first bytes; text
    streams whose physical lines are capped at MAX_LINE_BYTES (`what` names the file in that
    error)."""
    chunks = _chunks(response, link, progress)
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= len(wire.ZIP_MAGIC):
            break
    body = _prepend(head, chunks)
    if not head.startswith(wire.ZIP_SIGNATURES):
        raw = io.BufferedReader(_LineCap(_ChunkStream(body), link, what), CHUNK_BYTES)
        yield io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        return
    with tempfile.TemporaryFile() as spool:
        for chunk in body:
            spool.write(chunk)
        spool.seek(0)
        try:
            archive = zipfile.ZipFile(spool)
        except zipfile.BadZipFile as exc:
            raise ProviderError(
                wire.PROVIDER,
                "GET",
                link,
                response.status_code,
                f"the download is not a readable ZIP archive ({exc})",
            ) from None
        with archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if not members:
                raise ProviderError(
                    wire.PROVIDER,
                    "GET",
                    link,
                    response.status_code,
                    "the download is an empty ZIP archive (no CSV file in it)",
                )
            for member in members:
                with archive.open(member) as handle:
                    capped = _LineCap(handle, link, f"{what}, ZIP member {member.filename!r}")
                    raw = io.BufferedReader(capped, CHUNK_BYTES)
                    yield io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


class _ChunkStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = memoryview(chunk)
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _chunks(
    response: requests.Response, link: str, progress: Transfer | None = None
) -> Iterator[bytes]:
    """The body in chunks; a connection closed early is a retryable error, never an EOF."""
    try:
        if progress is None:
            yield from response.iter_content(CHUNK_BYTES)
        else:
            for chunk in response.iter_content(CHUNK_BYTES):
                progress.received(len(chunk))
                yield chunk
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise RetryableProviderError(
            wire.PROVIDER,
            "GET",
            link,
            detail=f"the download was cut short ({type(exc).__name__}: the connection closed "
            "before the whole file arrived)",
        ) from None


class _LineCap(io.RawIOBase):
    """Passes a binary stream through, failing as soon as one physical line passes
    MAX_LINE_BYTES: the text layer above reads whole lines, so without this a file that is
    one endless line would be held in memory (twice: bytes and text) before the CSV reader
    saw it. Reads at most CHUNK_BYTES at a time, so a chunk holds no whole overlong line."""

    def __init__(self, inner: IO[bytes], link: str, what: str, limit: int = MAX_LINE_BYTES) -> None:
        self._inner = inner
        self._link = link
        self._what = what
        self._limit = limit
        self._run = 0  # bytes since the last line end
        self._line = 1  # the line `_run` belongs to

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        view = memoryview(target)[:CHUNK_BYTES]
        read = getattr(self._inner, "readinto", None)
        if read is not None:
            size = read(view) or 0
        else:  # pragma: no cover - every stream used here has readinto
            data = self._inner.read(len(view)) or b""
            size = len(data)
            view[:size] = data
        if size:
            self._check(bytes(view[:size]))
        return size

    def _check(self, chunk: bytes) -> None:
        first = chunk.find(b"\n")
        if first < 0:
            self._run += len(chunk)
            too_long = self._run > self._limit
        else:
            too_long = self._run + first > self._limit
            if not too_long:
                self._line += chunk.count(b"\n")
                self._run = len(chunk) - chunk.rfind(b"\n") - 1
        if too_long:
            raise ProviderError(
                wire.PROVIDER,
                "GET",
                self._link,
                200,
                f"{self._what}: line {self._line} of the download is longer than "
                f"{self._limit:,} bytes (an opt-out row is under 2 KB); the file is not an "
                "opt-out list, so it is not read further",
            )


def unreadable(link: str, what: str, line: int, exc: Exception) -> ProviderError:
    return ProviderError(
        wire.PROVIDER, "GET", link, 200, f"{what}: line {line} of the download is not CSV ({exc})"
    )


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def file_timestamp(raw: str, link: str) -> str:
    """'Time zone': UTC `YYYY-MM-DD HH:MM:SS` or RFC 3339, as `to_rfc3339` writes it."""
    try:
        value = datetime.fromisoformat(raw) if raw else None
        if (
            value is not None
            and value.tzinfo is None
            and len(raw) == 19
            and raw[4] == raw[7] == "-"
        ):
            # Exactly to_rfc3339's output for a naive UTC time in whole seconds, without the
            # per-row cost of strftime (files have millions of rows).
            return f"{raw[:10]}T{raw[11:]}.000000Z"
    except ValueError:
        value = None
    try:
        if value is None:
            value = parse_timestamp(raw)
    except ValueError:
        raise ProviderError(
            wire.PROVIDER, "GET", link, 200, f"a row has an unreadable timestamp {raw!r}"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return to_rfc3339(value)
