"""Bulk upload (docs/providers/optizmo.md, 'Bulk upload'): a file of emails or MD5s, uploaded
to a pre-signed link, then the import followed to its end."""

from __future__ import annotations

import io
import logging
import random
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import IO, Any
from urllib.parse import quote

from optouts_providers.http import ProviderError, RetryableProviderError
from optouts_providers.optizmo import wire
from optouts_providers.optizmo.hosts import Hosts
from optouts_providers.optizmo.storage import MAX_POLL_WAIT, POLL_GROWTH
from optouts_providers.progress import Transfer
from optouts_providers.results import WriteResult

logger = logging.getLogger("optouts.optizmo")

# Upload lines the client itself finds malformed, kept to name them in `rejected`.
MAX_SUSPECTS = 10_000


class OptizmoImportError(ProviderError):
    """A bulk import ended `failed` or `removed` ('Bulk upload'); names its import reference."""

    def __init__(self, *args: Any, reference: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reference = reference


def bulk_upload(
    hosts: Hosts,
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
        return upload_file(
            hosts,
            list_id,
            spool,
            count,
            suspects=lambda: suspects,
            timeout_seconds=timeout_seconds,
            poll_interval_seconds=poll_interval_seconds,
        )


def upload_file(
    hosts: Hosts,
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
    reference = _upload(hosts, list_id, spool, size)
    upload.status("uploaded", import_reference=reference, bytes=size)
    status = _wait_for_import(hosts, reference, timeout_seconds, poll_interval_seconds, upload)
    return _import_result(reference, status, count, suspects or (lambda: _suspects(spool)))


def _upload(hosts: Hosts, list_id: str, spool: IO[bytes], size: int) -> str:
    """prepare-upload and PUT; an expired URL (403) is prepared again once."""
    url = ""
    for attempt in (1, 2):
        answer = hosts.json(
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
        if _put(hosts, url, spool, size) != 403:
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


def _put(hosts: Hosts, url: str, spool: IO[bytes], size: int) -> int:
    """PUT the spooled file without credentials; retried here because each try must
    rewind the file. Returns the status (403 is left to the caller)."""
    policy = hosts.storage.retry
    for attempt in range(1, policy.max_tries + 1):
        spool.seek(0)
        try:
            response = hosts.storage.request_unauthenticated(
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
            hosts.sleep(wait)
            continue
        response.close()
        return response.status_code
    raise AssertionError("unreachable")


def _wait_for_import(
    hosts: Hosts, reference: str, timeout: float, interval: float, progress: Transfer | None = None
) -> dict[str, Any]:
    path = wire.UPLOAD_STATUS.format(ref=quote(reference, safe=""))
    deadline = time.monotonic() + timeout
    wait = max(interval, 0.01)
    while True:
        status = hosts.json("GET", path)
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
        hosts.sleep(min(wait, remaining))
        wait = min(wait * POLL_GROWTH, MAX_POLL_WAIT)


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
