"""OptizmoClient: SUPPRESS list downloads (CSV or ZIP, streamed), collect, bulk upload.

See docs/providers/optizmo.md. Download and upload links are pre-signed storage URLs and are
fetched without any credential ('Pre-signed links').
"""

from __future__ import annotations

import csv
import io
import logging
import random
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import IO, Any
from urllib.parse import quote, urljoin

import requests
import urllib3
from singer_sdk.authenticators import BearerTokenAuthenticator

from optouts_providers.http import (
    DEFAULT_TIMEOUT,
    CallStats,
    Pacer,
    ProviderError,
    ProviderSession,
    RetryableProviderError,
    RetryPolicy,
    decode_json,
)
from optouts_providers.optizmo import wire
from optouts_providers.progress import Transfer
from optouts_providers.redact import register_secret
from optouts_providers.results import WriteResult
from optouts_providers.timeutil import parse_timestamp, to_rfc3339

logger = logging.getLogger("optouts.optizmo")

CHUNK_BYTES = 1 << 16
POLL_GROWTH = 1.5
MAX_POLL_WAIT = 60.0
# A download cut short is fetched again from the (still valid) link this many times in all.
DOWNLOAD_ATTEMPTS = 3
# Upload lines the client itself finds malformed, kept to name them in `rejected`.
MAX_SUSPECTS = 10_000
# An opt-out row (an address, its MD5, a time, campaign names, an IP) is well under 2 KB: a
# physical line (its bytes before the `\n`) longer than this is not one, and is refused
# before it is held in memory.
MAX_LINE_BYTES = 1 << 20

RECORD_FIELDS = ("plain", "hashed", "timestamp", *wire.CAMPAIGN_FILE_COLUMNS, "ip")


