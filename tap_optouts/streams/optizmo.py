"""optizmo_optouts: one partition per configured opt-out list (docs/providers/optizmo.md,
'The download file');
optizmo_download_activity: which affiliates downloaded which list, when (not selected by
default: it is a compliance report, not opt-outs; docs/providers/optizmo.md)."""

from __future__ import annotations

import typing as t
from functools import cached_property

from optouts_providers import optizmo
from optouts_providers.http import http_options
from optouts_providers.optizmo import wire
from tap_optouts.streams.base import OptoutsStream, load_schema

if t.TYPE_CHECKING:
    from datetime import datetime

    from singer_sdk.helpers.types import Context

    from optouts_providers.optizmo.client import OptizmoClient


class OptizmoOptoutsStream(OptoutsStream):
    name = "optizmo_optouts"
    provider_key = "optizmo"
    replication_key = "timestamp"
    primary_keys: t.ClassVar[list[str]] = ["optout_list_id", "hashed"]
    schema = load_schema("optizmo_optouts")

    @classmethod
    def configured(cls, config: t.Mapping[str, t.Any]) -> bool:
        # Configured, and with lists to read.
        settings = config.get(cls.provider_key) or {}
        return optizmo.configured(settings) and bool(settings.get("list_ids"))

    @property
    def partitions(self) -> list[dict[str, t.Any]] | None:
        list_ids = self.provider_config.get("list_ids") or []
        return [{"optout_list_id": str(list_id)} for list_id in list_ids]

    @cached_property
    def client(self) -> OptizmoClient:
        return optizmo.client_from_config(self.provider_config, http_options(self.config))

    def fetch(
        self, context: Context | None, start: datetime, end: datetime
    ) -> t.Iterator[dict[str, t.Any]]:
        settings = self.provider_config
        yield from self.client.iter_optouts(
            (context or {})["optout_list_id"],
            start,
            end,
            columns=settings.get("columns") or wire.DEFAULT_COLUMNS,
            collection_types=settings.get("collection_types") or wire.COLLECTION_TYPES,
            domain_filter=settings.get("domain_filter"),
            poll_interval_seconds=float(settings.get("poll_interval_seconds") or 5),
            download_timeout_seconds=float(settings.get("download_timeout_seconds") or 900),
        )


class OptizmoDownloadActivityStream(OptizmoOptoutsStream):
    """The account's download-activity export: one record per download of a list by an
    affiliate. Incremental on `downloaded_at`, over the export's last 90 days at most."""

    name = "optizmo_download_activity"
    replication_key = "downloaded_at"
    primary_keys: t.ClassVar[list[str]] = ["activity_id"]
    schema = load_schema("optizmo_download_activity")
    # A report for a warehouse: a loader of opt-outs (target-optouts) must not get it.
    selected_by_default = False

    @property
    def partitions(self) -> list[dict[str, t.Any]] | None:
        return None

    def fetch(
        self, context: Context | None, start: datetime, end: datetime
    ) -> t.Iterator[dict[str, t.Any]]:
        settings = self.provider_config
        yield from self.client.iter_download_activity(
            start,
            end,
            poll_interval_seconds=float(settings.get("poll_interval_seconds") or 5),
            download_timeout_seconds=float(settings.get("download_timeout_seconds") or 900),
        )
