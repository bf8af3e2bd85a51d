"""The pre-signed storage behind the SUPPRESS API: list downloads, activity exports, uploads.

One S3-like store under `/storage/`: every URL it hands out carries `Expires` and `Signature`,
and is checked the same way (an unknown key, a signature that does not match, a link past its
time are refused as S3 refuses them). It takes no API credential; one sent is counted, since a
client must not send it there.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from optouts_sandbox.core import Request, Response
from optouts_sandbox.optizmo import download_file
from optouts_sandbox.optizmo.auth import OptizmoApp
from optouts_sandbox.optizmo.lists import OptoutList
from optouts_sandbox.optizmo.upload_file import parse_upload

NO_SUCH_KEY = ("NoSuchKey", "The specified key does not exist.")
NO_SUCH_UPLOAD = ("NoSuchUpload", "The specified upload does not exist.")


@dataclass
class Download:
    """A prepared list download: what it selects, and the files rendered for it."""

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


@dataclass
class ActivityExport:
    signature: str
    ready_at: datetime
    expires_at: datetime
    body: bytes
    headers: dict[str, str]


@dataclass
class Import:
    """A bulk upload: its pre-signed upload URL, the entries uploaded, the import's result."""

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


Signed = Download | ActivityExport | Import


def signed_url(
    base_url: str, shelf: str, key: str, item: Signed, *, access_key_id: str = ""
) -> str:
    """The pre-signed URL of `item` stored as `shelf/key`: when it expires and its signature."""
    query = f"Expires={int(item.expires_at.timestamp())}&Signature={item.signature}"
    if access_key_id:
        query = f"AWSAccessKeyId={access_key_id}&{query}"
    return f"{base_url}/storage/{shelf}/{key}?{query}"


def signed_refusal(
    request: Request, item: Signed | None, now: datetime, missing: tuple[str, str]
) -> Response | None:
    """What the storage answers a pre-signed URL it does not take, as S3 does (an unknown
    key, a signature that does not match, a link past its time); None when it takes it."""
    if item is None:
        return s3_error(404, *missing)
    if request.arg("Signature") != item.signature:
        return s3_error(403, "SignatureDoesNotMatch", "The signature does not match.")
    if now >= item.expires_at:
        return s3_error(403, "AccessDenied", "Request has expired")
    return None


def s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return Response(status, body, {"Content-Type": "application/xml"})


class PresignedStorage(OptizmoApp):
    """The store and its three shelves; the SUPPRESS emulator puts items on them."""

    # The SUPPRESS emulator's, read when a download is served or an upload arrives.
    lists: dict[str, OptoutList]
    file_fault: str | None

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        self._tmp = Path(tempfile.mkdtemp(prefix="optizmo-sandbox-"))
        self.downloads: dict[str, Download] = {}
        self.activity_exports: dict[str, ActivityExport] = {}
        self.uploads: dict[str, Import] = {}
        # What reached the storage paths, for tests and the demo.
        self.storage_credential_headers = 0
        self.upload_puts: list[dict[str, Any]] = []

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_tmp", ""), ignore_errors=True)

    def clear_storage(self) -> None:
        """Forget every stored item and rendered file (caller holds the lock)."""
        for path in self._tmp.glob("*"):
            path.unlink(missing_ok=True)
        self.downloads.clear()
        self.activity_exports.clear()
        self.uploads.clear()
        self.storage_credential_headers = 0
        self.upload_puts.clear()

    def serve_storage(self, request: Request, path: str) -> Response:
        """Answer a request under `/storage/` (`path` without its trailing slash)."""
        key = path.rsplit("/", 1)[1]
        if path.startswith("/storage/downloads/") and request.method == "GET":
            return self._storage_download(request, key)
        if path.startswith("/storage/activity/") and request.method == "GET":
            return self._storage_activity(request, key)
        if path.startswith("/storage/uploads/") and request.method == "PUT":
            return self._storage_upload(request, key)
        return s3_error(405, "MethodNotAllowed", "The method is not allowed.")

    def _storage_download(self, request: Request, token: str) -> Response:
        self._note_storage_credential(request)
        with self.lock:
            download = self.downloads.get(token)
            now = self.clock.now()
            refused = signed_refusal(request, download, now, NO_SUCH_KEY)
            if refused is not None:
                return refused
            assert download is not None
            if now < download.ready_at:
                download.not_ready += 1
                self.sandbox.count("optizmo download:not-ready")
                return s3_error(404, *NO_SUCH_KEY)
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
            return Response(200, download_file.streamed_csv(download, lst, fault), headers)
        with download.lock:
            path = download.files.get(f"{fmt}:{fault}")
            if path is None:
                path = self._tmp / f"{download.token}-{fmt}-{secrets.token_hex(4)}"
                download_file.render(path, download, lst, fmt, fault)
                download.files[f"{fmt}:{fault}"] = path
        size = path.stat().st_size
        send = size // 2 if self.switches.truncate_downloads else size
        return Response(200, download_file.file_chunks(path, send), headers, content_length=size)

    def _storage_activity(self, request: Request, token: str) -> Response:
        self._note_storage_credential(request)
        with self.lock:
            export = self.activity_exports.get(token)
            now = self.clock.now()
            refused = signed_refusal(request, export, now, NO_SUCH_KEY)
            if refused is not None:
                return refused
            assert export is not None
            if now < export.ready_at:
                self.sandbox.count("optizmo activity:not-ready")
                return s3_error(404, *NO_SUCH_KEY)
        body = export.body
        if self.switches.truncate_downloads:
            return Response(200, [body[: len(body) // 2]], export.headers, content_length=len(body))
        return Response(200, body, export.headers)

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
            refused = signed_refusal(request, imp, now, NO_SUCH_UPLOAD)
            if refused is not None:
                return refused
            assert imp is not None
            if len(request.body) != imp.size:
                return s3_error(
                    400, "IncompleteBody", "The body length does not match fileContentLength."
                )
            if imp.result is not None:
                return s3_error(409, "OperationAborted", "The import is already processed.")
            kind = self.lists[imp.list_id].kind
            text = request.body.decode("utf-8", "replace")
            imp.entries, imp.submitted, imp.malformed = parse_upload(text, kind)
            imp.uploaded_at = now
        return Response(200, b"", {"ETag": f'"{uuid.uuid4().hex}"'})

    def _note_storage_credential(self, request: Request) -> None:
        if request.header("authorization") or request.header("api_key"):
            with self.lock:
                self.storage_credential_headers += 1
            self.sandbox.count("optizmo storage:credential-header")
