"""Optizmo SUPPRESS and collect wire format, shared by the client and the sandbox emulator.

Vendor facts and project decisions: docs/providers/optizmo.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from optouts_providers.http import RateHeaders

PROVIDER = "Optizmo"

DEFAULT_BASE_URL = "https://api.optizmo.com"
DEFAULT_COLLECT_BASE_URL = "https://collect.optoutsystem.com"

PREPARE_DOWNLOAD = "optout-list/prepare-download"
PREPARE_UPLOAD = "optout-list/prepare-upload"
UPLOAD_STATUS = "optout-list/upload-status/{ref}"
COLLECT = "client-optout/collect"

# Request columns ('Preparing a download'). `campaign` expands to three file columns.
COLUMNS = ("plain", "hashed", "timestamp", "campaign", "ip")
DEFAULT_COLUMNS = ("plain", "hashed", "timestamp")
ALWAYS_COLUMNS = ("hashed", "timestamp")
CAMPAIGN_FILE_COLUMNS = ("campaign", "affiliate", "sub_affiliate")
FILE_COLUMNS = ("plain", "hashed", "timestamp", *CAMPAIGN_FILE_COLUMNS, "ip")

COLLECTION_TYPES = ("collected", "imported")

STATUS_RUNNING = "running"
STATUS_SUCCESS = "success"
STATUS_FAILED = "failed"
STATUS_REMOVED = "removed"
TERMINAL_STATUSES = frozenset({STATUS_SUCCESS, STATUS_FAILED, STATUS_REMOVED})

# 'Bulk upload': the upload file must not exceed 5 GB.
MAX_UPLOAD_BYTES = 5 * 1024**3

# 'Rate limits': header names; the reset semantics are unknown ("auto" guesses by magnitude).
RATE_LIMIT = "x-rate-limit-limit"
RATE_REMAINING = "x-rate-limit-remaining"
RATE_RESET = "x-rate-limit-reset"
RESET_SEMANTICS: dict[str, bool | None] = {"auto": None, "epoch": True, "seconds": False}


def rate_headers(reset: str = "auto") -> RateHeaders:
    if reset not in RESET_SEMANTICS:
        raise ValueError(f"rate-limit reset semantics must be one of {sorted(RESET_SEMANTICS)}")
    return RateHeaders(RATE_LIMIT, RATE_REMAINING, RATE_RESET, RESET_SEMANTICS[reset])


# 'The download link': where prepare-download's answer keeps it (the field is undocumented).
DOWNLOAD_LINK_FIELDS = ("downloadUrl", "url", "link", "downloadLink", "download_link")

# Timestamps in the file: UTC `YYYY-MM-DD HH:MM:SS` ('Time zone').
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"

# First bytes of a ZIP: a local file header, or the end record alone (an empty archive).
ZIP_MAGIC = b"PK\x03\x04"
ZIP_SIGNATURES = (ZIP_MAGIC, b"PK\x05\x06")

MD5_RE = re.compile(r"^[0-9a-f]{32}$")
EMAIL_RE = re.compile(
    r"^[^@\s,;<>\"']+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9-]+)+$", re.IGNORECASE
)
SMS_RE = re.compile(r"^[0-9]{8,15}$")


def normalize(value: str) -> str:
    """'Hashes': values are trimmed and lowercased before hashing and export."""
    return value.strip().lower()


def hash_value(value: str) -> str:
    """Lowercase hex MD5 of the trimmed, lowercased value."""
    return hashlib.md5(normalize(value).encode("utf-8")).hexdigest()


def is_md5(value: str) -> bool:
    return MD5_RE.fullmatch(value) is not None


def is_email(value: str) -> bool:
    return EMAIL_RE.fullmatch(value) is not None


def is_sms(value: str) -> bool:
    return SMS_RE.fullmatch(value) is not None


def sms_digits(number: str) -> str:
    """'Collect': collect takes SMS numbers as digits with the country code and no '+'."""
    return re.sub(r"\D", "", number)


def valid_upload_entry(line: str, kind: str = "email") -> bool:
    """'Bulk upload': an upload line is a plain email (a number on SMS lists) or a 32-hex MD5."""
    value = normalize(line)
    if is_md5(value):
        return True
    return is_sms(value) if kind == "sms" else is_email(value)


def upload_line(value: str) -> bytes:
    """One line of an upload file ('Bulk upload'): the normalized value and `\\n`."""
    return (normalize(value) + "\n").encode("utf-8")


def file_columns(columns: Iterable[str]) -> list[str]:
    """The file's header row for requested `columns` (`campaign` adds three columns)."""
    out: list[str] = []
    for column in columns:
        out.extend(CAMPAIGN_FILE_COLUMNS if column == "campaign" else (column,))
    return out


