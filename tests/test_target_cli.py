"""target-optouts as a process: STATE lines on stdout, exit codes, the summary on stderr."""

from __future__ import annotations

import json
import re

import pytest

from optouts_providers.optizmo import wire as optizmo_wire
from target_optouts.target import TargetOptouts
from tests.sandbox_support import control
from tests.target_support import (
    SECRETS,
    new_emails,
    new_phones,
    run_cli,
    state,
    stream_messages,
    target_config,
)


def stdout_states(result) -> list[dict]:
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return lines


def assert_no_secret(result) -> None:
    for secret in SECRETS:
        assert secret not in result.stdout
        assert secret not in result.stderr


def summary_json(stderr: str) -> dict:
    match = re.search(r"target-optouts summary json: (\{.*\})", stderr)
    assert match, stderr[-2000:]
    return json.loads(match.group(1))


def test_a_run_writes_emits_state_and_logs_a_summary(sandbox, tmp_path):
    emails, phones = new_emails(3), new_phones(2)
    records = [{"email": e} for e in emails] + [{"phone": p} for p in phones]
    records.append({"email": "broken@"})
    messages = [
        *stream_messages("crm_people", records),
        state({"bookmarks": {"crm_people": {"n": 6}}}),
    ]
    config = target_config(sandbox)

    result = run_cli(config, messages, tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert stdout_states(result) == [{"bookmarks": {"crm_people": {"n": 6}}}]
    assert re.search(
        r"target-optouts summary: checkmarket written=5 already_present=0 skipped_origin=0 "
        r"skipped_channel=0 duplicate=0 known_present=0 rejected=0",
        result.stderr,
    )
    assert "target-optouts summary: slicktext written=2 " in result.stderr
    assert "target-optouts summary: optizmo written=5 " in result.stderr
    assert "target-optouts summary: input rejected=1 " in result.stderr
    summary = summary_json(result.stderr)
    assert summary["destinations"]["slicktext"]["skipped_channel"] == 3
    assert control(sandbox, "stats") == {
        "checkmarket POST": 1,
        "slicktext POST": 2,
        "optizmo-collect POST": 5,
    }
    assert_no_secret(result)


def test_a_failed_batch_stops_the_run_before_its_state(sandbox, tmp_path):
    """STATE 1 follows a written batch and is emitted; the next batch's bulk upload ends
    `failed`, so the run exits non-zero and STATE 2 is never emitted."""
    control(sandbox, "config", {"upload_outcome": "failed"})
    first = new_emails(2, "first")
    md5 = optizmo_wire.hash_value("second.batch@target-tests.example.com")
    messages = [
        *stream_messages("crm_a", [{"email": e} for e in first]),
        state({"n": 1}),
        *stream_messages("crm_b", [{"hashed": md5}]),
        state({"n": 2}),
    ]
    config = target_config(sandbox, ("checkmarket", "optizmo"))

    result = run_cli(config, messages, tmp_path)

    assert result.returncode != 0
    assert stdout_states(result) == [{"n": 1}]
    reference = next(iter(control(sandbox, "inspect")["optizmo"]["imports"]))
    assert f"import {reference} ended failed" in result.stderr
    assert "the batch is not acknowledged" in result.stderr
    assert set(first) <= set(control(sandbox, "inspect")["checkmarket"]["emails"])
    assert_no_secret(result)


def test_a_provider_that_keeps_failing_fails_the_run_without_state(tmp_path):
    from tests.sandbox_support import running_sandbox

    with running_sandbox(error_rate=1.0, error_status=503) as server:
        config = target_config(server, ("checkmarket",), max_retry_wait_seconds=1)
        messages = [*stream_messages("crm", [{"email": new_emails(1)[0]}]), state({"n": 1})]

        result = run_cli(config, messages, tmp_path)

        assert result.returncode != 0
        assert stdout_states(result) == []
        assert "CheckMarket POST /3/contacts/optouts" in result.stderr
        assert control(server, "stats")["checkmarket POST"] >= 1
        assert_no_secret(result)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"checkmarket": {"master_key": "some-master-key"}}, "checkmarket: key is not set"),
        ({"optizmo": {"api_key": "optizmo_api_x"}}, "neither email_list_id nor sms_list_id"),
        ({"optizmo": {"email_list_id": "abc"}}, "optizmo: a list id is set but api_key is not"),
        ({"default_phone_region": "XX"}, "'XX' is not a known region code"),
        (
            {"slicktext": {"api_key": "k-123456", "public_key": "p-1", "private_key": "q-1"}},
            "not both",
        ),
    ],
)
def test_configuration_errors_are_clear(settings, message):
    with pytest.raises(ValueError, match=message) as caught:
        TargetOptouts(config=settings)
    assert "some-master-key" not in str(caught.value)


def test_no_destination_is_a_clear_error_and_a_failed_process(tmp_path):
    result = run_cli({}, stream_messages("s", [{"email": "a@example.com"}]), tmp_path)

    assert result.returncode != 0
    assert "No destination is configured" in result.stderr
    assert result.stdout == ""


def test_about_lists_the_settings(tmp_path):
    import subprocess

    from tests.target_support import TARGET_BIN

    result = subprocess.run(
        [str(TARGET_BIN), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    about = json.loads(result.stdout)
    properties = about["settings"]["properties"]
    for name in ("checkmarket", "slicktext", "optizmo", "dry_run", "skip_origin", "rejects_path"):
        assert name in properties
    assert properties["optizmo"]["properties"]["api_key"].get("secret") is True
