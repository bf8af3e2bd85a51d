"""The webhook receiver's answers, as a real process on loopback beside the real sandbox:
signed, forged, wrong-token, repeated, malformed and oversized deliveries; what is stored and
written for each, and that no answer or log line holds the token or the secret."""

from __future__ import annotations

import json
import sqlite3
from urllib.parse import urlencode

import pytest

from optouts_providers.slicktext import webhooks as st_hooks
from tests.sandbox_support import control, running_sandbox
from tests.webhooks_support import SECRET, TOKEN, receiver_config, running_receiver

pytestmark = pytest.mark.timeout(120)

CM_EVENT = {
    "Contact": {
        "ContactId": 4242,
        "Email": " Jane.Webhook@Example.com ",
        "DateOptOut": "2026-12-03T10:00:00.033Z",
        "FirstName": "Jane",
    },
    "WebhookId": 7001,
    "EventName": "Panelist.Optout",
    "Links": [],
}


def legacy_event(number: str, attempt: int = 1) -> str:
    subscriber = {
        "SubscriberId": "658445349",
        "Number": number,
        "Email": "",
        "DateOptedOut": "2026-12-03 02:00:00",
    }
    return json.dumps(st_hooks.legacy_event(subscriber, "2026-12-03 02:00:01", attempt))


def signed_form(event: str, *, whole_body: bool = False, secret: str = SECRET) -> dict:
    body = st_hooks.legacy_body(event)
    signed = body if whole_body else event.encode()
    return {
        "data": body,
        "headers": {
            "Content-Type": "application/x-www-form-urlencoded",
            st_hooks.SIGNATURE_HEADER: st_hooks.signature(secret, signed),
        },
    }


