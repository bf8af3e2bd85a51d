"""The file behind a list download: the rows a download selects, as CSV or a ZIP of it.

A CSV is either streamed as it is made or rendered once to a temporary file (ZIP, or a run
that cuts downloads short), so big lists do not sit in memory twice. The test faults on the
file itself ("empty_zip", "drop_column:<name>", "long_line:<bytes>") are made here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import zipfile
from collections.abc import Iterable, Iterator
from datetime import date
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING

from optouts_providers.optizmo import wire
from optouts_sandbox.optizmo.lists import DAY, EPOCH_ORDINAL, ORIGIN_FIELDS, OptoutList, epoch_day

if TYPE_CHECKING:
    from optouts_sandbox.optizmo.storage import Download

FILE_CHUNK = 1 << 16
CSV_CHUNK_ROWS = 1000  # rows per piece of a streamed download (about 80 KB)
_CLOCK: list[str] = []


def file_columns(download: Download, fault: str | None) -> list[str]:
    columns = wire.file_columns(download.columns)
    if fault and fault.startswith("drop_column:"):
        columns = [c for c in columns if c != fault.split(":", 1)[1]]
    return columns


def long_line(fault: str | None) -> int:
    """The line length a `long_line:<bytes>` fault asks for (0: not that fault)."""
    if not fault or not fault.startswith("long_line:"):
        return 0
    return max(1, int(fault.split(":", 1)[1]))


def streamed_csv(download: Download, lst: OptoutList, fault: str | None) -> Iterator[bytes]:
    """The CSV file made as it is sent (chunked: the client reads while the rest is written)."""
    columns = file_columns(download, fault)
    if long_line(fault):
        return long_line_chunks(columns, long_line(fault))
    return csv_chunks(columns, selected(download, lst, columns))


def render(path: Path, download: Download, lst: OptoutList, fmt: str, fault: str | None) -> None:
    """Write the download's file, "csv" or "zip", to `path`."""
    columns = file_columns(download, fault)
    with open(path, "wb") as raw:
        if fmt == "csv" and long_line(fault):
            for chunk in long_line_chunks(columns, long_line(fault)):
                raw.write(chunk)
        elif fmt == "csv":
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            _write_csv(text, columns, selected(download, lst, columns))
            text.detach()
        else:
            with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
                if long_line(fault):
                    with archive.open("optouts.csv", "w", force_zip64=True) as member:
                        for chunk in long_line_chunks(columns, long_line(fault)):
                            member.write(chunk)
                elif fault != "empty_zip":
                    with archive.open("optouts.csv", "w") as member:
                        text = io.TextIOWrapper(member, encoding="utf-8", newline="")
                        _write_csv(text, columns, selected(download, lst, columns))
                        text.detach()


def _write_csv(text: io.TextIOWrapper, columns: list[str], rows: Iterable[list[str]]) -> None:
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows(rows)
    text.flush()


def long_line_chunks(columns: list[str], size: int) -> Iterator[bytes]:
    """A header row, then one line of `size` bytes with no line end until its last byte,
    made a piece at a time (never whole in memory)."""
    yield (",".join(columns) + "\r\n").encode("utf-8")
    piece = b"a" * FILE_CHUNK
    left = size
    while left > 0:
        step = min(left, FILE_CHUNK)
        yield piece if step == FILE_CHUNK else piece[:step]
        left -= step
    yield b"\r\n"


def csv_chunks(columns: list[str], rows: Iterator[list[str]]) -> Iterator[bytes]:
    """The CSV file in pieces of about FILE_CHUNK bytes, made as they are sent. A row no
    cell of which needs quoting (most) is joined by hand; any other is the csv module's."""
    quoted = io.StringIO()
    writer = csv.writer(quoted)
    commas = len(columns) - 1
    writer.writerow(columns)
    header = quoted.getvalue()
    while True:
        lines = []
        for cells in itertools.islice(rows, CSV_CHUNK_ROWS):
            line = ",".join(cells)
            if line.count(",") != commas or '"' in line or "\n" in line or "\r" in line:
                quoted.seek(0)
                quoted.truncate()
                writer.writerow(cells)
                line = quoted.getvalue()[:-2]  # less the "\r\n" the writer ends it with
            lines.append(line)
        if not lines:
            if header:
                yield header.encode("utf-8")
            return
        yield (header + "\r\n".join(lines) + "\r\n").encode("utf-8")
        header = ""


def selected(download: Download, lst: OptoutList, columns: list[str]) -> Iterator[list[str]]:
    """The cells of the rows a download holds (its filters, in list order)."""
    # domainFilter applies to email addresses; SMS lists have none (ignored there).
    domains = download.domains if lst.kind == "email" else []
    types = download.collection_types
    low = epoch_day(download.date_from) * DAY if download.date_from else None
    high = (epoch_day(download.date_to) + 1) * DAY if download.date_to else None
    plains, ats, origins, hash_only = lst.plains, lst.ats, lst.origins, lst.hash_only
    # A row's cells picked from (plain, hashed, timestamp, *origin) in one call.
    positions = {"plain": 0, "hashed": 1, "timestamp": 2}
    positions.update({name: 3 + at for name, at in ORIGIN_FIELDS.items()})
    pick = itemgetter(*(positions[column] for column in columns))
    single = len(columns) == 1
    days: dict[int, str] = {}
    clock = _clock_times()
    pending_visibility = bool(lst.visible_at)
    md5 = hashlib.md5
    for index in range(download.limit):
        if pending_visibility and not lst.visible(index, download.prepared_at):
            continue
        origin = origins[index]
        if ("collected" if origin[0] else "imported") not in types:
            continue
        at = ats[index]
        if (low is not None and at < low) or (high is not None and at >= high):
            continue
        plain = plains[index]
        if domains and not (plain and wire.domain_matches(plain, domains)):
            continue
        hashed = hash_only.get(index) if hash_only and not plain else None
        if hashed is None:
            hashed = md5(plain.encode()).hexdigest()
        day, second = divmod(at, DAY)  # the timestamp, wire.TIMESTAMP_FORMAT
        text = days.get(day)
        if text is None:
            text = days[day] = date.fromordinal(EPOCH_ORDINAL + day).isoformat()
        cells = pick((plain, hashed, f"{text} {clock[second]}", *origin))
        yield [cells] if single else list(cells)


def _clock_times() -> list[str]:
    """`HH:MM:SS` for every second of a day (built once, 5 MB)."""
    if not _CLOCK:
        _CLOCK.extend(
            f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
        )
    return _CLOCK


def file_chunks(path: Path, limit: int) -> Iterator[bytes]:
    """The first `limit` bytes of a file, in chunks (a shorter `limit` truncates)."""
    left = limit
    with open(path, "rb") as handle:
        while left > 0:
            chunk = handle.read(min(FILE_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
