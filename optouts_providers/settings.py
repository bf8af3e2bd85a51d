"""The settings the tap and the target share, one builder each: the name, type, default,
secret flag and description that both connectors declare (`--about`). Where the two differ in
a word (the key's role, what a run is called), the word is the builder's argument. Numbers carry
their range, so the SDK's config validation refuses a value outside it by the setting's name."""

from __future__ import annotations

from singer_sdk import typing as th

from optouts_providers import checkmarket, optizmo, slicktext


# -- CheckMarket -----------------------------------------------------------------------------
def checkmarket_base_url() -> th.Property:
    return th.Property(
        "base_url",
        th.StringType,
        default=checkmarket.DEFAULT_BASE_URL,
        description="API host of the account's region (api-eu, api-us, api-ca).",
    )


def checkmarket_keys(role: str) -> list[th.Property]:
    """master_key and key; `role` is the key's Contacts role ("read" or "write")."""
    return [
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
            description=f"X-Key: a key with the Contacts ({role}) role.",
        ),
    ]


# -- SlickText -------------------------------------------------------------------------------
def slicktext_base_url() -> th.Property:
    return th.Property(
        "base_url",
        th.StringType,
        description=f"Default: {slicktext.LEGACY_DEFAULT_BASE_URL} (legacy keys) or "
        f"{slicktext.V2_DEFAULT_BASE_URL} (new-API key).",
    )


def slicktext_legacy_keys() -> list[th.Property]:
    """public_key and private_key (the legacy API)."""
    return [
        th.Property(
            "public_key",
            th.StringType,
            secret=True,
            description="Legacy API public key (pub_...).",
        ),
        th.Property(
            "private_key", th.StringType, secret=True, description="Legacy API private key."
        ),
    ]


def slicktext_new_api() -> list[th.Property]:
    """api_key and brand_id (the new API)."""
    return [
        th.Property(
            "api_key",
            th.StringType,
            secret=True,
            description="New API key (accounts created from 22 Jan 2025).",
        ),
        th.Property(
            "brand_id",
            th.IntegerType(minimum=1),
            description="New API brand id (read from GET /brands when unset).",
        ),
    ]


# A positive decimal written as a string ("2.5", not "0" or "abc").
POSITIVE_DECIMAL = r"^\s*(?=[0-9.]*[1-9])([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*$"


def slicktext_requests_per_second() -> th.Property:
    # A number or a numeric string: Meltano 4.4.1 cannot pass a `decimal` setting given by an
    # environment variable (it writes a Decimal into the JSON config), so Meltano declares this
    # one a string, and a fractional rate still reaches the connector. The client parses it.
    return th.Property(
        "requests_per_second",
        th.CustomType(
            {"type": ["number", "string"], "exclusiveMinimum": 0, "pattern": POSITIVE_DECIMAL}
        ),
        description="Cap on the request rate, fractions allowed (2.5); the rate-limit headers "
        "are followed in any case.",
    )


# -- Optizmo ---------------------------------------------------------------------------------
def optizmo_base_url() -> th.Property:
    return th.Property(
        "base_url",
        th.StringType,
        default=optizmo.DEFAULT_BASE_URL,
        description="SUPPRESS API host.",
    )


def optizmo_api_key() -> th.Property:
    return th.Property(
        "api_key",
        th.StringType,
        secret=True,
        description="SUPPRESS API key (optizmo_api_...).",
    )


def optizmo_poll_interval(polls: str) -> th.Property:
    """`polls`: what is polled ("download", "upload-status")."""
    return th.Property(
        "poll_interval_seconds",
        th.NumberType(exclusive_minimum=0),
        default=5,
        description=f"First wait between {polls} polls (it grows).",
    )


# -- Progress --------------------------------------------------------------------------------
def progress_interval() -> th.Property:
    # No schema default: the SDK would fill it in, and OPTOUTS_PROGRESS_SECONDS could never apply.
    return th.Property(
        "progress_interval_seconds",
        th.NumberType(minimum=0),
        description="Least time between two progress lines of one stream, download or upload "
        "(0: one at every check; unset: OPTOUTS_PROGRESS_SECONDS, else 30). Start, end, status "
        "changes and retries are always logged.",
    )


# -- HTTP: timeouts and waits ----------------------------------------------------------------
def http_waits(run: str) -> list[th.Property]:
    """request_timeout_seconds, max_retry_wait_seconds and max_total_wait_seconds; `run` is
    what the connector calls one run ("sync", "run")."""
    return [
        th.Property(
            "request_timeout_seconds",
            th.NumberType(exclusive_minimum=0),
            default=60,
            description="Read timeout of one HTTP request; a timeout is retried.",
        ),
        th.Property(
            "max_retry_wait_seconds",
            th.NumberType(minimum=0),
            default=900,
            description="Longest total time one request may spend waiting on retries and "
            f"rate limits before the {run} fails.",
        ),
        th.Property(
            "max_total_wait_seconds",
            th.NumberType(minimum=0),
            default=3600,
            description=f"Longest time the whole {run} may spend waiting on providers' "
            "failures and throttling (retry waits, Retry-After, spent rate-limit windows; "
            "steady pacing excluded) before it fails.",
        ),
    ]


def config_error_line(exc: Exception) -> str:
    """A refused configuration (the SDK's ConfigValidationError) as one line naming every
    setting at fault: the last line of stderr, which is what `meltano config test` shows of a
    failed plugin. Tap and target word it the same."""
    errors = getattr(exc, "errors", None) or []
    return f"Config validation failed: {'; '.join(map(str, errors)) or exc}"
