"""tap-optouts: opt-outs from CheckMarket, SlickText and Optizmo, incrementally."""

from __future__ import annotations

import typing as t

from singer_sdk import Tap
from singer_sdk import typing as th

from optouts_providers.gctune import settle_gc
from optouts_providers.http import set_total_wait_budget
from optouts_providers.redact import install_log_redaction, register_secret
from optouts_providers.timeutil import utc_now
from tap_optouts.fastpath import LineWriter
from tap_optouts.progress import RunSummary, log_run_summary
from tap_optouts.streams import STREAM_TYPES

if t.TYPE_CHECKING:
    from datetime import datetime

    from tap_optouts.client import OptoutsStream

SECRET_SETTINGS = {
    "checkmarket": ("master_key", "key"),
    "slicktext": ("private_key", "api_key", "public_key"),
    "optizmo": ("api_key",),
}


class TapOptouts(Tap):
    """Singer tap for opt-out lists: CheckMarket, SlickText (legacy and new API), Optizmo."""

    name = "tap-optouts"
    package_name = "optouts-connectors"  # the distribution, for --version and --about
    message_writer_class = LineWriter

    config_jsonschema = th.PropertiesList(
        th.Property(
            "start_date",
            th.DateTimeType,
            description="Earliest opt-out to read on a first run (RFC 3339). "
            "Default: everything the provider holds.",
        ),
        th.Property(
            "lookback_minutes",
            th.NumberType,
            default=60,
            description="Widen each incremental query this far before the bookmark, for "
            "opt-outs a provider records late. Never moves a stored bookmark back.",
        ),
        th.Property(
            "request_timeout_seconds",
            th.NumberType,
            default=60,
            description="Read timeout of one HTTP request; a timeout is retried.",
        ),
        th.Property(
            "max_retry_wait_seconds",
            th.NumberType,
            default=900,
            description="Longest total time one request may spend waiting on retries and "
            "rate limits before the sync fails.",
        ),
        th.Property(
            "max_total_wait_seconds",
            th.NumberType,
            default=3600,
            description="Longest time the whole sync may spend waiting on providers' "
            "failures and throttling (retry waits, Retry-After, spent rate-limit windows; "
            "steady pacing excluded) before it fails.",
        ),
        th.Property(
            "checkmarket",
            th.ObjectType(
                th.Property(
                    "base_url",
                    th.StringType,
                    default="https://api-eu.agileresearch.medallia.com",
                    description="API host of the account's region (api-eu, api-us, api-ca).",
                ),
                th.Property(
                    "master_key",
                    th.StringType,
                    secret=True,
                    description="X-Master-Key: the account's master key.",
                ),
                th.Property(
                    "key",
                    th.StringType,
                    secret=True,
                    description="X-Key: a key with the Contacts (read) role.",
                ),
                th.Property(
                    "survey_ids",
                    th.ArrayType(th.IntegerType),
                    description="Read these surveys' opt-out lists (one partition each) "
                    "instead of the account-wide list.",
                ),
                th.Property(
                    "page_size", th.IntegerType, default=1000, description="Rows per page ($top)."
                ),
            ),
            description="CheckMarket (Medallia Agile Research) API v3.",
        ),
        th.Property(
            "slicktext",
            th.ObjectType(
                th.Property(
                    "base_url",
                    th.StringType,
                    description="Default: https://api.slicktext.com/v1 (legacy keys) or "
                    "https://dev.slicktext.com/v1 (new-API key).",
                ),
                th.Property(
                    "public_key",
                    th.StringType,
                    secret=True,
                    description="Legacy API public key (pub_...).",
                ),
                th.Property(
                    "private_key", th.StringType, secret=True, description="Legacy API private key."
                ),
                th.Property(
                    "api_key",
                    th.StringType,
                    secret=True,
                    description="New API key (accounts created from 22 Jan 2025).",
                ),
                th.Property(
                    "brand_id",
                    th.IntegerType,
                    description="New API brand id (read from GET /brands when unset).",
                ),
                th.Property(
                    "page_size",
                    th.IntegerType,
                    default=10000,
                    description="Rows per page (at most 10,000).",
                ),
            ),
            description="SlickText: legacy API (public and private key) or new API (API key).",
        ),
        th.Property(
            "optizmo",
            th.ObjectType(
                th.Property(
                    "base_url",
                    th.StringType,
                    default="https://api.optizmo.com",
                    description="SUPPRESS API host.",
                ),
                th.Property(
                    "api_key",
                    th.StringType,
                    secret=True,
                    description="SUPPRESS API key (optizmo_api_...).",
                ),
                th.Property(
                    "list_ids",
                    th.ArrayType(th.StringType),
                    description="Opt-out list ids to read (one partition each).",
                ),
                th.Property(
                    "columns",
                    th.ArrayType(th.StringType),
                    default=["plain", "hashed", "timestamp"],
                    description="Columns to download (hashed and timestamp are always added).",
                ),
                th.Property(
                    "collection_types",
                    th.ArrayType(th.StringType),
                    default=["collected", "imported"],
                    description="collected (unsubscribe links) and/or imported.",
                ),
                th.Property(
                    "domain_filter",
                    th.StringType,
                    description="Only these root domains, comma separated.",
                ),
                th.Property(
                    "poll_interval_seconds",
                    th.NumberType,
                    default=5,
                    description="First wait between download polls (it grows).",
                ),
                th.Property(
                    "download_timeout_seconds",
                    th.NumberType,
                    default=900,
                    description="Give up on a download not ready after this long.",
                ),
            ),
            description="Optizmo SUPPRESS API.",
        ),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        install_log_redaction(self.name, f"{self.name}.streams", "singer_sdk")
        for provider, keys in SECRET_SETTINGS.items():
            for key in keys:
                register_secret((self.config.get(provider) or {}).get(key))
        set_total_wait_budget(float(self.config.get("max_total_wait_seconds", 3600)))
        self.sync_started_at: datetime = utc_now()

    def discover_streams(self) -> list[OptoutsStream]:
        streams = [cls(tap=self) for cls in STREAM_TYPES if cls.configured(self.config)]
        if not streams:
            msg = (
                "No provider is configured: set the credentials of at least one of "
                "checkmarket (master_key, key), slicktext (public_key and private_key, or "
                "api_key) or optizmo (api_key, list_ids)."
            )
            raise ValueError(msg)
        return streams

    def sync_all(self) -> None:
        # The window's upper bound for every stream: fixed once, before the first request.
        self.sync_started_at = utc_now()
        self.optouts_summary = RunSummary()
        settle_gc()
        status = "failed"
        try:
            super().sync_all()
            status = "succeeded"
        finally:
            log_run_summary(self, status)


if __name__ == "__main__":
    TapOptouts.cli()
