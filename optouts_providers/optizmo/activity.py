"""The account's download-activity export (docs/providers/optizmo.md, 'Download activity'):
which affiliate downloaded which list, when, read into `optizmo_download_activity` records."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import requests

from optouts_providers.http import ProviderError, decode_json
from optouts_providers.optizmo import wire
from optouts_providers.optizmo.files import csv_texts, file_timestamp, unreadable
from optouts_providers.optizmo.hosts import Hosts
from optouts_providers.optizmo.storage import read_refetching, wait_for_file
from optouts_providers.progress import Transfer
from optouts_providers.timeutil import to_rfc3339

logger = logging.getLogger("optouts.optizmo")


def iter_download_activity(
    hosts: Hosts,
    start: datetime,
    end: datetime,
    *,
    poll_interval_seconds: float = 5.0,
    download_timeout_seconds: float = 900.0,
) -> Iterator[dict[str, Any]]:
    """Records of `optizmo_download_activity` (which affiliate and campaign downloaded
    which list, when) with `start <= downloaded_at < end`, every list of the account.

    The export reaches back ACTIVITY_MAX_DAYS days at most: an older `start` is moved up
    to that. Its answer may be a redirect to the file, JSON holding a link, or the file
    itself; a link may answer 404 until the file is ready."""
    end = end.astimezone(UTC)
    earliest = end - timedelta(days=wire.ACTIVITY_MAX_DAYS)
    if start.astimezone(UTC) < earliest:
        logger.info(
            "Optizmo download activity: the export holds the last %d days only; reading from %s",
            wire.ACTIVITY_MAX_DAYS,
            to_rfc3339(earliest),
        )
        start = earliest
    params = wire.date_range(start.astimezone(UTC), end)
    low, high = to_rfc3339(start), to_rfc3339(end)
    progress = Transfer(logger, "optizmo download activity")
    seen: set[str] = set()

    def fetch() -> requests.Response:
        return _activity_file(hosts, params, poll_interval_seconds, download_timeout_seconds)

    def read(response: requests.Response) -> Iterator[dict[str, Any]]:
        for record in _activity_records(response, progress):
            key = record["activity_id"]
            if key in seen:  # read before the file was cut short
                continue
            seen.add(key)
            if low <= record["downloaded_at"] < high:
                yield record

    yield from read_refetching(hosts, fetch, read, "export")
    progress.status("done", bytes=progress.bytes, rows=len(seen))


def _activity_file(
    hosts: Hosts, params: dict[str, str], interval: float, timeout: float
) -> requests.Response:
    """The export's file: followed from a redirect or a JSON link (without credentials,
    as every storage link), or the answer itself when it is the file."""
    path = "/" + wire.DOWNLOAD_ACTIVITY
    response = hosts.api.request(
        "GET", wire.DOWNLOAD_ACTIVITY, params=params, ok=wire.REDIRECT_STATUSES, stream=True
    )
    if response.status_code in wire.REDIRECT_STATUSES:
        location = response.headers.get("Location")
        response.close()
        if not location:
            raise ProviderError(
                wire.PROVIDER, "GET", path, response.status_code, "a redirect without Location"
            )
        link = urljoin(response.url, location)
        return wait_for_file(hosts, link, interval, timeout)
    if "json" not in response.headers.get("Content-Type", "").lower():
        return response
    try:
        link = wire.find_download_link(decode_json(response))
    finally:
        response.close()
    if not link:
        raise ProviderError(
            wire.PROVIDER, "GET", path, response.status_code, "the answer holds no link"
        )
    return wait_for_file(hosts, link, interval, timeout)


def _activity_records(
    response: requests.Response, progress: Transfer | None = None
) -> Iterator[dict[str, Any]]:
    link = response.url
    what = "the download-activity export"
    for text in csv_texts(response, link, progress, what=what):
        reader = csv.reader(text)
        try:
            header = next(reader, None) or []
            positions = wire.activity_fields(header)
            missing = [
                " or ".join(choice)
                for choice in wire.ACTIVITY_REQUIRED
                if not any(field in positions for field in choice)
            ]
            if missing:
                names = ", ".join(wire.header_name(cell) for cell in header) or "none"
                raise ProviderError(
                    wire.PROVIDER,
                    "GET",
                    link,
                    200,
                    f"{what} lacks the column(s) {', '.join(missing)} (header: {names})",
                )
            for row in reader:
                if row and row != [""]:
                    yield _activity_record(row, positions, link)
        except csv.Error as exc:
            raise unreadable(link, what, reader.line_num, exc) from None


def _activity_record(row: list[str], positions: dict[str, int], link: str) -> dict[str, Any]:
    cells = {
        field: (row[at].strip() or None) if at < len(row) else None
        for field, at in positions.items()
    }
    record: dict[str, Any] = {field: cells.get(field) for field in wire.ACTIVITY_COLUMNS}
    record["downloaded_at"] = file_timestamp(record["downloaded_at"] or "", link)
    record["activity_id"] = wire.activity_id(record)
    return record
