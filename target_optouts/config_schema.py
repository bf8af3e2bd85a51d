"""target-optouts settings, and which of them are secrets."""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

from optouts_providers import optizmo
from optouts_providers import settings as shared
from target_optouts.ledger.store import DEFAULT_URL as DEFAULT_LEDGER_URL
from target_optouts.lines import DEFAULT_MAX_LINE_BYTES

SECRET_SETTINGS = {
    "checkmarket": ("master_key", "key"),
    "slicktext": ("public_key", "private_key", "api_key"),
    "optizmo": ("api_key",),
    "webhooks": ("path_token", "slicktext_secret"),
}
SECRET_TOP_SETTINGS = ("ledger_hash_key",)

CONFIG_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "checkmarket",
        th.ObjectType(
            shared.checkmarket_base_url(),
            *shared.checkmarket_keys("write"),
            th.Property(
                "batch_size",
                th.IntegerType(minimum=1),
                default=1000,
                description="Addresses per POST 3/contacts/optouts.",
            ),
        ),
        description="CheckMarket (Medallia Agile Research) API v3: emails and phones.",
    ),
    th.Property(
        "slicktext",
        th.ObjectType(
            shared.slicktext_base_url(),
            *shared.slicktext_legacy_keys(),
            th.Property(
                "optout_action",
                th.StringType,
                default="OPTOUT",
                description="Legacy API: the POST /contacts action that opts out.",
            ),
            *shared.slicktext_new_api(),
            shared.slicktext_requests_per_second(),
        ),
        description="SlickText: legacy API (public and private key) or new API (API key). "
        "Phones only.",
    ),
    th.Property(
        "optizmo",
        th.ObjectType(
            shared.optizmo_base_url(),
            th.Property(
                "collect_base_url",
                th.StringType,
                default=optizmo.DEFAULT_COLLECT_BASE_URL,
                description="Collect API host (single opt-outs).",
            ),
            shared.optizmo_api_key(),
            th.Property(
                "email_list_id",
                th.StringType,
                description="Opt-out list receiving emails and MD5s.",
            ),
            th.Property(
                "sms_list_id", th.StringType, description="Opt-out list receiving phone numbers."
            ),
            th.Property(
                "bulk_threshold",
                th.IntegerType(minimum=0),
                default=1000,
                description="Up to this many opt-outs per batch and list go one by "
                "one to collect; more are bulk uploaded (MD5s always are).",
            ),
            th.Property(
                "upload_timeout_seconds",
                th.NumberType(exclusive_minimum=0),
                default=900,
                description="Give up on a bulk upload not processed after this long.",
            ),
            shared.optizmo_poll_interval("upload-status"),
        ),
        description="Optizmo SUPPRESS API (bulk upload) and collect API.",
    ),
    th.Property(
        "default_phone_region",
        th.StringType,
        default="US",
        description="Region (ISO 3166 alpha-2) of phone numbers written without a country code.",
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        description="Log and count what would be written; write nothing and emit no STATE.",
    ),
    th.Property(
        "skip_origin",
        th.BooleanType,
        default=True,
        description="Do not write an opt-out back to the provider its stream came "
        "from (checkmarket_*, slicktext_*, optizmo_*).",
    ),
    th.Property(
        "ledger_url",
        th.StringType,
        default=DEFAULT_LEDGER_URL,
        description="SQLAlchemy URL of the ledger (what each destination holds, and the "
        "evidence): a SQLite file (relative to the working directory: the Meltano project) or "
        "postgresql://... An empty string turns the ledger off.",
    ),
    th.Property(
        "ledger_hash_key",
        th.StringType,
        secret=True,
        description="Key of the HMAC-SHA-256 the ledger stores addresses as (16+ characters). "
        "Unset: a key generated once and kept in a file beside the ledger.",
    ),
    th.Property(
        "ledger_clear_addresses",
        th.BooleanType,
        default=False,
        description="Also keep each address in clear in the ledger (off: hashes only).",
    ),
    th.Property(
        "ledger_reconcile",
        th.BooleanType,
        default=False,
        description="This run reads every provider in full (a reconcile): at its end, what a "
        "provider's read no longer holds is marked missing, and the next run writes it again.",
    ),
    th.Property(
        "webhooks",
        th.ObjectType(
            th.Property(
                "path_token",
                th.StringType,
                secret=True,
                description="The webhook receiver (optouts-webhooks): a long random string "
                "(24+ letters, digits, '-' or '_') that is part of every webhook URL.",
            ),
            th.Property(
                "slicktext_secret",
                th.StringType,
                secret=True,
                description="The webhook receiver: SlickText's legacy webhook secret, which "
                "signs each delivery (unset: the legacy endpoint is off).",
            ),
        ),
        description="The webhook receiver's settings (optouts-webhooks serve); the target "
        "itself does not read them.",
    ),
    th.Property(
        "rejects_path",
        th.StringType,
        description="JSON-lines file that rejected records are appended to, with their reasons.",
    ),
    th.Property(
        "max_line_bytes",
        th.IntegerType(minimum=1024),
        default=DEFAULT_MAX_LINE_BYTES,
        description="The longest input line (and BATCH file line) read, in bytes. A longer "
        "input line is rejected with its length, unread; a longer BATCH file line fails the run.",
    ),
    *shared.http_waits("run"),
    shared.progress_interval(),
).to_dict()