def v2_envelope(number: str, status: str, name: str = "contact_updated") -> dict:
    return {
        "id": "65a1f0c2b3d4e5f6a7b8c9d0",
        "name": name,
        "url": "https://example.invalid/hook",
        "attempts": 1,
        "date": "2026-12-03 02:10:00",
        "data": {
            "contact_id": 9100001,
            "mobile_number": number,
            "opt_in_status": status,
            "last_opt_in_status_change": "2026-12-03 02:10:00",
        },
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webhooks")
    with (
        running_sandbox(size=20, record_writes=True) as server,
        running_receiver(receiver_config(server, tmp), tmp) as receiver,
    ):
        receiver.ledger = tmp / "ledger.sqlite"
        yield server, receiver


def writes(server) -> list[str]:
    return [body for _at, _prefix, body in control(server, "webhooks")["writes"]]


def test_wrong_token_missing_signature_and_malformed_store_nothing(world):
    server, receiver = world
    control(server, "webhooks", {"clear": True})
    before = receiver.health()["inbox"]
    wrong = "x" * len(TOKEN)
    answers = [
        receiver.post("checkmarket", token=wrong, json=CM_EVENT),
        receiver.post("slicktext-v2", token=wrong, json=v2_envelope("+13125550101", "blocked")),
        receiver.post("slicktext", **signed_form(legacy_event("+13125550102"), secret="forged")),
        receiver.post("slicktext", data=st_hooks.legacy_body(legacy_event("+13125550103"))),
        receiver.post("checkmarket", data=b"{not json"),
        receiver.post("checkmarket", json={"EventName": "Panelist.Optout"}),
        receiver.post("slicktext-v2", json=["not", "an", "envelope"]),
        receiver.post(
            "slicktext",
            data=urlencode({"other": "x"}).encode(),
            headers={st_hooks.SIGNATURE_HEADER: "00"},
        ),
        receiver.post("checkmarket", data=b"{" + b" " * 70_000 + b"}"),
        # The event, but no usable address in it: answered 200 (a retry would not fix it).
        receiver.post(
            "checkmarket", json={**CM_EVENT, "Contact": {"ContactId": 1, "Email": "not@"}}
        ),
    ]
    assert [a.status_code for a in answers] == [404, 404, 401, 401, 400, 400, 400, 401, 413, 200]
    assert answers[-1].json() == {"status": "rejected"}
    for answer in answers:
        assert TOKEN not in answer.text and SECRET not in answer.text
    assert receiver.health()["inbox"] == before
    assert writes(server) == []


def test_signed_legacy_deliveries_both_forms_are_stored_and_written_once(world):
    server, receiver = world
    control(server, "webhooks", {"clear": True})
    event = legacy_event("+1 (312) 555-0142")
    first = receiver.post("slicktext", **signed_form(event))
    retry = receiver.post("slicktext", **signed_form(legacy_event("+13125550142", attempt=2)))
    whole = receiver.post("slicktext", **signed_form(event, whole_body=True))
    assert [a.json()["status"] for a in (first, retry, whole)] == [
        "stored",
        "duplicate",
        "duplicate",
    ]
    receiver.wait_for(
        lambda: "+13125550142" in control(server, "inspect")["checkmarket"]["phones"],
        what="the SlickText opt-out at CheckMarket",
    )
    receiver.wait_for(lambda: not _pending(receiver), what="every delivery done")
    bodies = writes(server)
    # Once to CheckMarket and once to Optizmo's SMS list; never back to SlickText.
    assert sum("13125550142" in body for body in bodies) == 2, bodies
    assert not any("action=OPTOUT" in body for body in bodies)


def test_checkmarket_and_new_api_events_and_their_repeats(world):
    server, receiver = world
    control(server, "webhooks", {"clear": True})
    answers = [
        receiver.post("checkmarket", json=CM_EVENT),
        receiver.post("checkmarket", json=CM_EVENT),
        receiver.post("checkmarket", json={**CM_EVENT, "EventName": "Respondent.Complete"}),
        receiver.post("slicktext-v2", json=v2_envelope("+14155550177", "unsubscribed")),
        receiver.post("slicktext-v2", json=v2_envelope("+14155550177", "unsubscribed")),
        receiver.post("slicktext-v2", json=v2_envelope("+14155550178", "subscribed")),
        receiver.post("slicktext-v2", json=v2_envelope("+14155550179", "blocked", "list_added")),
    ]
    assert [a.status_code for a in answers] == [200] * 7
    assert [a.json()["status"] for a in answers] == [
        "stored",
        "duplicate",
        "ignored",
        "stored",
        "duplicate",
        "ignored",
        "ignored",
    ]
    receiver.wait_for(lambda: not _pending(receiver), what="every delivery done")
    held = control(server, "inspect")
    assert "jane.webhook@example.com" in held["optizmo"]["lists"]["901fad4c46a1e723"]["emails"]
    assert "+14155550177" in held["checkmarket"]["phones"]
    assert "+14155550177" in held["optizmo"]["lists"]["5c2e8b1f0d3a7e94"]["phones"]
    bodies = writes(server)
    # An email goes to Optizmo only (SlickText carries phones); a SlickText phone (either API:
    # one provider, skip_origin) to CheckMarket and Optizmo.
    assert sum("jane.webhook@example.com" in body for body in bodies) == 1
    assert sum("14155550177" in body for body in bodies) == 2
    assert not any("14155550178" in body or "14155550179" in body for body in bodies)
    # Every destination accepted every event: no clear address is left in the inbox.
    with sqlite3.connect(receiver.ledger) as db:
        left = db.execute(
            "SELECT count(*) FROM ledger_inbox WHERE email IS NOT NULL OR phone IS NOT NULL"
        ).fetchone()[0]
        done = db.execute("SELECT count(*) FROM ledger_inbox WHERE done_at IS NOT NULL").fetchone()
    assert left == 0 and done[0] >= 2
    # Overwritten, not only unlinked: once the write-ahead log is checkpointed, the file holds
    # no trace of the address (the ledger keeps its keyed hash).
    with sqlite3.connect(receiver.ledger) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for path in receiver.ledger.parent.glob("ledger.sqlite*"):
        assert b"jane.webhook@example.com" not in path.read_bytes(), path.name


def test_no_secret_in_the_receiver_output(world):
    _server, receiver = world
    output = receiver.output()
    assert "listening on" in output
    for secret in (TOKEN, SECRET):
        assert secret not in output


def _pending(receiver) -> int:
    return sum(counts["pending"] for counts in receiver.health()["inbox"].values())