def header_name(raw: str) -> str:
    """A header cell as a column key: `Sub-Affiliate` and `sub affiliate` → `sub_affiliate`."""
    return re.sub(r"[\s-]+", "_", raw.strip().lstrip("\ufeff").lower())


def date_range(start: datetime, end: datetime) -> dict[str, str]:
    """`dateRange` (inclusive UTC dates) covering [start, end)."""
    return {"from": start.strftime(DATE_FORMAT), "to": end.strftime(DATE_FORMAT)}


def domain_list(domain_filter: str | None) -> list[str]:
    """'Preparing a download': `domainFilter` is comma-separated root domains; spaces are
    tolerated."""
    if not domain_filter:
        return []
    return [d.strip().lower().lstrip(".") for d in re.split(r"[,\s]+", domain_filter) if d.strip()]


def domain_matches(email: str, domains: list[str]) -> bool:
    domain = email.rpartition("@")[2].lower()
    return any(domain == d or domain.endswith("." + d) for d in domains)


def find_download_link(body: Any) -> str | None:
    """'The download link': `downloadUrl`, else `url`, `link`, `downloadLink`, `download_link`,
    else the first http(s) string anywhere in the body."""
    if isinstance(body, Mapping):
        for name in DOWNLOAD_LINK_FIELDS:
            value = body.get(name)
            if isinstance(value, str) and value.startswith(("https://", "http://")):
                return value
    return _first_url(body)


def _first_url(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.startswith(("https://", "http://")) else None
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            found = _first_url(item)
            if found:
                return found
    return None


# -- download activity (docs/providers/optizmo.md, "Download activity") ----------------------
# The seed names the export but not its path, parameters or columns: these are the project's.
DOWNLOAD_ACTIVITY = "optout-list/download-activity"
# The export covers lists last downloaded between 0 and this many days ago.
ACTIVITY_MAX_DAYS = 90
REDIRECT_STATUSES = (301, 302, 303, 307, 308)

# Record fields, and the header spellings each is read from (after `header_name`).
ACTIVITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "downloaded_at": (
        "downloaded_at",
        "download_date",
        "download_time",
        "date_downloaded",
        "downloaded_on",
        "downloaded",
        "last_downloaded",
        "date",
        "timestamp",
    ),
    "optout_list_id": ("optout_list_id", "opt_out_list_id", "optoutlistid", "list_id"),
    "optout_list_name": ("optout_list_name", "opt_out_list_name", "list_name", "opt_out_list"),
    "campaign_id": ("campaign_id", "campaignid"),
    "campaign": ("campaign", "campaign_name"),
    "affiliate_id": ("affiliate_id", "affiliateid", "mailer_id"),
    "affiliate": ("affiliate", "affiliate_name", "mailer", "mailer_name"),
    "sub_affiliate": ("sub_affiliate", "subaffiliate", "sub_affiliate_name", "sub_id"),
    "download_format": ("download_format", "format", "file_format"),
    "ip": ("ip", "ip_address", "download_ip"),
}
# A row must say when, and who (by name or id): one field of each of these.
ACTIVITY_REQUIRED = (("downloaded_at",), ("affiliate", "affiliate_id"))
# Header spellings as the sandbox writes them: the project's names, or a spreadsheet's.
ACTIVITY_TITLE_HEADERS: dict[str, str] = {
    "downloaded_at": "Date Downloaded",
    "optout_list_id": "Opt-Out List ID",
    "optout_list_name": "Opt-Out List Name",
    "campaign_id": "Campaign ID",
    "campaign": "Campaign Name",
    "affiliate_id": "Affiliate ID",
    "affiliate": "Affiliate Name",
    "sub_affiliate": "Sub-Affiliate",
    "download_format": "Format",
    "ip": "IP Address",
}


def activity_fields(header: Iterable[str]) -> dict[str, int]:
    """Record field -> cell position, for a header row in any of the accepted spellings
    (the first cell that names a field wins; unknown cells are ignored)."""
    names = [header_name(cell) for cell in header]
    positions: dict[str, int] = {}
    for field, spellings in ACTIVITY_COLUMNS.items():
        for spelling in spellings:
            if spelling in names:
                positions[field] = names.index(spelling)
                break
    return positions


def activity_id(record: Mapping[str, Any]) -> str:
    """The stable key of one download: the MD5 of its cells, the time in RFC 3339."""
    cells = (str(record.get(field) or "") for field in ACTIVITY_COLUMNS)
    return hashlib.md5("\x1f".join(cells).encode("utf-8")).hexdigest()
