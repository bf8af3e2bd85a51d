"""An opt-out list's download (docs/providers/optizmo.md, 'Preparing a download', 'The
download file'): prepared, fetched from its link, read into `optizmo_optouts` records."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import requests

from optouts_providers.http import ProviderError
from optouts_providers.optizmo import wire
from optouts_providers.optizmo.files import csv_texts, file_timestamp, unreadable
from optouts_providers.optizmo.hosts import Hosts
from optouts_providers.optizmo.storage import read_refetching, wait_for_file
from optouts_providers.progress import Transfer
from optouts_providers.timeutil import to_rfc3339

logger = logging.getLogger("optouts.optizmo")

RECORD_FIELDS = ("plain", "hashed", "timestamp", *wire.CAMPAIGN_FILE_COLUMNS, "ip")


def iter_optouts(
    hosts: Hosts,
    list_id: str,
    start: datetime,
    end: datetime,
    *,
    columns: Sequence[str] = wire.DEFAULT_COLUMNS,
    collection_types: Sequence[str] = wire.COLLECTION_TYPES,
    domain_filter: str | None = None,
    poll_interval_seconds: float = 5.0,
    download_timeout_seconds: float = 900.0,
) -> Iterator[dict[str, Any]]:
    """Records of `optizmo_optouts` with `start <= timestamp < end`."""
    requested = request_columns(columns)
    body: dict[str, Any] = {
        "optoutListId": list_id,
        "columns": requested,
        "collectionType": list(collection_types),
        "dateRange": wire.date_range(start.astimezone(UTC), end.astimezone(UTC)),
    }
    if domain_filter:
        body["domainFilter"] = domain_filter
    answer = hosts.json("POST", wire.PREPARE_DOWNLOAD, json=body)
    link = wire.find_download_link(answer)
    if not link:
        raise ProviderError(
            wire.PROVIDER,
            "POST",
            "/" + wire.PREPARE_DOWNLOAD,
            200,
            "the answer holds no download link",
        )
    low, high = to_rfc3339(start), to_rfc3339(end)
    required = wire.file_columns(requested)
    consumed = 0
    download = Transfer(logger, "optizmo download", list=list_id)
    download.status("prepared")

    def fetch() -> requests.Response:
        return wait_for_file(hosts, link, poll_interval_seconds, download_timeout_seconds, download)

    def read(response: requests.Response) -> Iterator[dict[str, Any]]:
        nonlocal consumed
        # The link names one immutable file: after a cut-off, skip what was read.
        rows = _records(response, link, list_id, required, download)
        for index, record in enumerate(rows):
            if index < consumed:
                continue
            consumed += 1
            if record is not None and low <= record["timestamp"] < high:
                yield record

    yield from read_refetching(hosts, fetch, read, "file")
    download.status("done", bytes=download.bytes, rows=consumed, seconds=download.elapsed())


def request_columns(columns: Sequence[str]) -> list[str]:
    """Requested columns in order, `hashed` and `timestamp` always added; file-column names
    (`affiliate`, `sub_affiliate`) mean `campaign`."""
    out: list[str] = []
    for raw in (*columns, *wire.ALWAYS_COLUMNS):
        column = wire.header_name(raw)
        if column in wire.CAMPAIGN_FILE_COLUMNS:
            column = "campaign"
        if column not in wire.COLUMNS:
            raise ValueError(f"unknown Optizmo column {raw!r}: use {', '.join(wire.COLUMNS)}")
        if column not in out:
            out.append(column)
    return out


def _records(
    response: requests.Response,
    link: str,
    list_id: str,
    required: list[str],
    progress: Transfer | None = None,
) -> Iterator[dict[str, Any] | None]:
    """One item per data row of the file (None for a row without any address)."""
    for text in csv_texts(response, link, progress, what=f"list {list_id}"):
        reader = csv.reader(text)
        try:
            rows = _RowReader(next(reader, None), required, link)
            for row in reader:
                if not row or row == [""]:
                    continue
                yield rows.record(list_id, row)
        except csv.Error as exc:
            raise unreadable(link, f"list {list_id}", reader.line_num, exc) from None


class _RowReader:
    """Turns data rows into records, by the positions the header row gives."""

    def __init__(self, header: list[str] | None, required: list[str], link: str) -> None:
        names = [wire.header_name(cell) for cell in header or []]
        missing = [column for column in required if column not in names]
        if missing:
            raise ProviderError(
                wire.PROVIDER,
                "GET",
                link,
                200,
                f"the file lacks column(s) {', '.join(missing)} "
                f"(header: {', '.join(names) or 'none'})",
            )
        index = {name: i for i, name in reversed(list(enumerate(names)))}
        self.width = len(names)
        # An absent optional column reads the empty cell appended at `width`.
        self.cells = itemgetter(*(index.get(name, self.width) for name in RECORD_FIELDS))
        self.link = link

    def record(self, list_id: str, row: list[str]) -> dict[str, Any] | None:
        if len(row) != self.width:
            row = (row + [""] * self.width)[: self.width]
        row.append("")
        plain, hashed, stamp, campaign, affiliate, sub_affiliate, ip = self.cells(row)
        plain = plain.strip().lower() or None
        hashed = hashed.strip().lower()
        if not hashed:
            if not plain:
                return None
            hashed = wire.hash_value(plain)
        return {
            "optout_list_id": list_id,
            "plain": plain,
            "hashed": hashed,
            "timestamp": file_timestamp(stamp.strip(), self.link),
            "campaign": campaign or None,
            "affiliate": affiliate or None,
            "sub_affiliate": sub_affiliate or None,
            "ip": ip or None,
        }
