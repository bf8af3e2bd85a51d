"""The SUPPRESS API emulator: prepare a list download, the download-activity export, prepare a
bulk upload and follow its import (see docs/providers/optizmo.md).

Downloads and uploads go through the pre-signed storage this emulator is built on.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from optouts_providers.optizmo import wire
from optouts_providers.timeutil import parse_timestamp
from optouts_sandbox import credentials as C
from optouts_sandbox.core import Request, Response, json_response
from optouts_sandbox.optizmo import activity
from optouts_sandbox.optizmo.auth import INVALID_PAYLOAD
from optouts_sandbox.optizmo.lists import IMPORTED, OptoutList, row_for, seed_origin, whole_seconds
from optouts_sandbox.optizmo.storage import (
    ActivityExport,
    Download,
    Import,
    PresignedStorage,
    signed_url,
)
from optouts_sandbox.seed import Person

DOWNLOAD_TTL = timedelta(days=1)
OUTCOME_MESSAGES = {
    wire.STATUS_SUCCESS: "Import completed.",
    wire.STATUS_FAILED: "Import failed: the file could not be processed.",
    wire.STATUS_REMOVED: "Import was removed.",
}


class OptizmoEmulator(PresignedStorage):
    """The SUPPRESS API over its lists, imports and download activity."""

    prefix = "optizmo"

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        self.lists: dict[str, OptoutList] = {}
        self.imports: dict[str, Import] = {}
        # Test faults on the served file: "empty_zip", "drop_column:<name>" or
        # "long_line:<bytes>" (after the header, one line of that many bytes, made as sent).
        self.file_fault: str | None = None
        # Test fault: the next N upload URLs handed out are already expired.
        self.expire_next_uploads = 0
        # What prepare-download was sent, for tests and the demo.
        self.prepare_download_bodies: list[dict[str, Any]] = []
        # Affiliates' downloads of the lists.
        self.activity: list[activity.Activity] = []

    # -- store ----------------------------------------------------------------------------
    def seed(self, population: Iterable[Person]) -> None:
        with self.lock:
            self.clear_storage()
            self.imports.clear()
            self.file_fault = None
            self.expire_next_uploads = 0
            self.prepare_download_bodies.clear()
            self.activity = activity.seed_activity(self.clock.now())
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
                origin = seed_origin(person.index)
                # Seed emails are already trimmed and lowercased; a repeated number is skipped.
                if person.has_email and not emails.holds(person.email):
                    emails.append(person.email, None, at, origin)
                digits = person.phone[1:]
                if person.has_phone and not phones.holds(digits):
                    phones.append(digits, None, at, origin)

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
                "download_activity": activity.summary(self.activity),
            }

    def admin_add(self, records: list[dict[str, Any]]) -> int:
        """Records `{"list_id", "email"|"sms"|"hashed", "timestamp"?, "collection_type"?}`, or
        downloads `{"kind": "download_activity", "list_id", "affiliate", "downloaded_at"?, ...}`
        (see `activity.activity_from_record`)."""
        added = 0
        with self.lock:
            for record in records:
                if record.get("kind") == "download_activity":
                    self.activity.append(activity.activity_from_record(record, self.clock.now()))
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
                added += lst.add(row_for(lst.kind, value, at, collected=collected))
        return added

    # -- dispatch -------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path.startswith("/storage/"):
            return self.serve_storage(request, path)
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
        link = signed_url(request.base_url, "downloads", token, download)
        return json_response({self.switches.optizmo_download_field: link})

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
        rows = activity.exported_rows(self.activity, low, high, now)
        fmt = "zip" if self.switches.download_format == "zip" else "csv"
        fault = self.file_fault or self.switches.optizmo_file_fault or ""
        dropped = fault.split(":", 1)[1] if fault.startswith("drop_column:") else None
        body = activity.export_file(rows, self.switches.optizmo_activity_headers, fmt, dropped)
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
        link = signed_url(request.base_url, "activity", token, export)
        if answer == "json":
            return json_response({self.switches.optizmo_download_field: link})
        return Response(302, b"", {"Location": link})

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
        url = signed_url(request.base_url, "uploads", imp.upload_id, imp, access_key_id="SANDBOX")
        return json_response({"uploadUrl": url, "importReference": imp.reference})

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
                at = int(whole_seconds(done_at).timestamp())
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
