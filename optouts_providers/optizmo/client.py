"""OptizmoClient: the SUPPRESS API, collect and storage hosts, and what is done through them.

Each concern has its module: a list's download (`download`), the download-activity export
(`activity`), collect (`collect`) and bulk upload (`bulk`); the files they read (`files`,
`storage`). See docs/providers/optizmo.md. Download and upload links are pre-signed storage
URLs and are fetched without any credential ('Pre-signed links').
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from singer_sdk.authenticators import BearerTokenAuthenticator

from optouts_providers.http import (
    DEFAULT_TIMEOUT,
    CallStats,
    Pacer,
    ProviderSession,
    RetryPolicy,
)
from optouts_providers.optizmo import activity, bulk, collect, download, emails_in_bulk, wire
from optouts_providers.optizmo.bulk import OptizmoImportError as OptizmoImportError
from optouts_providers.optizmo.hosts import Hosts
from optouts_providers.redact import register_secret
from optouts_providers.results import WriteResult


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

        self.hosts = Hosts(
            api=session(base_url),
            # The collect app is a second configured host: it gets the credential too ('Hosts').
            collect=session(collect_base_url),
            storage=ProviderSession(
                wire.PROVIDER, base_url, None, timeout=timeout, retry=retry, sleep=sleep
            ),
            sleep=sleep,
        )

    @property
    def stats(self) -> CallStats:
        hosts = self.hosts
        return CallStats.total((hosts.api.stats, hosts.collect.stats, hosts.storage.stats))

    def close(self) -> None:
        for session in (self.hosts.api, self.hosts.collect, self.hosts.storage):
            session.close()

    # -- read -----------------------------------------------------------------------------
    def iter_optouts(
        self, list_id: str, start: datetime, end: datetime, **options: Any
    ) -> Iterator[dict[str, Any]]:
        """Records of `optizmo_optouts` with `start <= timestamp < end` (options:
        `download.iter_optouts`)."""
        return download.iter_optouts(self.hosts, list_id, start, end, **options)

    def iter_download_activity(
        self, start: datetime, end: datetime, **options: Any
    ) -> Iterator[dict[str, Any]]:
        """Records of `optizmo_download_activity` with `start <= downloaded_at < end` (options:
        `activity.iter_download_activity`)."""
        return activity.iter_download_activity(self.hosts, start, end, **options)

    # -- write ----------------------------------------------------------------------------
    def collect(self, list_id: str, *, email: str | None = None, sms: str | None = None) -> None:
        collect.collect(self.hosts, list_id, email=email, sms=sms)

    def bulk_upload(self, list_id: str, lines: Iterable[str], **options: Any) -> WriteResult:
        """Options: `bulk.bulk_upload`."""
        return bulk.bulk_upload(self.hosts, list_id, lines, **options)

    def upload_file(
        self, list_id: str, spool: IO[bytes], count: int, **options: Any
    ) -> WriteResult:
        """Options: `bulk.upload_file`."""
        return bulk.upload_file(self.hosts, list_id, spool, count, **options)

    def collect_all(self, list_id: str, values: Iterable[str], channel: str) -> WriteResult:
        """Each value collected once (the caller chose collect: `emails_in_bulk`)."""
        return collect.collect_each(self.hosts, list_id, _unique(values), channel)

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
        """Collect or bulk (`emails_in_bulk`); SMS numbers are always collected."""
        if channel not in ("email", "sms"):
            raise ValueError(f"channel must be 'email' or 'sms', not {channel!r}")
        if channel == "sms":
            return self.collect_all(list_id, values, "sms")
        unique = _unique(values)
        hashes = [v for v in unique if wire.is_md5(v)]
        emails = [v for v in unique if not wire.is_md5(v)]
        result = WriteResult()
        uploaded = hashes
        if emails_in_bulk(len(emails), bulk_threshold):
            uploaded = emails + hashes
        else:
            result.add(collect.collect_each(self.hosts, list_id, emails, "email"))
        if uploaded:
            result.add(
                self.bulk_upload(
                    list_id,
                    uploaded,
                    timeout_seconds=upload_timeout_seconds,
                    poll_interval_seconds=poll_interval_seconds,
                )
            )
        return result


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(wire.normalize(v) for v in values if v and v.strip()))
