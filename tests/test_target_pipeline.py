"""tap-optouts output fed to target-optouts, both as real processes: every provider ends up
holding what the others held, and the target relays the tap's final STATE."""

from __future__ import annotations

import json
import subprocess

from optouts_sandbox import credentials as C
from tests.sandbox_support import TAP_BIN, control, running_sandbox, tap_config
from tests.target_support import run_cli, target_config


def addresses(messages: list[dict], prefix: str) -> tuple[set[str], set[str]]:
    """(emails, E.164 phones) in the tap's records of streams starting with `prefix`."""
    emails: set[str] = set()
    phones: set[str] = set()
    for message in messages:
        if message["type"] != "RECORD" or not message["stream"].startswith(prefix):
            continue
        record = message["record"]
        email = record.get("Email") or record.get("email")
        phone = record.get("PhoneNumber") or record.get("number")
        plain = record.get("plain")
        if plain and record.get("optout_list_id") == C.OPTIZMO_EMAIL_LIST_ID:
            email = plain
        elif plain:
            phone = "+" + plain
        if email:
            emails.add(email.lower())
        if phone:
            phones.add(phone)
    return emails, phones


def test_tap_output_written_across_providers(tmp_path):
    with running_sandbox(size=60) as server:
        (tmp_path / "tap.json").write_text(json.dumps(tap_config(server)))
        tap = subprocess.run(
            [str(TAP_BIN), "--config", str(tmp_path / "tap.json")],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        messages = [json.loads(line) for line in tap.stdout.splitlines() if line.strip()]
        final_state = [m["value"] for m in messages if m["type"] == "STATE"][-1]
        before = control(server, "inspect")
        cm_emails, cm_phones = addresses(messages, "checkmarket_")
        st_emails, st_phones = addresses(messages, "slicktext_")
        oz_emails, oz_phones = addresses(messages, "optizmo_")
        assert cm_emails and st_phones and oz_emails and oz_phones

        result = run_cli(target_config(server), messages, tmp_path)

        assert result.returncode == 0, result.stderr[-3000:]
        assert [json.loads(line) for line in result.stdout.splitlines()][-1] == final_state
        after = control(server, "inspect")
        cm, st = after["checkmarket"], after["slicktext"]
        assert set(cm["emails"]) == set(before["checkmarket"]["emails"]) | st_emails | oz_emails
        assert set(cm["phones"]) == set(before["checkmarket"]["phones"]) | st_phones | oz_phones
        assert set(st["phones"]) == set(before["slicktext"]["phones"]) | cm_phones | oz_phones
        lists = after["optizmo"]["lists"]
        email_list = set(lists[C.OPTIZMO_EMAIL_LIST_ID]["emails"])
        sms_list = set(lists[C.OPTIZMO_SMS_LIST_ID]["phones"])
        old = before["optizmo"]["lists"]
        assert email_list == set(old[C.OPTIZMO_EMAIL_LIST_ID]["emails"]) | cm_emails | st_emails
        assert sms_list == set(old[C.OPTIZMO_SMS_LIST_ID]["phones"]) | cm_phones | st_phones