class OptizmoImportError(ProviderError):
    """A bulk import ended `failed` or `removed` ('Bulk upload'); names its import reference."""

    def __init__(self, *args: Any, reference: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reference = reference


class OptizmoClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        collect_base_url: str = wire.DEFAULT_COLLECT_BASE_URL,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        rate_reset: str = "auto",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise ValueError("Optizmo needs an api_key")
        register_secret(api_key)
        headers = wire.rate_headers(rate_reset)
        self._sleep = sleep

        def session(url: str) -> ProviderSession:
            return ProviderSession(
                wire.PROVIDER,
                url,
                BearerTokenAuthenticator(token=api_key),
                timeout=timeout,
                retry=retry,
                pacer=Pacer(headers=headers, sleep=sleep),
                default_headers={"Accept": "application/json"},
                sleep=sleep,
            )

        self.session = session(base_url)
        # The collect app is a second configured host: it gets the credential too ('Hosts').
        self.collect_session = session(collect_base_url)
        # Pre-signed storage links: no credential, and not paced by the API's rate window.
        self.storage = ProviderSession(
            wire.PROVIDER, base_url, None, timeout=timeout, retry=retry, sleep=sleep
        )

    @property
    def stats(self) -> CallStats:
        return CallStats.total((self.session.stats, self.collect_session.stats, self.storage.stats))

    def close(self) -> None:
        for session in (self.session, self.collect_session, self.storage):
            session.close()

    # -- read -----------------------------------------------------------------------------
    def iter_optouts(
        self,
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
        answer = self._json("POST", wire.PREPARE_DOWNLOAD, json=body)
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
            return self._wait_for_file(
                link, poll_interval_seconds, download_timeout_seconds, download
            )

        def read(response: requests.Response) -> Iterator[dict[str, Any]]:
            nonlocal consumed
            # The link names one immutable file: after a cut-off, skip what was read.
            rows = self._records(response, link, list_id, required, download)
            for index, record in enumerate(rows):
                if index < consumed:
                    continue
                consumed += 1
                if record is not None and low <= record["timestamp"] < high:
                    yield record

        yield from self._read_refetching(fetch, read, "file")
        download.status("done", bytes=download.bytes, rows=consumed, seconds=download.elapsed())

    def iter_download_activity(
        self,
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
                "Optizmo download activity: the export holds the last %d days only; "
                "reading from %s",
                wire.ACTIVITY_MAX_DAYS,
                to_rfc3339(earliest),
            )
            start = earliest
        params = wire.date_range(start.astimezone(UTC), end)
        low, high = to_rfc3339(start), to_rfc3339(end)
        progress = Transfer(logger, "optizmo download activity")
        seen: set[str] = set()

        def fetch() -> requests.Response:
            return self._activity_file(params, poll_interval_seconds, download_timeout_seconds)

        def read(response: requests.Response) -> Iterator[dict[str, Any]]:
            for record in self._activity_records(response, progress):
                key = record["activity_id"]
                if key in seen:  # read before the file was cut short
                    continue
                seen.add(key)
                if low <= record["downloaded_at"] < high:
                    yield record

        yield from self._read_refetching(fetch, read, "export")
        progress.status("done", bytes=progress.bytes, rows=len(seen))

    def _read_refetching(
        self,
        fetch: Callable[[], requests.Response],
        read: Callable[[requests.Response], Iterator[dict[str, Any]]],
        what: str,
    ) -> Iterator[dict[str, Any]]:
        """What `read` yields of the file `fetch` gets; a file cut short is fetched again (at
        most DOWNLOAD_ATTEMPTS times, after a short random wait), and `read` skips what an
        earlier try yielded."""
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            response = fetch()
            try:
                yield from read(response)
                return
            except RetryableProviderError as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise
                logger.warning(
                    "Optizmo: %s; fetching the %s again (try %d)", exc, what, attempt + 1
                )
                self._sleep(random.uniform(0, min(5.0, 0.25 * 2**attempt)))
            finally:
                response.close()

    def _activity_file(
        self, params: dict[str, str], interval: float, timeout: float
    ) -> requests.Response:
        """The export's file: followed from a redirect or a JSON link (without credentials,
        as every storage link), or the answer itself when it is the file."""
        path = "/" + wire.DOWNLOAD_ACTIVITY
        response = self.session.request(
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
            return self._wait_for_file(link, interval, timeout)
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
        return self._wait_for_file(link, interval, timeout)

    def _activity_records(
        self, response: requests.Response, progress: Transfer | None = None
    ) -> Iterator[dict[str, Any]]:
        link = response.url
        what = "the download-activity export"
        for text in _csv_texts(response, link, progress, what=what):
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
                raise _unreadable(link, what, reader.line_num, exc) from None

    def _wait_for_file(
        self, link: str, interval: float, timeout: float, progress: Transfer | None = None
    ) -> requests.Response:
        """'The download link': it answers 404 until the file is ready. Poll with growing waits."""
        deadline = time.monotonic() + timeout
        wait = max(interval, 0.01)
        polls = 0
        while True:
            response = self.storage.request_unauthenticated("GET", link, ok=(404,), stream=True)
            polls += 1
            if response.status_code != 404:
                if progress is not None:
                    progress.status("ready", polls=polls, seconds=progress.elapsed())
                return response
            response.close()
            remaining = deadline - time.monotonic()
            if progress is not None and remaining > 0:
                progress.poll("waiting", next_poll_seconds=min(wait, remaining))
            if remaining <= 0:
                raise ProviderError(
                    wire.PROVIDER,
                    "GET",
                    link,
                    404,
                    f"the download was still not ready after {timeout:g}s "
                    f"(download_timeout_seconds; {polls} polls)",
                )
            self._sleep(min(wait, remaining))
            wait = min(wait * POLL_GROWTH, MAX_POLL_WAIT)

    def _records(
        self,
        response: requests.Response,
        link: str,
        list_id: str,
        required: list[str],
        progress: Transfer | None = None,
    ) -> Iterator[dict[str, Any] | None]:
        """One item per data row of the file (None for a row without any address)."""
        for text in _csv_texts(response, link, progress, what=f"list {list_id}"):
            reader = csv.reader(text)
            try:
                rows = _RowReader(next(reader, None), required, link)
                for row in reader:
                    if not row or row == [""]:
                        continue
                    yield rows.record(list_id, row)
            except csv.Error as exc:
                raise _unreadable(link, f"list {list_id}", reader.line_num, exc) from None

    # -- write ----------------------------------------------------------------------------
    def collect(self, list_id: str, *, email: str | None = None, sms: str | None = None) -> None:
        """'Collect': one opt-out into an email list (`email`) or an SMS list (`sms`)."""
        if (email is None) == (sms is None):
            raise ValueError("collect takes exactly one of email or sms")
        body = {"optoutListId": list_id}
        if email is not None:
            body["email"] = wire.normalize(email)
        else:
            body["sms"] = wire.sms_digits(sms or "")
        self.collect_session.request("POST", wire.COLLECT, json=body).close()

    def bulk_upload(
        self,
        list_id: str,
        lines: Iterable[str],
        *,
        timeout_seconds: float = 900.0,
        poll_interval_seconds: float = 2.0,
    ) -> WriteResult:
        """'Bulk upload': spool `lines` (emails or MD5s) to a file, upload it, wait for the import.

        Optizmo reports only how many lines were malformed. Lines the client itself finds
        malformed (same rule as `wire.valid_upload_entry`) are named in `rejected`, up to
        that count; any remainder is one entry `"<N more lines>"`.
        """
        with tempfile.TemporaryFile() as spool:
            count, suspects = _spool(lines, spool)
            return self.upload_file(
                list_id,
                spool,
                count,
                suspects=lambda: suspects,
                timeout_seconds=timeout_seconds,
                poll_interval_seconds=poll_interval_seconds,
            )

    def upload_file(
        self,
        list_id: str,
        spool: IO[bytes],
        count: int,
        *,
        suspects: Callable[[], list[str]] | None = None,
        timeout_seconds: float = 900.0,
        poll_interval_seconds: float = 2.0,
    ) -> WriteResult:
        """`bulk_upload` of a file the caller has written: `count` lines, each one normalised
        email or MD5 and `\\n`. When Optizmo finds malformed lines, they are looked for in
        the file (`wire.valid_upload_entry`) unless `suspects` names them."""
        if count == 0:
            return WriteResult()
        spool.flush()
        size = spool.seek(0, io.SEEK_END)
        upload = Transfer(logger, "optizmo upload", list=list_id)
        upload.status("spooled", lines=count, bytes=size)
        reference = self._upload(list_id, spool, size)
        upload.status("uploaded", import_reference=reference, bytes=size)
        status = self._wait_for_import(reference, timeout_seconds, poll_interval_seconds, upload)
        return _import_result(reference, status, count, suspects or (lambda: _suspects(spool)))

    def write_optouts(
        self,
        list_id: str,
        values: Iterable[str],
        *,
        channel: str,
        bulk_threshold: int = 1000,
        upload_timeout_seconds: float = 900.0,
        poll_interval_seconds: float = 2.0,
    ) -> WriteResult:
        """'Collect or bulk': emails one by one via collect up to `bulk_threshold`, bulk above
        it; MD5s always in bulk (collect cannot carry them); SMS numbers via collect."""
        if channel not in ("email", "sms"):
            raise ValueError(f"channel must be 'email' or 'sms', not {channel!r}")
        unique = list(dict.fromkeys(wire.normalize(v) for v in values if v and v.strip()))
        if channel == "sms":
            return self._collect_each(list_id, unique, "sms")
        hashes = [v for v in unique if wire.is_md5(v)]
        emails = [v for v in unique if not wire.is_md5(v)]
        result = WriteResult()
        bulk = hashes
        if len(emails) <= bulk_threshold:
            result.add(self._collect_each(list_id, emails, "email"))
        else:
            bulk = emails + hashes
        if bulk:
            result.add(
                self.bulk_upload(
                    list_id,
                    bulk,
                    timeout_seconds=upload_timeout_seconds,
                    poll_interval_seconds=poll_interval_seconds,
                )
            )
        return result

    def _collect_each(self, list_id: str, values: list[str], kind: str) -> WriteResult:
        result = WriteResult()
        for value in values:
            try:
                if kind == "sms":
                    self.collect(list_id, sms=value)
                else:
                    self.collect(list_id, email=value)
            except ProviderError as exc:
                if exc.status != 400:
                    raise
                result.rejected.append((value, exc.detail or "refused by Optizmo collect"))
                continue
            # Collect does not tell whether the list held the address already.
            result.written += 1
        return result

    def _upload(self, list_id: str, spool: IO[bytes], size: int) -> str:
        """prepare-upload and PUT; an expired URL (403) is prepared again once."""
        url = ""
        for attempt in (1, 2):
            answer = self._json(
                "POST",
                wire.PREPARE_UPLOAD,
                json={"optoutListId": list_id, "fileContentLength": size},
            )
            url, reference = answer.get("uploadUrl"), answer.get("importReference")
            if not isinstance(url, str) or not isinstance(reference, str):
                raise ProviderError(
                    wire.PROVIDER,
                    "POST",
                    "/" + wire.PREPARE_UPLOAD,
                    200,
                    "the answer lacks uploadUrl or importReference",
                )
            if self._put(url, spool, size) != 403:
                return reference
            if attempt == 1:
                logger.warning(
                    "Optizmo: the upload URL was refused (403, expired?); preparing a new one"
                )
        raise ProviderError(
            wire.PROVIDER,
            "PUT",
            url,
            403,
            "the pre-signed upload URL was refused twice (expired?)",
        )

    def _put(self, url: str, spool: IO[bytes], size: int) -> int:
        """PUT the spooled file without credentials; retried here because each try must
        rewind the file. Returns the status (403 is left to the caller)."""
        policy = self.storage.retry
        for attempt in range(1, policy.max_tries + 1):
            spool.seek(0)
            try:
                response = self.storage.request_unauthenticated(
                    "PUT",
                    url,
                    data=spool,
                    ok=(403,),
                    retry=False,
                    headers={"Content-Length": str(size), "Content-Type": "text/plain"},
                )
            except RetryableProviderError as exc:
                if attempt == policy.max_tries:
                    raise
                wait = exc.wait_seconds
                if wait is None:
                    ceiling = min(policy.cap_seconds, policy.base_seconds * policy.factor**attempt)
                    wait = random.uniform(0, ceiling)
                self._sleep(wait)
                continue
            response.close()
            return response.status_code
        raise AssertionError("unreachable")

    def _wait_for_import(
        self, reference: str, timeout: float, interval: float, progress: Transfer | None = None
    ) -> dict[str, Any]:
        path = wire.UPLOAD_STATUS.format(ref=quote(reference, safe=""))
        deadline = time.monotonic() + timeout
        wait = max(interval, 0.01)
        while True:
            status = self._json("GET", path)
            state = status.get("status")
            if state in wire.TERMINAL_STATUSES:
                if progress is not None:
                    progress.status(
                        str(state),
                        import_reference=reference,
                        polls=progress.polls + 1,
                        added=status.get("addedCount"),
                        malformed=status.get("malformedCount"),
                        submitted=status.get("submittedCount"),
                        seconds=progress.elapsed(),
                    )
                status["_path"] = path
                return status
            if state != wire.STATUS_RUNNING:
                raise ProviderError(
                    wire.PROVIDER, "GET", "/" + path, 200, f"unknown import status {state!r}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderError(
                    wire.PROVIDER,
                    "GET",
                    "/" + path,
                    200,
                    f"import {reference} still running after {timeout:g}s",
                )
            if progress is not None:
                progress.poll(
                    "running", import_reference=reference, next_poll_seconds=min(wait, remaining)
                )
            self._sleep(min(wait, remaining))
            wait = min(wait * POLL_GROWTH, MAX_POLL_WAIT)

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.session.request(method, path, **kwargs)
        try:
            body = decode_json(response)
        except Exception:
            raise ProviderError(
                wire.PROVIDER, method, "/" + path, response.status_code, "the answer is not JSON"
            ) from None
        if not isinstance(body, dict):
            raise ProviderError(
                wire.PROVIDER,
                method,
                "/" + path,
                response.status_code,
                "the answer is not a JSON object",
            )
        return body


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


# -- file reading ---------------------------------------------------------------------------
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


def _csv_texts(
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


def _unreadable(link: str, what: str, line: int, exc: Exception) -> ProviderError:
    return ProviderError(
        wire.PROVIDER, "GET", link, 200, f"{what}: line {line} of the download is not CSV ({exc})"
    )


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


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
            "timestamp": _timestamp(stamp.strip(), self.link),
            "campaign": campaign or None,
            "affiliate": affiliate or None,
            "sub_affiliate": sub_affiliate or None,
            "ip": ip or None,
        }


def _activity_record(row: list[str], positions: dict[str, int], link: str) -> dict[str, Any]:
    cells = {
        field: (row[at].strip() or None) if at < len(row) else None
        for field, at in positions.items()
    }
    record: dict[str, Any] = {field: cells.get(field) for field in wire.ACTIVITY_COLUMNS}
    record["downloaded_at"] = _timestamp(record["downloaded_at"] or "", link)
    record["activity_id"] = wire.activity_id(record)
    return record


def _timestamp(raw: str, link: str) -> str:
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


def _spool(lines: Iterable[str], spool: IO[bytes]) -> tuple[int, list[str]]:
    count = 0
    suspects: list[str] = []
    for line in lines:
        value = wire.normalize(line)
        if not value:
            continue
        spool.write(wire.upload_line(value))
        count += 1
        if len(suspects) < MAX_SUSPECTS and not wire.valid_upload_entry(value):
            suspects.append(value)
    return count, suspects


def _suspects(spool: IO[bytes]) -> list[str]:
    """The lines of an uploaded file that Optizmo would find malformed (at most MAX_SUSPECTS)."""
    spool.seek(0)
    found: list[str] = []
    for raw in spool:
        value = raw.decode("utf-8", "replace").rstrip("\n")
        if not wire.valid_upload_entry(value):
            found.append(value)
            if len(found) == MAX_SUSPECTS:
                break
    return found


def _import_result(
    reference: str, status: dict[str, Any], count: int, suspects: Callable[[], list[str]]
) -> WriteResult:
    path = status.get("_path", "")
    state = status.get("status")
    message = status.get("message") or ""
    if state != wire.STATUS_SUCCESS:
        raise OptizmoImportError(
            wire.PROVIDER,
            "GET",
            "/" + path,
            200,
            f"import {reference} ended {state}" + (f": {message}" if message else ""),
            reference=reference,
        )
    added = int(status.get("addedCount") or 0)
    malformed = int(status.get("malformedCount") or 0)
    submitted = int(status.get("submittedCount") or count)
    reason = f"malformed line (Optizmo import {reference})"
    rejected = [(line, reason) for line in suspects()[:malformed]] if malformed else []
    if malformed > len(rejected):
        rejected.append((f"<{malformed - len(rejected)} more lines>", reason))
    return WriteResult(
        written=added,
        already_present=max(0, submitted - added - malformed),
        rejected=rejected,
    )
