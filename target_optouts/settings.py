"""target-optouts settings (the issue's list), and which of them are secrets."""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

SECRET_SETTINGS = {
    "checkmarket": ("master_key", "key"),
    "slicktext": ("public_key", "private_key", "api_key"),
    "optizmo": ("api_key",),
}

CONFIG_SCHEMA: dict[str, Any] = th.PropertiesList(
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
                description="X-Key: a key with the Contacts (write) role.",
            ),
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
                "optout_action",
                th.StringType,
                default="OPTOUT",
                description="Legacy API: the POST /contacts action that opts out.",
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
                "requests_per_second",
                th.NumberType,
                description="Cap on the request rate (the rate-limit headers are "
                "followed in any case).",
            ),
        ),
        description="SlickText: legacy API (public and private key) or new API (API key). "
        "Phones only.",
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
                "collect_base_url",
                th.StringType,
                default="https://collect.optoutsystem.com",
                description="Collect API host (single opt-outs).",
            ),
            th.Property(
                "api_key",
                th.StringType,
                secret=True,
                description="SUPPRESS API key (optizmo_api_...).",
            ),
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
            th.Property(
                "poll_interval_seconds",
                th.NumberType,
                default=5,
                description="First wait between upload-status polls (it grows).",
            ),
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
        description="Longest total time one request may spend waiting on retries "
        "and rate limits before the run fails.",
    ),
    th.Property(
        "max_total_wait_seconds",
        th.NumberType,
        default=3600,
        description="Longest time the whole run may spend waiting on providers' failures "
        "and throttling (retry waits, Retry-After, spent rate-limit windows; steady pacing "
        "excluded) before it fails.",
    ),
).to_dict()
