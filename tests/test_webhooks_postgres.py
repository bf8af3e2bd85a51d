"""The webhook receiver on a PostgreSQL ledger (the real server the suite runs): events stored
once, written to every provider, and their clear addresses erased from the inbox once every
destination accepted them."""

from __future__ import annotations

import os

import pytest

from optouts_sandbox import credentials as C
from tests.sandbox_support import control, running_sandbox
from tests.webhooks_support import receiver_config, running_receiver

pytestmark = pytest.mark.timeout(180)


def test_the_inbox_on_postgresql(tmp_path):
    from tests.postgres_support import bin_dir, running_postgres

    if bin_dir() is None:
        message = "PostgreSQL is not installed (as root: apt-get install postgresql)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    with running_postgres() as pg, running_sandbox(size=20) as server:
        pg.create_database("ledger")
        config = receiver_config(server, tmp_path)
        config["ledger_url"] = pg.url("ledger")
        config["ledger_hash_key"] = "ledger-hash-key-" + "p" * 24
        event = {
            "Contact": {
                "ContactId": 5,
                "Email": "pg@example.com",
                "DateOptOut": "2026-12-03T08:00:00Z",
            },
            "WebhookId": 7001,
            "EventName": "Panelist.Optout",
            "Links": [],
        }
        with running_receiver(config, tmp_path) as receiver:
            statuses = [receiver.post("checkmarket", json=event).json()["status"] for _ in "ab"]
            assert statuses == ["stored", "duplicate"]
            lists = lambda: control(server, "inspect")["optizmo"]["lists"]  # noqa: E731
            receiver.wait_for(
                lambda: "pg@example.com" in lists()[C.OPTIZMO_EMAIL_LIST_ID]["emails"],
                what="the opt-out at Optizmo",
            )
            receiver.wait_for(
                lambda: (
                    pg.scalar("ledger", "SELECT count(*) FROM ledger_inbox WHERE done_at IS NULL")
                    == "0"
                ),
                what="the event done",
            )
            assert pg.scalar("ledger", "SELECT count(*) FROM ledger_inbox") == "1"
            assert pg.scalar(
                "ledger", "SELECT count(*) FROM ledger_inbox WHERE email IS NOT NULL"
            ) == ("0")
            assert pg.scalar(
                "ledger",
                "SELECT count(*) FROM ledger_inbox_deliveries WHERE status = 'done'",
            ) == str(len(receiver.health()["workers"]))
