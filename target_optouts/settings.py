"""target-optouts settings (the issue's list), and which of them are secrets."""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

from optouts_providers import settings as shared

SECRET_SETTINGS = {
    "checkmarket": ("master_key", "key"),
    "slicktext": ("public_key", "private_key", "api_key"),
    "optizmo": ("api_key",),
}

CONFIG_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "checkmarket",
        th.ObjectType(
            shared.checkmarket_base_url(),
            *shared.checkmarket_keys("write"),
            th.Property(
                "batch_size",
                th.IntegerType,
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
                default="https://collect.optoutsystem.com",
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
                th.IntegerType,
                default=1000,
                description="Up to this many opt-outs per batch and list go one by "
                "one to collect; more are bulk uploaded (MD5s always are).",
            ),
            th.Property(
                "upload_timeout_seconds",
                th.NumberType,
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
        "rejects_path",
        th.StringType,
        description="JSON-lines file that rejected records are appended to, with their reasons.",
    ),
    *shared.http_waits("run"),
).to_dict()
