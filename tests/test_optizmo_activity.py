"""Optizmo's download-activity export (who downloaded which list, when), against the sandbox as
a real HTTP server: every answer form and file form the client accepts, the 90-day reach,
missing columns, and the tap stream `optizmo_download_activity` run as a real process."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from optouts_providers.http import ProviderError
from optouts_providers.optizmo import wire
from optouts_sandbox import credentials as C
from optouts_sandbox.optizmo.lists import AFFILIATES
from tests.optizmo_support import client_for, emulator
from tests.sandbox_support import control, run_cli, run_process, running_sandbox, tap_config

STREAM = "optizmo_download_activity"
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
LISTS_IN_EXPORT = {C.OPTIZMO_EMAIL_LIST_ID, C.OPTIZMO_SMS_LIST_ID}  # the spare: > 90 days


def read_activity(server, start: datetime = EPOCH, end: datetime | None = None) -> list[dict]:
    client = client_for(server)
    return list(
        client.iter_download_activity(
            start,
            end or datetime.now(UTC),
            poll_interval_seconds=0.02,
            download_timeout_seconds=10,
        )
    )


def expected(server, start: datetime, end: datetime) -> set[tuple[str, str, str]]:
    """(list, affiliate, downloaded_at) of every download the export must hold."""
    return {
        (row.list_id, row.affiliate, datetime.fromtimestamp(row.at, UTC).isoformat())
        for row in emulator(server).activity
        if row.list_id in LISTS_IN_EXPORT and start.timestamp() <= row.at < end.timestamp()
    }


def seen(records: list[dict]) -> set[tuple[str, str, str]]:
    return {
        (
            r["optout_list_id"],
            r["affiliate"],
            datetime.fromisoformat(r["downloaded_at"]).isoformat(),
        )
        for r in records
    }


@pytest.mark.parametrize(
    ("answer", "download_format", "headers"),
    [
        ("redirect", "csv", "snake"),
        ("redirect", "zip", "title"),
        ("json", "csv", "title"),
        ("json", "zip", "snake"),
        ("file", "csv", "title"),
        ("file", "zip", "snake"),
    ],
)
def test_every_answer_and_file_form_gives_the_same_downloads(answer, download_format, headers):
    switches = {
        "optizmo_activity_answer": answer,
        "download_format": download_format,
        "optizmo_activity_headers": headers,
        "download_delay_seconds": 0.2,  # the link answers 404 first
    }
    with running_sandbox(size=20, **switches) as server:
        end = datetime.now(UTC)
        records = read_activity(server, end - timedelta(days=60), end)
        stats = control(server, "stats")
        credentials_at_storage = emulator(server).storage_credential_headers
    assert seen(records) == expected(server, end - timedelta(days=60), end)
    assert len(records) == len({r["activity_id"] for r in records})
    first = next(r for r in records if r["affiliate"] == AFFILIATES[0])
    assert first["campaign"] and first["campaign_id"] and first["affiliate_id"] == "7100"
    assert first["optout_list_name"] and first["download_format"] in ("plain", "md5")
    assert all(set(r) == set(wire.ACTIVITY_COLUMNS) | {"activity_id"} for r in records)
    # The title form also carries each affiliate's mailer key: never passed on.
    assert not any("m-a12-" in json.dumps(r) for r in records)
    assert credentials_at_storage == 0
    if answer != "file":
        assert stats.get("optizmo activity:not-ready", 0) >= 1


def test_a_start_older_than_90_days_is_moved_up_to_what_the_export_holds(caplog):
    """The sandbox refuses a `from` more than 90 days back (400), so a first run (no
    bookmark) only succeeds because the client moves it up; a list last downloaded longer
    ago than that is not in the export at all."""
    with running_sandbox(size=20) as server:
        end = datetime.now(UTC)
        with caplog.at_level(logging.INFO, logger="optouts.optizmo"):
            records = read_activity(server, EPOCH, end)
    earliest = end - timedelta(days=wire.ACTIVITY_MAX_DAYS)
    assert seen(records) == expected(server, earliest, end)
    assert {r["optout_list_id"] for r in records} == LISTS_IN_EXPORT
    assert "the export holds the last 90 days only" in caplog.text


def test_an_export_without_a_time_column_is_a_clear_error():
    with (
        running_sandbox(size=20, optizmo_file_fault="drop_column:downloaded_at") as server,
        pytest.raises(ProviderError, match=r"lacks the column\(s\) downloaded_at"),
    ):
        read_activity(server)


# -- the tap stream ----------------------------------------------------------------------------
def discover(config: dict, tmp_path) -> dict:
    done = run_process("tap-optouts", config, tmp_path, args=("--discover",))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout)


def selecting(catalog: dict, stream: str) -> dict:
    """`catalog` with only `stream` selected."""
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if not item["breadcrumb"]:
                item["metadata"]["selected"] = entry["tap_stream_id"] == stream
    return catalog


def test_the_stream_is_offered_but_not_selected_by_default(tmp_path):
    with running_sandbox(size=20) as server:
        config = tap_config(server, providers=("optizmo",))
        discovered = discover(config, tmp_path)
        run = run_cli("tap-optouts", config, tmp_path)
        stats = control(server, "stats")
    entry = next(e for e in discovered["streams"] if e["tap_stream_id"] == STREAM)
    root = next(m["metadata"] for m in entry["metadata"] if not m["breadcrumb"])
    assert root["selected-by-default"] is False
    assert entry["key_properties"] == ["activity_id"]
    assert root["valid-replication-keys"] == ["downloaded_at"]
    assert run.returncode == 0, run.stderr
    assert not run.records(STREAM) and run.records("optizmo_optouts")
    assert stats.get("optizmo GET", 0) == len(config["optizmo"]["list_ids"])  # the files only


def test_selected_it_reads_incrementally_on_downloaded_at(tmp_path):
    with running_sandbox(size=20) as server:
        config = tap_config(server, providers=("optizmo",))
        catalog_path = tmp_path / "catalog.json"
        catalog_path.write_text(json.dumps(selecting(discover(config, tmp_path), STREAM)))
        args = ("--catalog", str(catalog_path))
        first = run_cli("tap-optouts", config, tmp_path, args=args)
        assert first.returncode == 0, first.stderr
        held = control(server, "inspect")["optizmo"]["download_activity"]
        # After every seeded download (none is due in the second the sandbox was seeded),
        # before the second run's sync start.
        late = datetime.now(UTC).replace(microsecond=0)
        control(
            server,
            "optouts",
            {
                "provider": "optizmo",
                "records": [
                    {
                        "kind": "download_activity",
                        "list_id": C.OPTIZMO_EMAIL_LIST_ID,
                        "affiliate": AFFILIATES[6],
                        "downloaded_at": late.isoformat(),
                    }
                ],
            },
        )
        second = run_cli(
            "tap-optouts", config, tmp_path, args=args, state=first.last_state, timeout=60
        )
    assert second.returncode == 0, second.stderr
    records = first.records(STREAM)
    assert not first.records("optizmo_optouts")
    bookmark = first.last_state["bookmarks"][STREAM]["replication_key_value"]
    assert bookmark == max(r["downloaded_at"] for r in records)
    # The CAN-SPAM question, from the records: each affiliate's last download of each list.
    last: dict[str, dict[str, str]] = {}
    for r in records:
        per_list = last.setdefault(r["optout_list_id"], {})
        per_list[r["affiliate"]] = max(per_list.get(r["affiliate"], ""), r["downloaded_at"])
    truth = {k: v for k, v in held["last_downloaded"].items() if k in LISTS_IN_EXPORT}
    assert {k: {a: datetime.fromisoformat(t) for a, t in v.items()} for k, v in last.items()} == {
        k: {a: datetime.fromisoformat(t) for a, t in v.items()} for k, v in truth.items()
    }
    # Affiliates that have not downloaded the list in 10 days (ACTIVITY_PLAN: 20 and 40).
    cutoff = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    stale = {a for a, t in last[C.OPTIZMO_EMAIL_LIST_ID].items() if t < cutoff}
    assert stale == {AFFILIATES[5], AFFILIATES[6]}
    # The second run: what came after the bookmark (and the rows equal to it), nothing older.
    again = second.records(STREAM)
    assert {r["affiliate"] for r in again if r["downloaded_at"] > bookmark} == {AFFILIATES[6]}
    assert all(r["downloaded_at"] >= bookmark for r in again)
