"""Optizmo as a destination: the email list carries emails, and MD5s (bulk upload only); the SMS
list carries phones as digits without '+' (collect). Emails: collect up to `bulk_threshold` per
batch, bulk upload above it (`optouts_providers.optizmo.emails_in_bulk`): a batch's emails and
MD5s are spooled to a temporary file until the batch ends, then collected or uploaded (one upload
per batch, whatever its size).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from optouts_providers import optizmo
from optouts_providers.optizmo import wire as optizmo_wire
from optouts_providers.results import WriteResult
from target_optouts.destinations.base import Destination, Values
from target_optouts.normalize import OptOut

if TYPE_CHECKING:
    from optouts_providers.optizmo.client import OptizmoClient


class OptizmoDestination(Destination):
    provider = "optizmo"

    def __init__(
        self,
        client: OptizmoClient,
        *,
        email_list_id: str | None,
        sms_list_id: str | None,
        bulk_threshold: int,
        upload_timeout_seconds: float,
        poll_interval_seconds: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.email_list_id = email_list_id
        self.sms_list_id = sms_list_id
        self.bulk_threshold = bulk_threshold
        self.upload_timeout_seconds = upload_timeout_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.spools: dict[str, Spool] = {}  # per stream: the email list's emails and MD5s

    def ledger_channels(self) -> dict[str, tuple[str, str]]:
        # Each list is a destination of its own in the ledger; an SMS list holds phones.
        out = {}
        if self.email_list_id:
            out["email"] = (f"optizmo:{self.email_list_id}", "email")
            out["md5"] = (f"optizmo:{self.email_list_id}", "md5")
        if self.sms_list_id:
            out["sms"] = (f"optizmo:{self.sms_list_id}", "phone")
        return out

    def ledger_value(self, channel: str, value: str) -> str:
        return "+" + value if channel == "sms" else value

    @cached_property
    def channels(self) -> list[tuple[str, Callable[[OptOut], str | None]]]:
        # An opt-out's MD5 is set only when it has no email and no phone (normalize.py).
        out: list[tuple[str, Callable[[OptOut], str | None]]] = []
        if self.email_list_id:
            out += [("email", attrgetter("email")), ("md5", attrgetter("md5"))]
        if self.sms_list_id:
            out.append(("sms", _sms_digits))
        return out

    def send(self, values: Values, stream: str) -> WriteResult:
        # Emails and MD5s share the email list: kept until the batch ends, when their number
        # decides between collect and a bulk upload (MD5s always go in bulk: collect cannot
        # carry them: optizmo.md, 'Collect or bulk'). SMS numbers are collected at once.
        emails, hashes = values.get("email", []), values.get("md5", [])
        if self.email_list_id and (emails or hashes):
            spool = self.spools.get(stream)
            if spool is None:
                spool = self.spools[stream] = Spool()
            spool.add(emails, hashes)
        numbers = values.get("sms")
        if self.sms_list_id and numbers:
            return self.client.collect_all(self.sms_list_id, numbers, "sms")
        return WriteResult()

    def finish(self, stream: str) -> WriteResult | None:
        spool = self.spools.pop(stream, None)
        if spool is None or not self.email_list_id:
            return None
        with spool:
            if optizmo.emails_in_bulk(spool.emails, self.bulk_threshold):
                # The spool is the upload file itself.
                return self.client.upload_file(
                    self.email_list_id,
                    spool.file,
                    spool.emails + spool.hashes,
                    timeout_seconds=self.upload_timeout_seconds,
                    poll_interval_seconds=self.poll_interval_seconds,
                )
            # Decided once, here: the emails are collected, the MD5s (never collectable) uploaded.
            result = self.client.collect_all(self.email_list_id, spool.values(md5=False), "email")
            if spool.hashes:
                result.add(self._upload(spool.values(md5=True)))
            return result

    def _upload(self, values: Iterable[str]) -> WriteResult:
        assert self.email_list_id is not None
        return self.client.bulk_upload(
            self.email_list_id,
            values,
            timeout_seconds=self.upload_timeout_seconds,
            poll_interval_seconds=self.poll_interval_seconds,
        )

    def stats(self) -> dict[str, Any]:
        return self.client.stats.as_dict()

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()
        self.spools.clear()
        self.client.close()


class Spool:
    """A batch's emails and MD5s for the Optizmo email list, on disk until the batch ends."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.emails = 0
        self.hashes = 0

    def add(self, emails: list[str], hashes: list[str]) -> None:
        self.emails += len(emails)
        self.hashes += len(hashes)
        for values in (emails, hashes):
            if values:
                self.file.write(("\n".join(values) + "\n").encode("utf-8"))

    def values(self, md5: bool | None = None) -> Iterator[str]:
        """Every value, or only the MD5s (True) or only the emails (False)."""
        self.file.flush()
        self.file.seek(0)
        for raw in self.file:
            value = raw.decode("utf-8").rstrip("\n")
            if md5 is None or optizmo_wire.is_md5(value) == md5:
                yield value

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sms_digits(optout: OptOut) -> str | None:
    return optizmo_wire.sms_digits(optout.phone) if optout.phone else None


def from_settings(
    settings: Mapping[str, Any], options: Mapping[str, Any], common: dict[str, Any]
) -> Destination | None:
    has_list = bool(settings.get("email_list_id") or settings.get("sms_list_id"))
    if not optizmo.configured(settings):
        if has_list:
            raise ValueError("optizmo: a list id is set but api_key is not")
        return None
    if not has_list:
        raise ValueError("optizmo: api_key is set but neither email_list_id nor sms_list_id")
    return OptizmoDestination(
        optizmo.client_from_config(settings, options),
        email_list_id=settings.get("email_list_id"),
        sms_list_id=settings.get("sms_list_id"),
        bulk_threshold=int(settings.get("bulk_threshold", 1000)),
        upload_timeout_seconds=float(settings.get("upload_timeout_seconds") or 900),
        poll_interval_seconds=float(settings.get("poll_interval_seconds") or 5),
        **common,
    )
