"""tap-optouts: opt-outs from CheckMarket, SlickText and Optizmo, incrementally."""

from __future__ import annotations

import io
import sys
import typing as t

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from optouts_providers import progress
from optouts_providers import settings as shared
from optouts_providers.gctune import settle_gc
from optouts_providers.http import set_total_wait_budget
from optouts_providers.redact import install_log_redaction, register_secret
from optouts_providers.settings import config_error_line
from optouts_providers.slicktext import check_one_api
from optouts_providers.timeutil import utc_now
from tap_optouts.record_output import LineWriter
from tap_optouts.startup import (
    StateError,
    check_state,
    keep_sdk_excepthook,
    parse_state,
)
from tap_optouts.streams import STREAM_TYPES
from tap_optouts.sync_report import RunSummary, log_run_summary

if t.TYPE_CHECKING:
    from datetime import datetime

    from tap_optouts.streams.base import OptoutsStream

SECRET_SETTINGS = {
    "checkmarket": ("master_key", "key"),
    "slicktext": ("private_key", "api_key", "public_key"),
    "optizmo": ("api_key",),
}
# Every stream's replication key (all date-times): what a bookmark in the state must parse as.
REPLICATION_KEYS = {cls.name: str(cls.replication_key) for cls in STREAM_TYPES}


class TapOptouts(Tap):
    """Singer tap for opt-out lists: CheckMarket, SlickText (legacy and new API), Optizmo."""

    name = "tap-optouts"
    package_name = "tap-optouts"  # the distribution, for --version and --about
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
            th.NumberType(minimum=0),
            default=60,
            description="Widen each incremental query this far before the bookmark, for "
            "opt-outs a provider records late. Never moves a stored bookmark back.",
        ),
        *shared.http_waits("sync"),
        shared.progress_interval(),
        th.Property(
            "checkmarket",
            th.ObjectType(
                shared.checkmarket_base_url(),
                *shared.checkmarket_keys("read"),
                th.Property(
                    "survey_ids",
                    th.ArrayType(th.IntegerType(minimum=1)),
                    description="Read these surveys' opt-out lists (one partition each) "
                    "instead of the account-wide list.",
                ),
                th.Property(
                    "page_size",
                    th.IntegerType(minimum=1),
                    default=1000,
                    description="Rows per page ($top).",
                ),
            ),
            description="CheckMarket (Medallia Agile Research) API v3.",
        ),
        th.Property(
            "slicktext",
            th.ObjectType(
                shared.slicktext_base_url(),
                *shared.slicktext_legacy_keys(),
                *shared.slicktext_new_api(),
                th.Property(
                    "page_size",
                    th.IntegerType(minimum=1, maximum=10000),
                    default=10000,
                    description="Rows per page (at most 10,000).",
                ),
                shared.slicktext_requests_per_second(),
            ),
            description="SlickText: legacy API (public and private key) or new API (API key).",
        ),
        th.Property(
            "optizmo",
            th.ObjectType(
                shared.optizmo_base_url(),
                shared.optizmo_api_key(),
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
                shared.optizmo_poll_interval("download"),
                th.Property(
                    "download_timeout_seconds",
                    th.NumberType(exclusive_minimum=0),
                    default=900,
                    description="Give up on a download not ready after this long.",
                ),
            ),
            description="Optizmo SUPPRESS API.",
        ),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        sdk_excepthook = sys.excepthook
        install_log_redaction(self.name, f"{self.name}.streams", "singer_sdk")
        keep_sdk_excepthook(sdk_excepthook)
        for provider, keys in SECRET_SETTINGS.items():
            for key in keys:
                register_secret((self.config.get(provider) or {}).get(key))
        try:
            check_one_api(self.config.get("slicktext") or {})
        except ValueError as exc:
            raise ConfigValidationError(str(exc), errors=[str(exc)]) from None
        set_total_wait_budget(float(self.config.get("max_total_wait_seconds", 3600)))
        progress.configure(self.config.get("progress_interval_seconds"))
        self.sync_started_at: datetime = utc_now()

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,
        state: t.IO[str] | None = None,
        catalog: t.IO[str] | None = None,
    ) -> None:
        # The state is checked before the SDK parses it: a broken one is one line naming the
        # stream and the value, and a non-zero exit, not a traceback mid-start.
        if state is not None and not about:
            text = state.read()
            try:
                check_state(parse_state(text), REPLICATION_KEYS)
            except StateError as exc:
                cls.logger.error("%s", exc)
                raise SystemExit(1) from None
            state = io.StringIO(text)
        try:
            super().invoke(
                about=about, about_format=about_format, config=config, state=state, catalog=catalog
            )
        except ConfigValidationError as exc:
            cls.logger.error("%s", config_error_line(exc))
            raise SystemExit(1) from None

    def load_state(self, state: dict[str, t.Any]) -> None:
        check_state(state, REPLICATION_KEYS)
        super().load_state(state)

    def discover_streams(self) -> list[OptoutsStream]:
        # The schemas are static files: with no provider configured, discovery lists every
        # stream (`meltano select --list` before any credential is set); a sync refuses to
        # start (sync_all). Once one is configured, only the configured providers' streams.
        configured = [cls for cls in STREAM_TYPES if cls.configured(self.config)]
        return [cls(tap=self) for cls in configured or STREAM_TYPES]

    def sync_all(self) -> None:
        if not any(cls.configured(self.config) for cls in STREAM_TYPES):
            self.logger.error(
                "No provider is configured: set the credentials of at least one of "
                "checkmarket (master_key, key), slicktext (public_key and private_key, or "
                "api_key) or optizmo (api_key, list_ids)."
            )
            raise SystemExit(1)
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
