"""Propagation by the webhook receiver (a real process) into the real sandbox: an event
answered 200 survives `kill -9`; a provider that is down keeps its events pending, retried
later and later, while the others receive theirs; and the end-to-end path from the sandbox's
own emitted webhooks (CheckMarket hook registered by `optouts-webhooks register`, SlickText
URLs set by switches, with repeated and reordered deliveries) to every provider."""

from __future__ import annotations

import subprocess
import time

import pytest

from optouts_sandbox import credentials as C
from tests.sandbox_support import control, running_sandbox
from tests.webhooks_support import (
    SECRET,
    TOKEN,
    WEBHOOKS_BIN,
    free_port,
    receiver_config,
    running_receiver,
    start,
)

pytestmark = pytest.mark.timeout(120)


def cm_event(email: str) -> dict:
    return {
        "Contact": {"ContactId": 1, "Email": email, "DateOptOut": "2026-12-03T09:00:00.000Z"},
        "WebhookId": 7001,
        "EventName": "Panelist.Optout",
        "Links": [],
    }


def optizmo_emails(server) -> list[str]:
    return control(server, "inspect")["optizmo"]["lists"][C.OPTIZMO_EMAIL_LIST_ID]["emails"]


def test_an_event_answered_200_is_delivered_after_kill_9_and_restart(tmp_path):
    with running_sandbox(size=20, error_rate=1.0) as server:  # every provider answers 503
        config = receiver_config(server, tmp_path, ("checkmarket", "optizmo"))
        port = free_port()
        receiver = start(config, tmp_path, port)
        try:
            answer = receiver.post("checkmarket", json=cm_event("killed@example.com"))
            assert answer.status_code == 200 and answer.json()["status"] == "stored"
            receiver.wait_for(
                lambda: receiver.health()["workers"]["optizmo"]["failures"] >= 1,
                what="a failed write to Optizmo",
            )
        finally:
            receiver.kill()
        assert "killed@example.com" not in optizmo_emails(server)
        control(server, "config", {"error_rate": 0.0})
        with running_receiver(config, tmp_path, port) as again:
            again.wait_for(
                lambda: "killed@example.com" in optizmo_emails(server),
                timeout=30,
                what="the event delivered after the restart",
            )
            again.wait_for(lambda: again.health()["inbox"]["optizmo"]["pending"] == 0)


def test_a_provider_down_keeps_its_events_pending_and_the_others_receive(tmp_path):
    with running_sandbox(size=20) as server:
        config = receiver_config(server, tmp_path)
        config["slicktext"]["base_url"] = f"http://127.0.0.1:{free_port()}/slicktext"  # nothing
        with running_receiver(config, tmp_path) as receiver:
            phones = ["+13125550161", "+13125550162"]
            for index, phone in enumerate(phones):
                event = cm_event(f"down{index}@example.com")
                event["Contact"] = {"ContactId": 10 + index, "PhoneNumber": phone}
                assert receiver.post("checkmarket", json=event).status_code == 200
            receiver.wait_for(
                lambda: (
                    set(phones)
                    <= set(
                        control(server, "inspect")["optizmo"]["lists"][C.OPTIZMO_SMS_LIST_ID][
                            "phones"
                        ]
                    )
                ),
                what="Optizmo written while SlickText is down",
            )
            receiver.wait_for(
                lambda: receiver.health()["workers"]["slicktext"]["failures"] >= 2,
                timeout=30,
                what="SlickText retried",
            )
            health = receiver.health()
            assert health["inbox"]["slicktext"] == {"pending": 2, "done": 0}
            assert health["inbox"]["optizmo"]["pending"] == 0
            assert health["inbox"]["checkmarket"]["pending"] == 0
            held = control(server, "inspect")["slicktext"]["phones"]
            assert not set(phones) & set(held)
            # Growing delays: two failures in the first seconds, not one per second.
            assert health["workers"]["slicktext"]["failures"] <= 4


