"""Download activity: affiliates' downloads of the lists (the Mailer API's side, not emulated),
seeded from a plan, and the export file the SUPPRESS API hands out for a span of days."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from optouts_providers.optizmo import wire
from optouts_providers.timeutil import parse_timestamp
from optouts_sandbox import credentials as C
from optouts_sandbox.optizmo.lists import AFFILIATES, CAMPAIGNS, DAY, IPS, SUB_AFFILIATES, epoch_day

LIST_NAMES = {
    C.OPTIZMO_EMAIL_LIST_ID: "Newsletter opt-outs",
    C.OPTIZMO_SMS_LIST_ID: "SMS opt-outs",
    C.OPTIZMO_SPARE_EMAIL_LIST_ID: "Retired promo list",
    C.OPTIZMO_GROUPED_LIST_ID: "All brands (grouped)",
}
# Who downloads which list: (list, affiliate number, days between downloads, days since the
# last one). Some keep to a daily or weekly routine, some have lapsed; the retired list was
# last downloaded more than ACTIVITY_MAX_DAYS ago, so the export leaves it out.
ACTIVITY_PLAN = (
    (C.OPTIZMO_EMAIL_LIST_ID, 0, 1, 0),
    (C.OPTIZMO_EMAIL_LIST_ID, 1, 2, 1),
    (C.OPTIZMO_EMAIL_LIST_ID, 2, 3, 0),
    (C.OPTIZMO_EMAIL_LIST_ID, 3, 7, 2),
    (C.OPTIZMO_EMAIL_LIST_ID, 4, 7, 5),
    (C.OPTIZMO_EMAIL_LIST_ID, 5, 14, 20),
    (C.OPTIZMO_EMAIL_LIST_ID, 6, 30, 40),
    (C.OPTIZMO_SMS_LIST_ID, 0, 2, 0),
    (C.OPTIZMO_SMS_LIST_ID, 3, 7, 3),
    (C.OPTIZMO_SMS_LIST_ID, 6, 30, 12),
    (C.OPTIZMO_SPARE_EMAIL_LIST_ID, 1, 30, 100),
    (C.OPTIZMO_SPARE_EMAIL_LIST_ID, 4, 30, 130),
)
ACTIVITY_HISTORY_DAYS = 120  # older downloads are not kept
ACTIVITY_FIELDS = tuple(wire.ACTIVITY_COLUMNS)


class Activity(NamedTuple):
    """One download of a list by an affiliate."""

    at: int  # UTC epoch seconds
    list_id: str
    list_name: str
    campaign_id: str
    campaign: str
    affiliate_id: str
    affiliate: str
    sub_affiliate: str
    download_format: str  # "plain" or "md5"
    ip: str


def seed_activity(now: datetime) -> list[Activity]:
    """The downloads of ACTIVITY_PLAN up to `now` (the same plan relative to any `now`)."""
    rows: list[Activity] = []
    now_epoch = int(now.timestamp())
    today = epoch_day(now.date()) * DAY
    for list_id, number, every, last in ACTIVITY_PLAN:
        # A fixed time of day per affiliate; a download not yet due today is left out.
        second_of_day = (3 + number) * 3600 + number * 7 * 60 + number
        for days_ago in range(last, ACTIVITY_HISTORY_DAYS + 1, every):
            at = today - days_ago * DAY + second_of_day
            if at <= now_epoch:
                rows.append(_activity(list_id, number, at))
    rows.sort()
    return rows


def _activity(list_id: str, number: int, at: int, **given: str) -> Activity:
    campaign = number % len(CAMPAIGNS)
    return Activity(
        at=at,
        list_id=list_id,
        list_name=given.get("list_name") or LIST_NAMES.get(list_id, ""),
        campaign_id=given.get("campaign_id") or str(4100 + campaign),
        campaign=given.get("campaign") or CAMPAIGNS[campaign],
        affiliate_id=given.get("affiliate_id") or str(7100 + number),
        affiliate=given.get("affiliate") or AFFILIATES[number % len(AFFILIATES)],
        sub_affiliate=given.get("sub_affiliate", SUB_AFFILIATES[number % len(SUB_AFFILIATES)]),
        download_format=given.get("download_format") or ("md5" if number % 2 else "plain"),
        ip=given.get("ip") or IPS[(number * 37) % len(IPS)],
    )


def activity_from_record(record: dict[str, Any], now: datetime) -> Activity:
    """A download from `/_sandbox/add`: `list_id`, `affiliate` ("Affiliate <n>" takes that
    affiliate's campaign and ids), `downloaded_at` (default now) and any other field."""
    list_id = record.get("list_id")
    affiliate = record.get("affiliate")
    if not isinstance(list_id, str) or not isinstance(affiliate, str) or not affiliate:
        raise ValueError("a download needs list_id and affiliate")
    stamp = record.get("downloaded_at")
    at = parse_timestamp(stamp) if stamp else now
    number = AFFILIATES.index(affiliate) if affiliate in AFFILIATES else len(AFFILIATES)
    given = {k: str(v) for k, v in record.items() if k in ACTIVITY_FIELDS and v is not None}
    given["affiliate"] = affiliate
    if "optout_list_name" in given:
        given["list_name"] = given.pop("optout_list_name")
    return _activity(list_id, number, int(at.timestamp()), **given)


def summary(rows: list[Activity]) -> dict[str, Any]:
    """How many downloads are held, and each affiliate's last download of each list."""
    last: dict[str, dict[str, str]] = {}
    for row in rows:
        stamp = _rfc3339(row.at)
        per_list = last.setdefault(row.list_id, {})
        per_list[row.affiliate] = max(per_list.get(row.affiliate, ""), stamp)
    return {"count": len(rows), "last_downloaded": last}


def exported_rows(rows: list[Activity], low: date, high: date, now: datetime) -> list[Activity]:
    """The downloads dated `low`..`high` of the lists last downloaded in the last
    ACTIVITY_MAX_DAYS days, up to `now`."""
    now_epoch = int(now.timestamp())
    recent = (epoch_day(now.date()) - wire.ACTIVITY_MAX_DAYS) * DAY
    last: dict[str, int] = {}
    for row in rows:
        if row.at <= now_epoch:
            last[row.list_id] = max(last.get(row.list_id, 0), row.at)
    start, end = epoch_day(low) * DAY, (epoch_day(high) + 1) * DAY
    return sorted(
        row
        for row in rows
        if start <= row.at < end and row.at <= now_epoch and last[row.list_id] >= recent
    )


def export_file(rows: list[Activity], headers: str, fmt: str, dropped: str | None = None) -> bytes:
    """The export: CSV (or a ZIP of it) with a header row in the `headers` spelling, less
    the `dropped` field's column (a fault)."""
    title = headers == "title"
    keep = [i for i, f in enumerate(ACTIVITY_FIELDS) if f != dropped]
    names = [wire.ACTIVITY_TITLE_HEADERS[f] if title else f for f in ACTIVITY_FIELDS]
    text = io.StringIO()
    writer = csv.writer(text)
    # The title form: a spreadsheet's names, RFC 3339 times, and each affiliate's mailer key
    # (a column the client must not pass on).
    writer.writerow([names[i] for i in keep] + (["Mailer Key"] if title else []))
    for row in rows:
        if title:
            stamp = _rfc3339(row.at)
        else:
            stamp = datetime.fromtimestamp(row.at, UTC).strftime(wire.TIMESTAMP_FORMAT)
        cells = [stamp, *row[1:]]
        writer.writerow([cells[i] for i in keep] + ([f"m-a12-{row.affiliate_id}"] if title else []))
    data = text.getvalue().encode("utf-8")
    if fmt != "zip":
        return data
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("download-activity.csv", data)
    return packed.getvalue()


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
