"""Optizmo emulators: the SUPPRESS API with its pre-signed storage, and the collect app.

See docs/providers/optizmo.md. Lists hold rows (plain value, hash, UTC time,
collected or imported, campaign data); downloads are rendered once to a temporary file from a
snapshot taken at prepare time and streamed from it, so big lists do not sit in memory twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from optouts_providers.optizmo import wire
from optouts_providers.timeutil import parse_timestamp
from optouts_sandbox import credentials as C
from optouts_sandbox.core import (
    Emulator,
    RateLimit,
    Request,
    Response,
    json_response,
)
from optouts_sandbox.seed import Person

API_KEYS = frozenset({C.OPTIZMO_API_KEY, C.OPTIZMO_OTHER_API_KEY})
INVALID_PAYLOAD = "Invalid request payload sent. Further details will be available in the payload."
# Headers are sent on every answer ('Rate limits'); with no limit configured they describe this one.
NOMINAL_LIMIT = RateLimit(per_window=100_000, window_seconds=60.0)
COLLECTED_MESSAGE = "Optout has been collected and will be processed shortly."
DOWNLOAD_TTL = timedelta(days=1)
FILE_CHUNK = 1 << 16
CSV_CHUNK_ROWS = 1000  # rows per piece of a streamed download (about 80 KB)
CAMPAIGNS = [f"Spring Sale {n}" for n in range(5)]
AFFILIATES = [f"Affiliate {n}" for n in range(7)]
SUB_AFFILIATES = [f"sub-{n}" for n in range(3)]
IPS = [f"198.51.100.{n}" for n in range(1, 251)]
OUTCOME_MESSAGES = {
    wire.STATUS_SUCCESS: "Import completed.",
    wire.STATUS_FAILED: "Import failed: the file could not be processed.",
    wire.STATUS_REMOVED: "Import was removed.",
}


@dataclass(slots=True)
class Row:
    plain: str  # "" for a hash-only entry
    hashed: str
    at: datetime  # UTC, whole seconds
    collected: bool
    campaign: str = ""
    affiliate: str = ""
    sub_affiliate: str = ""
    ip: str = ""
    visible_at: datetime | None = None  # collect is asynchronous ('Collect')

    def visible(self, now: datetime) -> bool:
        return self.visible_at is None or self.visible_at <= now


# (collected, campaign, affiliate, sub_affiliate, ip): few distinct values, shared by rows.
Origin = tuple[bool, str, str, str, str]
IMPORTED: Origin = (False, "", "", "", "")


class OptoutList:
    """One list's rows, stored column by column (a row's hash is the MD5 of its plain value,
    computed when needed), so that a list of millions fits in a few hundred bytes a row."""

    def __init__(self, list_id: str, kind: str) -> None:
        self.list_id = list_id
        self.kind = kind  # "email", "sms" or "grouped"
        self.plains: list[str] = []  # "" for a hash-only row
        self.hash_only: dict[int, str] = {}  # row -> its MD5, for hash-only rows
        self.ats = array("q")  # UTC epoch seconds
        self.origins: list[Origin] = []
        self.visible_at: dict[int, datetime] = {}  # rows collect has not yet processed
        self._plains_seen: set[str] = set()
        self._hashes_seen: set[str] = set()  # hash-only rows
        self._plain_hashes: set[str] | None = None  # built when a hash-only row first comes
        self._origins: dict[Origin, Origin] = {IMPORTED: IMPORTED}

    def __len__(self) -> int:
        return len(self.plains)

    def add(self, row: Row) -> bool:
        """Add a row unless its hash is held already ('Hashes': it identifies an opt-out)."""
        origin = (row.collected, row.campaign, row.affiliate, row.sub_affiliate, row.ip)
        value = row.plain or row.hashed
        return self.add_value(value, not row.plain, int(row.at.timestamp()), origin, row.visible_at)

    def add_value(
        self,
        value: str,
        is_hash: bool,
        at: int,
        origin: Origin,
        visible_at: datetime | None = None,
    ) -> bool:
        """Add a plain value (or a hash) unless its hash is held already."""
        if not is_hash:
            if value in self._plains_seen:
                return False
            if self._hashes_seen and _md5(value) in self._hashes_seen:
                return False
            self.append(value, None, at, origin, visible_at)
        else:
            if value in self._hashes_seen or value in self._hashes_of_plains():
                return False
            self.append("", value, at, origin, visible_at)
        return True

    def append(
        self,
        plain: str,
        hashed: str | None,
        at: int,
        origin: Origin,
        visible_at: datetime | None = None,
    ) -> None:
        """Store a row known to be new (the seed's rows are)."""
        index = len(self.plains)
        self.plains.append(plain)
        if plain:
            self._plains_seen.add(plain)
            if self._plain_hashes is not None:
                self._plain_hashes.add(hashed or _md5(plain))
        else:
            assert hashed is not None
            self.hash_only[index] = hashed
            self._hashes_seen.add(hashed)
        self.ats.append(at)
        self.origins.append(self._origins.setdefault(origin, origin))
        if visible_at is not None:
            self.visible_at[index] = visible_at

    def holds(self, plain: str) -> bool:
        return plain in self._plains_seen

    def _hashes_of_plains(self) -> set[str]:
        if self._plain_hashes is None:
            self._plain_hashes = {_md5(plain) for plain in self.plains if plain}
        return self._plain_hashes

    def hashed(self, index: int) -> str:
        return self.hash_only.get(index) or _md5(self.plains[index])

    def visible(self, index: int, now: datetime) -> bool:
        if not self.visible_at:
            return True
        when = self.visible_at.get(index)
        return when is None or when <= now


def _md5(plain: str) -> str:
    return hashlib.md5(plain.encode("utf-8")).hexdigest()


@dataclass
class Download:
    token: str
    signature: str
    list_id: str
    columns: list[str]
    collection_types: set[str]
    date_from: date | None
    date_to: date | None
    domains: list[str]
    prepared_at: datetime
    ready_at: datetime
    expires_at: datetime
    limit: int  # rows of the list at prepare time
    files: dict[str, Path] = field(default_factory=dict)
    not_ready: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Activity(NamedTuple):
    """One download of a list by an affiliate (the Mailer API's side, not emulated)."""

    at: int  # UTC epoch seconds
    list_id: str
    list_name: str
    campaign_id: str
    campaign: str
    affiliate_id: str
    affiliate: str
    sub_affiliate: str
    download_format: str  # "plain" or "md5"
    ip: str


@dataclass
class ActivityExport:
    signature: str
    ready_at: datetime
    expires_at: datetime
    body: bytes
    headers: dict[str, str]


@dataclass
class Import:
    reference: str
    owner: str
    list_id: str
    size: int
    upload_id: str
    signature: str
    expires_at: datetime
    uploaded_at: datetime | None = None
    entries: list[str] = field(default_factory=list)
    submitted: int = 0
    malformed: int = 0
    result: dict[str, Any] | None = None


def _now_seconds(now: datetime) -> datetime:
    return now.replace(microsecond=0)


NO_SUCH_KEY = ("NoSuchKey", "The specified key does not exist.")
NO_SUCH_UPLOAD = ("NoSuchUpload", "The specified upload does not exist.")


def _signed_query(item: Download | ActivityExport | Import) -> str:
    """A pre-signed URL's query: when it expires and its signature."""
    return f"Expires={int(item.expires_at.timestamp())}&Signature={item.signature}"


def _signed_refusal(
    request: Request,
    item: Download | ActivityExport | Import | None,
    now: datetime,
    missing: tuple[str, str],
) -> Response | None:
    """What the storage answers a pre-signed URL it does not take, as S3 does (an unknown
    key, a signature that does not match, a link past its time); None when it takes it."""
    if item is None:
        return _s3_error(404, *missing)
    if request.arg("Signature") != item.signature:
        return _s3_error(403, "SignatureDoesNotMatch", "The signature does not match.")
    if now >= item.expires_at:
        return _s3_error(403, "AccessDenied", "Request has expired")
    return None


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return Response(status, body, {"Content-Type": "application/xml"})


def _api_key(request: Request) -> str | None:
    """'Authentication': `Authorization: Bearer <key>` (prose) or `api_key: <key>` (security
    scheme)."""
    auth = request.header("authorization") or ""
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.header("api_key")


class _OptizmoAuth(Emulator):
    """Credential and rate-limit behaviour shared by the SUPPRESS and collect apps."""

    def credential(self, request: Request) -> str | None:
        if request.path.startswith("/storage/"):
            return None  # pre-signed storage is not the API
        return _api_key(request)

    def rate_limit_headers(self, limit: RateLimit, remaining: int, reset: float) -> dict[str, str]:
        if self.switches.optizmo_reset == "epoch":
            reset_value = str(math.ceil(time.time() + reset))
        else:
            reset_value = str(math.ceil(reset))
        return {
            wire.RATE_LIMIT: str(limit.per_window or int(limit.per_second or 0)),
            wire.RATE_REMAINING: str(remaining),
            wire.RATE_RESET: reset_value,
        }

    def rate_limited(self, request: Request, retry_after: float) -> Response:
        # No Retry-After: the x-rate-limit-* headers (added by the server) say when.
        return json_response({"message": "Too many requests"}, 429)

    def authorized(self, request: Request) -> tuple[str | None, Response | None]:
        key = _api_key(request)
        if key not in API_KEYS:
            return None, self.error(request, 401, "Authorization not sent or failed.")
        return key, None

    def with_rate_headers(self, request: Request, key: str, response: Response) -> Response:
        """Headers on every answer: when no limit is configured, a nominal one."""
        if self.switches.rate_limit(self.rate_limit_key or self.prefix) is None:
            _, remaining, reset = self.sandbox.limiter.check(
                f"{self.prefix}:nominal", key, NOMINAL_LIMIT
            )
            response.headers.update(self.rate_limit_headers(NOMINAL_LIMIT, remaining, reset))
        return response


class OptizmoEmulator(_OptizmoAuth):
    prefix = "optizmo"

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        self._tmp = Path(tempfile.mkdtemp(prefix="optizmo-sandbox-"))
        self.lists: dict[str, OptoutList] = {}
        self.downloads: dict[str, Download] = {}
        self.imports: dict[str, Import] = {}
        self.uploads: dict[str, Import] = {}
        # Test faults on the served file: "empty_zip", "drop_column:<name>" or
        # "long_line:<bytes>" (after the header, one line of that many bytes, made as sent).
        self.file_fault: str | None = None
        # Test fault: the next N upload URLs handed out are already expired.
        self.expire_next_uploads = 0
        # What reached the storage paths, for tests and the demo.
        self.storage_credential_headers = 0
        self.prepare_download_bodies: list[dict[str, Any]] = []
        self.upload_puts: list[dict[str, Any]] = []
        # Affiliates' downloads of the lists, and the activity exports handed out.
        self.activity: list[Activity] = []
        self.activity_exports: dict[str, ActivityExport] = {}

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_tmp", ""), ignore_errors=True)

    # -- store ----------------------------------------------------------------------------
    def seed(self, population: Iterable[Person]) -> None:
        with self.lock:
            for path in self._tmp.glob("*"):
                path.unlink(missing_ok=True)
            self.downloads.clear()
            self.imports.clear()
            self.uploads.clear()
            self.storage_credential_headers = 0
            self.file_fault = None
            self.expire_next_uploads = 0
            self.prepare_download_bodies.clear()
            self.upload_puts.clear()
            self.activity = seed_activity(self.clock.now())
            self.activity_exports.clear()
            self.lists = {
                C.OPTIZMO_EMAIL_LIST_ID: OptoutList(C.OPTIZMO_EMAIL_LIST_ID, "email"),
                C.OPTIZMO_SMS_LIST_ID: OptoutList(C.OPTIZMO_SMS_LIST_ID, "sms"),
                C.OPTIZMO_SPARE_EMAIL_LIST_ID: OptoutList(C.OPTIZMO_SPARE_EMAIL_LIST_ID, "email"),
                C.OPTIZMO_GROUPED_LIST_ID: OptoutList(C.OPTIZMO_GROUPED_LIST_ID, "grouped"),
            }
            emails, phones = self.lists[C.OPTIZMO_EMAIL_LIST_ID], self.lists[C.OPTIZMO_SMS_LIST_ID]
            for person in population:
                if "optizmo" not in person.providers:
                    continue
                at = int(person.opted_out_at.timestamp())
                origin = _seed_origin(person.index)
                # Seed emails are already trimmed and lowercased; a repeated number is skipped.
                if person.has_email and not emails.holds(person.email):
                    emails.append(person.email, None, at, origin)
                digits = person.phone[1:]
                if person.has_phone and not phones.holds(digits):
                    phones.append(digits, None, at, origin)

    def row_for(
        self,
        kind: str,
        value: str,
        at: datetime,
        *,
        collected: bool,
        visible_at: datetime | None = None,
    ) -> Row:
        value = wire.normalize(value)
        if wire.is_md5(value):
            return Row("", value, _now_seconds(at), collected, visible_at=visible_at)
        plain = wire.sms_digits(value) if kind == "sms" else value
        return Row(
            plain, wire.hash_value(plain), _now_seconds(at), collected, visible_at=visible_at
        )

    def inspect(self) -> dict[str, Any]:
        with self.lock:
            self._settle()
            now = self.clock.now()
            lists: dict[str, Any] = {}
            for list_id, lst in self.lists.items():
                rows = [i for i in range(len(lst)) if lst.visible(i, now)]
                plains = sorted(lst.plains[i] for i in rows if lst.plains[i])
                lists[list_id] = {
                    "kind": lst.kind,
                    "count": len(rows),
                    "emails": plains if lst.kind == "email" else [],
                    "hashes": sorted(lst.hashed(i) for i in rows),
                    "phones": ["+" + p for p in plains] if lst.kind == "sms" else [],
                }
            imports = {
                ref: (imp.result or {}).get("status", wire.STATUS_RUNNING)
                for ref, imp in self.imports.items()
            }
            total = sum(item["count"] for item in lists.values())
            return {
                "count": total,
                "lists": lists,
                "imports": imports,
                "download_activity": self._activity_summary(),
            }

    def _activity_summary(self) -> dict[str, Any]:
        """How many downloads are held, and each affiliate's last download of each list."""
        last: dict[str, dict[str, str]] = {}
        for row in self.activity:
            stamp = _rfc3339(row.at)
            per_list = last.setdefault(row.list_id, {})
            per_list[row.affiliate] = max(per_list.get(row.affiliate, ""), stamp)
        return {"count": len(self.activity), "last_downloaded": last}

    def admin_add(self, records: list[dict[str, Any]]) -> int:
        """Records `{"list_id", "email"|"sms"|"hashed", "timestamp"?, "collection_type"?}`, or
        downloads `{"kind": "download_activity", "list_id", "affiliate", "downloaded_at"?, ...}`
        (see `activity_from_record`)."""
        added = 0
        with self.lock:
            for record in records:
                if record.get("kind") == "download_activity":
                    self.activity.append(activity_from_record(record, self.clock.now()))
                    added += 1
                    continue
                lst = self.lists.get(str(record.get("list_id")))
                if lst is None or lst.kind == "grouped":
                    raise ValueError(f"no Optizmo list {record.get('list_id')!r} to add to")
                value = record.get("email") or record.get("sms") or record.get("hashed")
                if not isinstance(value, str) or not value.strip():
                    raise ValueError("an Optizmo record needs email, sms or hashed")
                stamp = record.get("timestamp")
                at = parse_timestamp(stamp) if stamp else self.clock.now()
                collected = record.get("collection_type", "collected") == "collected"
                added += lst.add(self.row_for(lst.kind, value, at, collected=collected))
        return added

    # -- dispatch -------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path.startswith("/storage/downloads/") and request.method == "GET":
            return self._storage_download(request, path.rsplit("/", 1)[1])
        if path.startswith("/storage/activity/") and request.method == "GET":
            return self._storage_activity(request, path.rsplit("/", 1)[1])
        if path.startswith("/storage/uploads/") and request.method == "PUT":
            return self._storage_upload(request, path.rsplit("/", 1)[1])
        if path.startswith("/storage/"):
            return _s3_error(405, "MethodNotAllowed", "The method is not allowed.")
        key, refused = self.authorized(request)
        if refused is not None or key is None:
            return refused or self.error(request, 401, "Authorization not sent or failed.")
        with self.lock:
            self._settle()
            response = self._route(request, path, key)
        return self.with_rate_headers(request, key, response)

    def _route(self, request: Request, path: str, key: str) -> Response:
        method = request.method
        if path == "/" + wire.PREPARE_DOWNLOAD and method == "POST":
            return self._prepare_download(request)
        if path == "/" + wire.PREPARE_UPLOAD and method == "POST":
            return self._prepare_upload(request, key)
        if path == "/" + wire.DOWNLOAD_ACTIVITY and method == "GET":
            return self._download_activity(request)
        status_prefix = "/" + wire.UPLOAD_STATUS.format(ref="")
        if path.startswith(status_prefix) and method == "GET":
            return self._upload_status(path[len(status_prefix) :], key)
        return self.error(request, 404, f"no endpoint {method} {path}")

    # -- download -------------------------------------------------------------------------
    def _prepare_download(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.error(request, 400, INVALID_PAYLOAD)
        self.prepare_download_bodies.append(body)
        problem, spec = _download_spec(body)
        if problem:
            return self.error(request, 400, f"{INVALID_PAYLOAD} {problem}")
        lst = self.lists.get(body["optoutListId"])
        if lst is None:
            return self.error(request, 404, "Opt-Out List not found.")
        now = self.clock.now()
        token = uuid.uuid4().hex
        download = Download(
            token=token,
            signature=secrets.token_urlsafe(24),
            list_id=lst.list_id,
            prepared_at=now,
            ready_at=now + timedelta(seconds=self.switches.download_delay_seconds),
            expires_at=now + DOWNLOAD_TTL,
            limit=len(lst),
            **spec,
        )
        self.downloads[token] = download
        link = f"{request.base_url}/storage/downloads/{token}?{_signed_query(download)}"
        return json_response({self.switches.optizmo_download_field: link})

    def _storage_download(self, request: Request, token: str) -> Response:
        self._note_storage_credential(request)
        with self.lock:
            download = self.downloads.get(token)
            now = self.clock.now()
            refused = _signed_refusal(request, download, now, NO_SUCH_KEY)
            if refused is not None:
                return refused
            assert download is not None
            if now < download.ready_at:
                download.not_ready += 1
                self.sandbox.count("optizmo download:not-ready")
                return _s3_error(404, *NO_SUCH_KEY)
            lst = self.lists[download.list_id]
        fmt = "zip" if self.switches.download_format == "zip" else "csv"
        fault = self.file_fault or self.switches.optizmo_file_fault or None
        if fault == "empty_zip":
            fmt = "zip"
        headers = {
            "Content-Type": "application/zip" if fmt == "zip" else "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="optouts.{fmt}"',
        }
        if fmt == "csv" and not self.switches.truncate_downloads:
            # Streamed as it is made (chunked): the client reads while the rest is written.
            columns = _file_columns(download, fault)
            if _long_line(fault):
                return Response(200, _long_line_chunks(columns, _long_line(fault)), headers)
            return Response(200, _csv_chunks(columns, _selected(download, lst, columns)), headers)
        with download.lock:
            path = download.files.get(f"{fmt}:{fault}")
            if path is None:
                path = self._render(download, lst, fmt, fault)
                download.files[f"{fmt}:{fault}"] = path
        size = path.stat().st_size
        send = size // 2 if self.switches.truncate_downloads else size
        return Response(200, _file_chunks(path, send), headers, content_length=size)

    def _render(self, download: Download, lst: OptoutList, fmt: str, fault: str | None) -> Path:
        path = self._tmp / f"{download.token}-{fmt}-{secrets.token_hex(4)}"
        columns = _file_columns(download, fault)
        with open(path, "wb") as raw:
            if fmt == "csv" and _long_line(fault):
                for chunk in _long_line_chunks(columns, _long_line(fault)):
                    raw.write(chunk)
            elif fmt == "csv":
                text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                _write_csv(text, columns, _selected(download, lst, columns))
                text.detach()
            else:
                with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
                    if _long_line(fault):
                        with archive.open("optouts.csv", "w", force_zip64=True) as member:
                            for chunk in _long_line_chunks(columns, _long_line(fault)):
                                member.write(chunk)
                    elif fault != "empty_zip":
                        with archive.open("optouts.csv", "w") as member:
                            text = io.TextIOWrapper(member, encoding="utf-8", newline="")
                            _write_csv(text, columns, _selected(download, lst, columns))
                            text.detach()
        return path

    def _note_storage_credential(self, request: Request) -> None:
        if request.header("authorization") or request.header("api_key"):
            with self.lock:
                self.storage_credential_headers += 1
            self.sandbox.count("optizmo storage:credential-header")

    # -- download activity ----------------------------------------------------------------
    def _download_activity(self, request: Request) -> Response:
        """GET download-activity?from=&to= (UTC dates, inclusive, at most ACTIVITY_MAX_DAYS
        back): the downloads of every list last downloaded in that time, as a file."""
        now = self.clock.now()
        today = now.date()
        try:
            low = _date(request.arg("from")) or today - timedelta(days=wire.ACTIVITY_MAX_DAYS)
            high = _date(request.arg("to")) or today
        except ValueError:
            return self.error(request, 400, f"{INVALID_PAYLOAD} from and to are YYYY-MM-DD.")
        if low > high:
            return self.error(request, 400, f"{INVALID_PAYLOAD} from is after to.")
        if low < today - timedelta(days=wire.ACTIVITY_MAX_DAYS):
            return self.error(
                request,
                400,
                f"{INVALID_PAYLOAD} The export reaches back {wire.ACTIVITY_MAX_DAYS} days at most.",
            )
        rows = _activity_rows(self.activity, low, high, now)
        fmt = "zip" if self.switches.download_format == "zip" else "csv"
        fault = self.file_fault or self.switches.optizmo_file_fault or ""
        dropped = fault.split(":", 1)[1] if fault.startswith("drop_column:") else None
        body = _activity_file(rows, self.switches.optizmo_activity_headers, fmt, dropped)
        headers = {
            "Content-Type": "application/zip" if fmt == "zip" else "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="download-activity.{fmt}"',
        }
        answer = self.switches.optizmo_activity_answer
        if answer == "file":
            return Response(200, body, headers)
        token = uuid.uuid4().hex
        export = ActivityExport(
            signature=secrets.token_urlsafe(24),
            ready_at=now + timedelta(seconds=self.switches.download_delay_seconds),
            expires_at=now + DOWNLOAD_TTL,
            body=body,
            headers=headers,
        )
        self.activity_exports[token] = export
        link = f"{request.base_url}/storage/activity/{token}?{_signed_query(export)}"
        if answer == "json":
            return json_response({self.switches.optizmo_download_field: link})
        return Response(302, b"", {"Location": link})

    def _storage_activity(self, request: Request, token: str) -> Response:
        self._note_storage_credential(request)
        with self.lock:
            export = self.activity_exports.get(token)
            now = self.clock.now()
            refused = _signed_refusal(request, export, now, NO_SUCH_KEY)
            if refused is not None:
                return refused
            assert export is not None
            if now < export.ready_at:
                self.sandbox.count("optizmo activity:not-ready")
                return _s3_error(404, *NO_SUCH_KEY)
        body = export.body
        if self.switches.truncate_downloads:
            return Response(200, [body[: len(body) // 2]], export.headers, content_length=len(body))
        return Response(200, body, export.headers)

    # -- upload ---------------------------------------------------------------------------
    def _prepare_upload(self, request: Request, key: str) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.error(request, 400, INVALID_PAYLOAD)
        list_id, size = body.get("optoutListId"), body.get("fileContentLength")
        if not isinstance(list_id, str) or not list_id:
            return self.error(request, 400, f"{INVALID_PAYLOAD} optoutListId is required.")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return self.error(request, 400, f"{INVALID_PAYLOAD} fileContentLength is required.")
        if size > wire.MAX_UPLOAD_BYTES:
            return self.error(request, 400, f"{INVALID_PAYLOAD} The file must not exceed 5 GB.")
        lst = self.lists.get(list_id)
        if lst is None:
            return self.error(request, 404, "Opt-Out List not found.")
        if lst.kind == "grouped":
            return self.error(request, 403, "The Opt-Out List is a Grouped list.")
        now = self.clock.now()
        ttl = timedelta(seconds=self.switches.upload_url_ttl_seconds)
        if self.expire_next_uploads > 0:
            self.expire_next_uploads -= 1
            ttl = timedelta()
        imp = Import(
            reference=str(uuid.uuid4()),
            owner=key,
            list_id=list_id,
            size=size,
            upload_id=uuid.uuid4().hex,
            signature=secrets.token_urlsafe(24),
            expires_at=now + ttl,
        )
        self.imports[imp.reference] = imp
        self.uploads[imp.upload_id] = imp
        url = (
            f"{request.base_url}/storage/uploads/{imp.upload_id}?AWSAccessKeyId=SANDBOX"
            f"&{_signed_query(imp)}"
        )
        return json_response({"uploadUrl": url, "importReference": imp.reference})

    def _storage_upload(self, request: Request, upload_id: str) -> Response:
        self._note_storage_credential(request)
        with self.lock:
            self.upload_puts.append(
                {
                    "upload_id": upload_id,
                    "content_length": request.header("content-length"),
                    "body_bytes": len(request.body),
                    "credential": bool(
                        request.header("authorization") or request.header("api_key")
                    ),
                }
            )
            imp = self.uploads.get(upload_id)
            now = self.clock.now()
            refused = _signed_refusal(request, imp, now, NO_SUCH_UPLOAD)
            if refused is not None:
                return refused
            assert imp is not None
            if len(request.body) != imp.size:
                return _s3_error(
                    400, "IncompleteBody", "The body length does not match fileContentLength."
                )
            if imp.result is not None:
                return _s3_error(409, "OperationAborted", "The import is already processed.")
            kind = self.lists[imp.list_id].kind
            text = request.body.decode("utf-8", "replace")
            imp.entries, imp.submitted, imp.malformed = _parse_upload(text, kind)
            imp.uploaded_at = now
        return Response(200, b"", {"ETag": f'"{uuid.uuid4().hex}"'})

    def _upload_status(self, raw_reference: str, key: str) -> Response:
        imp = self.imports.get(raw_reference.lower())
        if imp is None:
            return json_response({"message": "Import reference not found."}, 404)
        if imp.owner != key:
            return json_response(
                {"message": "Attempted to access a resource not owned by the requesting user."},
                403,
            )
        return json_response(imp.result or {"status": wire.STATUS_RUNNING})

    def _settle(self) -> None:
        """Finish the imports whose processing time has passed (caller holds the lock)."""
        now = self.clock.now()
        delay = timedelta(seconds=self.switches.upload_processing_seconds)
        for imp in self.imports.values():
            if imp.result is not None or imp.uploaded_at is None:
                continue
            done_at = imp.uploaded_at + delay
            if now < done_at:
                continue
            outcome = self.switches.upload_outcome
            if outcome not in wire.TERMINAL_STATUSES:
                outcome = wire.STATUS_FAILED
            lst = self.lists[imp.list_id]
            added = 0
            if outcome == wire.STATUS_SUCCESS:
                at = int(_now_seconds(done_at).timestamp())
                sms = lst.kind == "sms"
                for value in imp.entries:  # valid and normalised when uploaded
                    # An MD5 is 32 characters; an email has an '@', an SMS number 8-15 digits.
                    is_hash = len(value) == 32 and (sms or "@" not in value)
                    plain = wire.sms_digits(value) if sms and not is_hash else value
                    added += lst.add_value(plain, is_hash, at, IMPORTED)
            imp.result = {
                "status": outcome,
                "message": OUTCOME_MESSAGES[outcome],
                "elapsedSeconds": round(delay.total_seconds(), 3),
                "addedCount": added,
                "malformedCount": imp.malformed,
                "submittedCount": imp.submitted,
            }
            imp.entries = []


class OptizmoCollectEmulator(_OptizmoAuth):
    """The collect app ('Collect'): one opt-out per call into an email or SMS list."""

    prefix = "optizmo-collect"

    def __init__(self, sandbox: Any, optizmo: OptizmoEmulator) -> None:
        super().__init__(sandbox)
        self.optizmo = optizmo
        self.lock = optizmo.lock

    def handle(self, request: Request) -> Response:
        if request.path.rstrip("/") != "/" + wire.COLLECT or request.method != "POST":
            return self.error(request, 404, f"no endpoint {request.method} {request.path}")
        key, refused = self.authorized(request)
        if refused is not None or key is None:
            return refused or self.error(request, 401, "Authorization not sent or failed.")
        with self.lock:
            response = self._collect(request)
        return self.with_rate_headers(request, key, response)

    def _collect(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("optoutListId"), str):
            return self.error(request, 400, INVALID_PAYLOAD)
        given = [k for k in ("email", "sms") if body.get(k) not in (None, "")]
        if len(given) != 1 or not isinstance(body[given[0]], str):
            return self.error(request, 400, f"{INVALID_PAYLOAD} Send exactly one of email or sms.")
        lst = self.optizmo.lists.get(body["optoutListId"])
        if lst is None or lst.kind == "grouped":
            return self.error(
                request,
                403,
                "The Opt-Out List id is invalid, or the list is "
                "disabled, deleted, grouped or linked.",
            )
        field_name, value = given[0], wire.normalize(body[given[0]])
        if (field_name == "sms") != (lst.kind == "sms"):
            return self.error(
                request, 400, f"{INVALID_PAYLOAD} This list does not take {field_name}."
            )
        valid = wire.is_sms(value) if field_name == "sms" else wire.is_email(value)
        if not valid:
            return self.error(request, 400, f"{INVALID_PAYLOAD} Invalid {field_name}.")
        now = self.clock.now()
        delay = self.switches.collect_delay_seconds
        visible_at = now + timedelta(seconds=delay) if delay else None
        lst.add(self.optizmo.row_for(lst.kind, value, now, collected=True, visible_at=visible_at))
        return json_response({"message": COLLECTED_MESSAGE})


def _download_spec(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Validate prepare-download ('Preparing a download'). Returns (problem, Download fields)."""
    if not isinstance(body.get("optoutListId"), str) or not body["optoutListId"]:
        return "optoutListId is required.", {}
    columns = body.get("columns")
    if not isinstance(columns, list) or not columns or any(c not in wire.COLUMNS for c in columns):
        return f"columns must be a non-empty subset of {list(wire.COLUMNS)}.", {}
    types = body.get("collectionType")
    if (
        not isinstance(types, list)
        or not types
        or any(t not in wire.COLLECTION_TYPES for t in types)
    ):
        return f"collectionType must be a non-empty subset of {list(wire.COLLECTION_TYPES)}.", {}
    date_from = date_to = None
    if body.get("dateRange") is not None:
        span = body["dateRange"]
        try:
            if not isinstance(span, dict):
                raise ValueError
            date_from = _date(span.get("from"))
            date_to = _date(span.get("to"))
        except ValueError:
            return "dateRange needs from and to as YYYY-MM-DD.", {}
        if date_from and date_to and date_from > date_to:
            return "dateRange from is after to.", {}
    domain_filter = body.get("domainFilter")
    if domain_filter is not None and not isinstance(domain_filter, str):
        return "domainFilter must be a string.", {}
    return "", {
        "columns": list(dict.fromkeys(columns)),
        "collection_types": set(types),
        "date_from": date_from,
        "date_to": date_to,
        "domains": wire.domain_list(domain_filter),
    }


def _date(value: Any) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(value)
    return datetime.strptime(value, wire.DATE_FORMAT).date()


def _write_csv(text: io.TextIOWrapper, columns: list[str], rows: Iterable[list[str]]) -> None:
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows(rows)
    text.flush()


def _parse_upload(text: str, kind: str) -> tuple[list[str], int, int]:
    """(valid entries, lines submitted, malformed lines) of an upload file ('Bulk upload'):
    each line is trimmed and lowercased, blank lines skipped. A file already in that form (what
    clients send) is read by one regular expression pass."""
    pattern = _VALID_SMS_LINES if kind == "sms" else _VALID_EMAIL_LINES
    if text == text.lower() and _plain_lines(text):
        lines = text.split("\n")
        submitted = len(lines) - lines.count("")
        entries = pattern.findall(text)
        return entries, submitted, submitted - len(entries)
    entries, submitted = [], 0
    for line in text.splitlines():
        value = wire.normalize(line)
        if value:
            submitted += 1
            if wire.valid_upload_entry(value, kind):
                entries.append(value)
    return entries, submitted, submitted - len(entries)


def _plain_lines(text: str) -> bool:
    """True when every line ends with \\n alone and has no blanks around its value (what the
    one-pass reading needs). ASCII text is checked with substring searches; other text by
    the regular expression (slower)."""
    if not text.isascii():
        return not _NOT_PLAIN_LINES.search(text)
    return not (
        _ASCII_ODD_SPACE.search(text)
        or " \n" in text
        or "\n " in text
        or text.startswith(" ")
        or text.endswith(" ")
    )


def _anchored(*patterns: re.Pattern[str]) -> re.Pattern[str]:
    """Whole lines matching any of `patterns` (their own ^...$ dropped), for lowercase text
    (the patterns' own letters are lowercase)."""
    inner = "|".join(p.pattern.removeprefix("^").removesuffix("$") for p in patterns)
    return re.compile(f"^(?:{inner})$", re.MULTILINE)


_VALID_EMAIL_LINES = _anchored(wire.MD5_RE, wire.EMAIL_RE)
_VALID_SMS_LINES = _anchored(wire.MD5_RE, wire.SMS_RE)
# ASCII whitespace other than a space and \n.
_ASCII_ODD_SPACE = re.compile(r"[\t\r\v\f\x1c-\x1f]")
# What only the line-by-line reading handles: line ends other than \n, blanks around a value.
_NOT_PLAIN_LINES = re.compile(
    r"[\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]|^[^\S\n]|[^\S\n]$", re.MULTILINE
)


def _file_columns(download: Download, fault: str | None) -> list[str]:
    columns = wire.file_columns(download.columns)
    if fault and fault.startswith("drop_column:"):
        columns = [c for c in columns if c != fault.split(":", 1)[1]]
    return columns


def _long_line(fault: str | None) -> int:
    """The line length a `long_line:<bytes>` fault asks for (0: not that fault)."""
    if not fault or not fault.startswith("long_line:"):
        return 0
    return max(1, int(fault.split(":", 1)[1]))


def _long_line_chunks(columns: list[str], size: int) -> Iterator[bytes]:
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


def _csv_chunks(columns: list[str], rows: Iterator[list[str]]) -> Iterator[bytes]:
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


def _selected(download: Download, lst: OptoutList, columns: list[str]) -> Iterator[list[str]]:
    """The cells of the rows a download holds (its filters, in list order)."""
    # domainFilter applies to email addresses; SMS lists have none (ignored there).
    domains = download.domains if lst.kind == "email" else []
    types = download.collection_types
    low = _epoch_day(download.date_from) * DAY if download.date_from else None
    high = (_epoch_day(download.date_to) + 1) * DAY if download.date_to else None
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


DAY = 86_400
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
ORIGIN_FIELDS = {"campaign": 1, "affiliate": 2, "sub_affiliate": 3, "ip": 4}
_CLOCK: list[str] = []


def _clock_times() -> list[str]:
    """`HH:MM:SS` for every second of a day (built once, 5 MB)."""
    if not _CLOCK:
        _CLOCK.extend(
            f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
        )
    return _CLOCK


def _epoch_day(day: date) -> int:
    return day.toordinal() - EPOCH_ORDINAL


def _seed_origin(index: int) -> Origin:
    if index % 4 == 0:
        return IMPORTED
    return (
        True,
        CAMPAIGNS[index % len(CAMPAIGNS)],
        AFFILIATES[index % len(AFFILIATES)],
        SUB_AFFILIATES[index % len(SUB_AFFILIATES)],
        IPS[index % len(IPS)],
    )


def _file_chunks(path: Path, limit: int) -> Iterator[bytes]:
    """The first `limit` bytes of a file, in chunks (a shorter `limit` truncates)."""
    left = limit
    with open(path, "rb") as handle:
        while left > 0:
            chunk = handle.read(min(FILE_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


# -- download activity ----------------------------------------------------------------------
LIST_NAMES = {
    C.OPTIZMO_EMAIL_LIST_ID: "Newsletter opt-outs",
    C.OPTIZMO_SMS_LIST_ID: "SMS opt-outs",
    C.OPTIZMO_SPARE_EMAIL_LIST_ID: "Retired promo list",
    C.OPTIZMO_GROUPED_LIST_ID: "All brands (grouped)",
}
# Who downloads which list: (list, affiliate number, days between downloads, days since the
# last one). Some keep to a daily or weekly routine, some have lapsed; the retired list was
# last downloaded more than ACTIVITY_MAX_DAYS ago, so the export leaves it out.
ACTIVITY_PLAN = (
    (C.OPTIZMO_EMAIL_LIST_ID, 0, 1, 0),
    (C.OPTIZMO_EMAIL_LIST_ID, 1, 2, 1),
    (C.OPTIZMO_EMAIL_LIST_ID, 2, 3, 0),
    (C.OPTIZMO_EMAIL_LIST_ID, 3, 7, 2),
    (C.OPTIZMO_EMAIL_LIST_ID, 4, 7, 5),
    (C.OPTIZMO_EMAIL_LIST_ID, 5, 14, 20),
    (C.OPTIZMO_EMAIL_LIST_ID, 6, 30, 40),
    (C.OPTIZMO_SMS_LIST_ID, 0, 2, 0),
    (C.OPTIZMO_SMS_LIST_ID, 3, 7, 3),
    (C.OPTIZMO_SMS_LIST_ID, 6, 30, 12),
    (C.OPTIZMO_SPARE_EMAIL_LIST_ID, 1, 30, 100),
    (C.OPTIZMO_SPARE_EMAIL_LIST_ID, 4, 30, 130),
)
ACTIVITY_HISTORY_DAYS = 120  # older downloads are not kept
ACTIVITY_FIELDS = tuple(wire.ACTIVITY_COLUMNS)


def seed_activity(now: datetime) -> list[Activity]:
    """The downloads of ACTIVITY_PLAN up to `now` (the same plan relative to any `now`)."""
    rows: list[Activity] = []
    now_epoch = int(now.timestamp())
    today = _epoch_day(now.date()) * DAY
    for list_id, number, every, last in ACTIVITY_PLAN:
        # A fixed time of day per affiliate; a download not yet due today is left out.
        second_of_day = (3 + number) * 3600 + number * 7 * 60 + number
        for days_ago in range(last, ACTIVITY_HISTORY_DAYS + 1, every):
            at = today - days_ago * DAY + second_of_day
            if at <= now_epoch:
                rows.append(_activity(list_id, number, at))
    rows.sort()
    return rows


def _activity(list_id: str, number: int, at: int, **given: str) -> Activity:
    campaign = number % len(CAMPAIGNS)
    return Activity(
        at=at,
        list_id=list_id,
        list_name=given.get("list_name") or LIST_NAMES.get(list_id, ""),
        campaign_id=given.get("campaign_id") or str(4100 + campaign),
        campaign=given.get("campaign") or CAMPAIGNS[campaign],
        affiliate_id=given.get("affiliate_id") or str(7100 + number),
        affiliate=given.get("affiliate") or AFFILIATES[number % len(AFFILIATES)],
        sub_affiliate=given.get("sub_affiliate", SUB_AFFILIATES[number % len(SUB_AFFILIATES)]),
        download_format=given.get("download_format") or ("md5" if number % 2 else "plain"),
        ip=given.get("ip") or IPS[(number * 37) % len(IPS)],
    )


def activity_from_record(record: dict[str, Any], now: datetime) -> Activity:
    """A download from `/_sandbox/add`: `list_id`, `affiliate` ("Affiliate <n>" takes that
    affiliate's campaign and ids), `downloaded_at` (default now) and any other field."""
    list_id = record.get("list_id")
    affiliate = record.get("affiliate")
    if not isinstance(list_id, str) or not isinstance(affiliate, str) or not affiliate:
        raise ValueError("a download needs list_id and affiliate")
    stamp = record.get("downloaded_at")
    at = parse_timestamp(stamp) if stamp else now
    number = AFFILIATES.index(affiliate) if affiliate in AFFILIATES else len(AFFILIATES)
    given = {k: str(v) for k, v in record.items() if k in ACTIVITY_FIELDS and v is not None}
    given["affiliate"] = affiliate
    if "optout_list_name" in given:
        given["list_name"] = given.pop("optout_list_name")
    return _activity(list_id, number, int(at.timestamp()), **given)


def _activity_rows(rows: list[Activity], low: date, high: date, now: datetime) -> list[Activity]:
    """The downloads dated `low`..`high` of the lists last downloaded in the last
    ACTIVITY_MAX_DAYS days, up to `now`."""
    now_epoch = int(now.timestamp())
    recent = (_epoch_day(now.date()) - wire.ACTIVITY_MAX_DAYS) * DAY
    last: dict[str, int] = {}
    for row in rows:
        if row.at <= now_epoch:
            last[row.list_id] = max(last.get(row.list_id, 0), row.at)
    start, end = _epoch_day(low) * DAY, (_epoch_day(high) + 1) * DAY
    return sorted(
        row
        for row in rows
        if start <= row.at < end and row.at <= now_epoch and last[row.list_id] >= recent
    )


def _activity_file(
    rows: list[Activity], headers: str, fmt: str, dropped: str | None = None
) -> bytes:
    """The export: CSV (or a ZIP of it) with a header row in the `headers` spelling, less
    the `dropped` field's column (a fault)."""
    title = headers == "title"
    keep = [i for i, f in enumerate(ACTIVITY_FIELDS) if f != dropped]
    names = [wire.ACTIVITY_TITLE_HEADERS[f] if title else f for f in ACTIVITY_FIELDS]
    text = io.StringIO()
    writer = csv.writer(text)
    # The title form: a spreadsheet's names, RFC 3339 times, and each affiliate's mailer key
    # (a column the client must not pass on).
    writer.writerow([names[i] for i in keep] + (["Mailer Key"] if title else []))
    for row in rows:
        if title:
            stamp = _rfc3339(row.at)
        else:
            stamp = datetime.fromtimestamp(row.at, UTC).strftime(wire.TIMESTAMP_FORMAT)
        cells = [stamp, *row[1:]]
        writer.writerow([cells[i] for i in keep] + ([f"m-a12-{row.affiliate_id}"] if title else []))
    data = text.getvalue().encode("utf-8")
    if fmt != "zip":
        return data
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("download-activity.csv", data)
    return packed.getvalue()


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
