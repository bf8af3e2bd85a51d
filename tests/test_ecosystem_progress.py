"""Progress a person can follow, from the real processes: per-stream record counts as they go,
Optizmo download and upload progress (bytes, polls, status), throttle waits, and a summary at
the end whose counts are the records actually emitted. OPTOUTS_PROGRESS_SECONDS=0 makes every
check log, so the lines are there whatever the machine's speed."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from optouts_sandbox import credentials as C
from tests.sandbox_support import (
    control,
    run_cli,
    running_sandbox,
    slicktext_v2_settings,
    tap_config,
)
from tests.target_support import SECRETS, new_emails, stream_messages, target_config
from tests.target_support import run_cli as run_target_cli

EVERY_CHECK = {"OPTOUTS_PROGRESS_SECONDS": "0"}
LINE = re.compile(r"\| (?:tap-optouts|optouts\.\w+)[^|]*\| (.*)$")


def _messages(stderr: str) -> list[str]:
    """The log messages (the text after the logger name) of a tap or target run."""
    return [m.group(1) for line in stderr.splitlines() if (m := LINE.search(line))]


def _fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", text))


@pytest.fixture(scope="module")
def tap_run(tmp_path_factory):
    """One tap run over a larger sandbox: downloads that need polls, and a SlickText new-API
    window small enough to be spent."""
    tmp = tmp_path_factory.mktemp("progress")
    limits = {"slicktext-v2": {"per_second": 100, "per_window": 4, "window_seconds": 1}}
    with running_sandbox(size=3000, download_delay_seconds=0.3, rate_limits=limits) as server:
        config = tap_config(server)
        config["slicktext"] = {**slicktext_v2_settings(server), "page_size": 250}
        run = run_cli("tap-optouts", config, tmp, env=EVERY_CHECK, timeout=240)
        held = control(server, "inspect")
    assert run.returncode == 0, run.stderr[-4000:]
    return run, _messages(run.stderr), held


def test_record_counts_as_they_go_end_in_the_records_emitted(tap_run):
    run, messages, _ = tap_run
    emitted = Counter(m["stream"] for m in run.messages if m["type"] == "RECORD")
    ticks: dict[str, list[int]] = {}
    done: dict[str, int] = {}
    for message in messages:
        found = re.match(r"tap-optouts progress: (.+?) (done )?records=(\d+)", message)
        if found:
            where, finished, records = found.group(1), found.group(2), int(found.group(3))
            if finished:
                done[where] = records
            else:
                ticks.setdefault(where, []).append(records)
    by_stream: Counter[str] = Counter()
    for where, records in done.items():
        by_stream[where.split()[0]] += records
    assert by_stream == emitted
    assert len(done) == 4  # checkmarket, slicktext, and the two Optizmo lists
    # At this pace, a line at every 1,024th record of each partition: the count as it grew.
    for where, records in done.items():
        assert ticks.get(where, []) == list(range(1024, records + 1, 1024)), where
    assert ticks, "no partition reached 1,024 records: make the sandbox larger"


def test_summary_at_the_end_counts_what_was_emitted(tap_run):
    run, messages, _ = tap_run
    emitted = Counter(m["stream"] for m in run.messages if m["type"] == "RECORD")
    summary = [m for m in messages if m.startswith("tap-optouts summary json: ")]
    assert len(summary) == 1 and messages[-1] == summary[0]
    data = json.loads(summary[0].split(": ", 1)[1])
    assert data["status"] == "succeeded"
    assert {name: s["records"] for name, s in data["streams"].items()} == dict(emitted)
    assert data["records"] == sum(emitted.values())
    assert data["streams"]["optizmo_optouts"]["partitions"] == 2
    lines = {
        m.split()[2]: _fields(m)
        for m in messages
        if m.startswith("tap-optouts summary: ") and " total " not in m
    }
    assert {name: int(f["records"]) for name, f in lines.items()} == dict(emitted)
    assert all(int(f["requests"]) > 0 for f in lines.values())


def test_optizmo_download_progress_reports_polls_bytes_and_status(tap_run):
    run, messages, held = tap_run
    for list_id in (C.OPTIZMO_EMAIL_LIST_ID, C.OPTIZMO_SMS_LIST_ID):
        lines = [m for m in messages if m.startswith(f"optizmo download: list={list_id} ")]
        statuses = [_fields(m)["status"] for m in lines]
        assert statuses[0] == "prepared" and statuses[-1] == "done", statuses
        waiting = statuses.count("waiting")
        ready = [_fields(m) for m in lines if "status=ready" in m]
        assert waiting >= 1 and len(ready) == 1
        # Every poll is logged at this pace: the 404s, then the one that found the file.
        assert int(ready[0]["polls"]) == waiting + 1
        chunks = [int(_fields(m)["bytes"]) for m in lines if "status=downloading" in m]
        final = _fields(lines[-1])
        assert chunks == sorted(chunks) and chunks[-1] == int(final["bytes"]) > 0
        records = [r for r in run.records("optizmo_optouts") if r["optout_list_id"] == list_id]
        assert int(final["rows"]) == held["optizmo"]["lists"][list_id]["count"]
        assert len(records) <= int(final["rows"])


def test_throttle_waits_are_logged_and_counted(tap_run):
    _, messages, _ = tap_run
    waits = [_fields(m) for m in messages if m.startswith("SlickText (new API) throttle: ")]
    assert waits, "no throttle wait logged for a 4-requests-a-second window"
    assert all(
        f["reason"] == "rate_limit_window" and float(f["waiting_seconds"]) > 0 for f in waits
    )
    summary = next(m for m in messages if m.startswith("tap-optouts summary: slicktext_optouts"))
    assert float(_fields(summary)["throttled_seconds"]) > 0


def test_progress_lines_carry_no_secret(tap_run):
    run, _, _ = tap_run
    for secret in SECRETS:
        assert secret not in run.stderr


def test_optizmo_upload_progress_reports_bytes_polls_and_status(tmp_path, monkeypatch):
    """target-optouts bulk-uploading to Optizmo: spooled, uploaded, running polls, success."""
    monkeypatch.setenv(*next(iter(EVERY_CHECK.items())))
    emails = new_emails(3, "progress")
    with running_sandbox(upload_processing_seconds=0.3) as server:
        config = target_config(
            server, ("optizmo",), optizmo={"bulk_threshold": 1, "poll_interval_seconds": 0.02}
        )
        result = run_target_cli(
            config, stream_messages("crm_people", [{"email": e} for e in emails]), tmp_path
        )
        held = control(server, "inspect")["optizmo"]["lists"][C.OPTIZMO_EMAIL_LIST_ID]
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(emails) <= set(held["emails"])
    lines = [
        _fields(m)
        for m in _messages(result.stderr)
        if m.startswith(f"optizmo upload: list={C.OPTIZMO_EMAIL_LIST_ID} ")
    ]
    statuses = [f["status"] for f in lines]
    assert statuses[:2] == ["spooled", "uploaded"] and statuses[-1] == "success", statuses
    size = sum(len(e) + 1 for e in emails)  # one address and a newline per line
    assert (lines[0]["lines"], lines[0]["bytes"], lines[1]["bytes"]) == ("3", str(size), str(size))
    reference = lines[1]["import_reference"]
    running = [f for f in lines if f["status"] == "running"]
    assert running and all(f["import_reference"] == reference for f in running)
    final = lines[-1]
    assert final["import_reference"] == reference
    assert int(final["polls"]) == len(running) + 1
    assert (final["added"], final["malformed"], final["submitted"]) == ("3", "0", "3")
    for secret in SECRETS:
        assert secret not in result.stderr