def test_the_sandbox_webhooks_reach_every_provider(tmp_path):
    with running_sandbox(size=20, record_writes=True) as server:
        config = receiver_config(server, tmp_path)
        with running_receiver(config, tmp_path) as receiver:
            config_path = tmp_path / "register.json"
            config_path.write_text(__import__("json").dumps(config))
            registered = subprocess.run(
                [
                    str(WEBHOOKS_BIN),
                    "register",
                    "--config",
                    str(config_path),
                    "--public-url",
                    receiver.url,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert registered.returncode == 0, registered.stderr
            assert "registered for Panelist.Optout" in registered.stdout
            assert TOKEN not in registered.stdout + registered.stderr
            hooks = control(server, "webhooks")["hooks"]
            assert list(hooks.values()) == [f"{receiver.url}/webhooks/checkmarket/{TOKEN}"]
            control(
                server,
                "config",
                {
                    "webhook_slicktext_url": f"{receiver.url}/webhooks/slicktext/{TOKEN}",
                    "webhook_slicktext_v2_url": f"{receiver.url}/webhooks/slicktext-v2/{TOKEN}",
                    "webhook_slicktext_secret": SECRET,
                    "webhook_repeat_rate": 1.0,  # every delivery sent twice
                    "webhook_reorder_rate": 0.5,
                    "webhook_reorder_seconds": 0.3,
                },
            )
            control(server, "webhooks", {"clear": True})
            control(
                server,
                "optouts",
                {"provider": "checkmarket", "records": [{"Email": "e2e.cm@example.com"}]},
            )
            control(
                server,
                "optouts",
                {"provider": "slicktext", "records": [{"number": "+13125550171"}]},
            )
            control(
                server,
                "optouts",
                {"provider": "slicktext-v2", "records": [{"mobile_number": "+13125550172"}]},
            )

            def everywhere() -> bool:
                held = control(server, "inspect")
                lists = held["optizmo"]["lists"]
                return (
                    "e2e.cm@example.com" in lists[C.OPTIZMO_EMAIL_LIST_ID]["emails"]
                    and {"+13125550171", "+13125550172"}
                    <= set(lists[C.OPTIZMO_SMS_LIST_ID]["phones"])
                    and {"+13125550171", "+13125550172"} <= set(held["checkmarket"]["phones"])
                )

            receiver.wait_for(everywhere, what="every opt-out at every other provider")

            def done() -> bool:
                return all(c["pending"] == 0 for c in receiver.health()["inbox"].values())

            def settled() -> bool:
                # Echoes (the providers' hooks fire on the receiver's own writes) may still be
                # on their way: done now, and still done a moment later.
                if not done():
                    return False
                time.sleep(1.5)
                return done()

            receiver.wait_for(settled, timeout=40, what="every delivery done, echoes too")
            log = control(server, "webhooks")
            first = {(d["source"], str(d["address"])) for d in log["deliveries"]}
            assert ("checkmarket", "e2e.cm@example.com") in first
            assert ("slicktext", "+13125550171") in first
            assert ("slicktext-v2", "+13125550172") in first
            assert all(d["status"] == 200 for d in log["deliveries"])
            bodies = [body for _at, _prefix, body in log["writes"]]
            # Each written once per destination that lacked it, despite every delivery twice
            # (and the echoes: CheckMarket's hook fires on the receiver's own writes too).
            assert sum("e2e.cm@example.com" in b for b in bodies) == 1
            for phone in ("13125550171", "13125550172"):
                assert sum(phone in b for b in bodies) == 2, (phone, bodies)
            received = receiver.health()["received"]
            assert received.get("checkmarket duplicate", 0) >= 1
            assert received.get("slicktext duplicate", 0) >= 1
        report = subprocess.run(
            [str(WEBHOOKS_BIN.parent / "optouts-ledger"), "--url", config["ledger_url"], "report"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=tmp_path,
        ).stdout
        assert "webhooks received: checkmarket " in report, report
        for destination in ("checkmarket", "optizmo", "slicktext"):
            assert f"webhooks -> {destination}: " in report
        assert "0 pending" in report and "event to written median/p95/max" in report


def test_a_dropped_delivery_never_reaches_the_receiver(tmp_path):
    """The sandbox's `webhook_drop_rate`: the vendor gives up on a delivery (what the polling
    sync is the safety net for); the receiver then has nothing, and writes nothing."""
    with running_sandbox(size=20, record_writes=True) as server:
        config = receiver_config(server, tmp_path, ("checkmarket", "optizmo"))
        with running_receiver(config, tmp_path) as receiver:
            control(
                server,
                "config",
                {
                    "webhook_slicktext_url": f"{receiver.url}/webhooks/slicktext/{TOKEN}",
                    "webhook_slicktext_secret": SECRET,
                    "webhook_drop_rate": 1.0,
                },
            )
            control(
                server,
                "optouts",
                {"provider": "slicktext", "records": [{"number": "+13125550181"}]},
            )
            log = receiver.wait_for(
                lambda: control(server, "webhooks")["deliveries"], what="the delivery logged"
            )
            assert [(d["source"], d["status"]) for d in log] == [("slicktext", "dropped")]
            assert receiver.health()["received"] == {}
            assert control(server, "webhooks")["writes"] == []
