"""The ledger: repeated runs on one persistent sandbox write only what a provider lacks; a lost
or broken ledger costs requests, never an opt-out; nothing is kept in clear; the evidence
(`optouts-ledger trail`, `report`, `reconcile`) says what the sandbox really holds.

Every run is `tap-optouts | target-optouts` as real processes; write requests are counted by
the sandbox (`/_sandbox/stats`)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from optouts_sandbox import credentials as C
from optouts_sandbox.server import SandboxHTTPServer
from tests.pipeline_support import target_writes
from tests.sandbox_support import (
    BIN,
    TAP_BIN,
    TARGET_BIN,
    control,
    missing_from_union,
    run_process,
    running_sandbox,
    tap_config,
)
from tests.target_support import target_config

LEDGER_CLI = [sys.executable, "-m", "target_optouts.ledger.main"]


class Runs:
    """tap | target runs on one sandbox and one ledger, each from the STATE the last left."""

    def __init__(self, server: SandboxHTTPServer, tmp_path: Path, **target: Any) -> None:
        self.server = server
        self.tmp_path = tmp_path
        self.url = target.pop("ledger_url", f"sqlite:///{tmp_path / 'ledger' / 'ledger.sqlite'}")
        self.tap = tap_config(server)
        self.target = target_config(server, ledger_url=self.url, **target)
        self.state: dict[str, Any] | None = None
        self.stderr = ""

    def tap_output(self) -> bytes:
        tap = run_process(TAP_BIN, self.tap, self.tmp_path, state=self.state)
        assert tap.returncode == 0, tap.stderr.decode()[-2000:]
        return tap.stdout

    def once(self, stdin: bytes | None = None, **overrides: Any) -> int:
        """One run; the write requests it made."""
        before = target_writes(self.server)
        stdin = self.tap_output() if stdin is None else stdin
        config = {**self.target, **overrides}
        target = run_process(TARGET_BIN, config, self.tmp_path, stdin=stdin)
        self.stderr = target.stderr.decode()
        assert target.returncode == 0, self.stderr[-3000:]
        lines = [json.loads(line) for line in target.stdout.splitlines() if line.strip()]
        if lines and not overrides.get("dry_run"):
            self.state = lines[-1]
        return target_writes(self.server) - before

    def summary(self) -> dict[str, Any]:
        line = next(
            line for line in self.stderr.splitlines() if "target-optouts summary json: " in line
        )
        return json.loads(line.split("target-optouts summary json: ", 1)[1])

    def ledger(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*LEDGER_CLI, "--url", self.url, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def settle() -> None:
    """Let an opt-out just added fall inside the next run's window: CheckMarket's upper bound
    is the sync start floored to the second (rows added while a list is paged cannot shift
    its pages), so one added in the same second belongs to the run after."""
    time.sleep(1.1)


def stats(server: SandboxHTTPServer) -> dict[str, int]:
    with server.sandbox.stats_lock:
        return dict(server.sandbox.stats)


def test_repeated_runs_write_nothing_and_new_optouts_once_each(tmp_path):
    with running_sandbox(size=300, seed=7) as server:
        runs = Runs(server, tmp_path)
        before = control(server, "inspect")
        first = runs.once()
        assert first > 0
        # SlickText tells per number when it already held one: that is the evidence kept.
        already = runs.summary()["destinations"]["slicktext"]["already_present"]
        assert already > 0
        with sqlite3.connect(tmp_path / "ledger" / "ledger.sqlite") as db:
            kept = db.execute(
                "SELECT sum(e.count) FROM ledger_evidence e JOIN ledger_destinations d "
                "ON d.id = e.destination_id WHERE e.how = 'already' AND d.name = 'slicktext'"
            ).fetchone()[0]
        assert kept == already
        assert missing_from_union(before, control(server, "inspect")) == {}
        # Nothing new anywhere: what run 1 wrote comes back through the tap, and is known.
        assert runs.once() == 0
        assert runs.once() == 0
        known = runs.summary()["destinations"]
        assert all(counts["sent"] == 0 for counts in known.values())
        assert sum(counts["known_present"] for counts in known.values()) > 0

        # k new opt-outs at CheckMarket: each written once to each other destination that
        # carries it, and nothing else (SlickText: one POST per phone; Optizmo: one collect
        # per address, on the email or the SMS list).
        emails = [f"ledger-new-{i}@example.org" for i in range(3)]
        phones = ["+12025550181", "+12025550182"]
        records = [{"Email": e} for e in emails] + [{"PhoneNumber": p} for p in phones]
        control(server, "optouts", {"provider": "checkmarket", "records": records})
        settle()
        counted = stats(server)
        assert runs.once() == len(emails) + 2 * len(phones)
        after = stats(server)
        assert after.get("slicktext POST", 0) - counted.get("slicktext POST", 0) == len(phones)
        collects = after.get("optizmo-collect POST", 0) - counted.get("optizmo-collect POST", 0)
        assert collects == len(emails) + len(phones)
        assert after.get("checkmarket POST", 0) == counted.get("checkmarket POST", 0)
        assert runs.once() == 0


def test_a_deleted_ledger_is_said_once_and_loses_nothing(tmp_path):
    with running_sandbox(size=300, seed=7) as server:
        runs = Runs(server, tmp_path)
        runs.once()
        Path(tmp_path / "ledger" / "ledger.sqlite").unlink()
        control(
            server, "optouts", {"provider": "slicktext", "records": [{"number": "+12025550191"}]}
        )
        settle()
        before = control(server, "inspect")
        assert runs.once() > 0  # written as without a ledger
        warnings = [
            line for line in runs.stderr.splitlines() if "ledger" in line and "missing" in line
        ]
        assert len(warnings) == 1, runs.stderr[-3000:]
        assert missing_from_union(before, control(server, "inspect")) == {}
        assert runs.once() == 0  # the new ledger remembers


def test_a_corrupted_ledger_is_moved_aside_and_loses_nothing(tmp_path):
    with running_sandbox(size=300, seed=7) as server:
        runs = Runs(server, tmp_path)
        runs.once()
        path = tmp_path / "ledger" / "ledger.sqlite"
        for side in ("-wal", "-shm"):
            Path(str(path) + side).unlink(missing_ok=True)
        path.write_bytes(os.urandom(64 * 1024))
        control(
            server,
            "optouts",
            {"provider": "checkmarket", "records": [{"Email": "x-9@example.org"}]},
        )
        settle()
        before = control(server, "inspect")
        assert runs.once() > 0
        warnings = [line for line in runs.stderr.splitlines() if "unreadable" in line]
        assert len(warnings) == 1, runs.stderr[-3000:]
        assert list((tmp_path / "ledger").glob("ledger.sqlite.unreadable-*"))
        assert missing_from_union(before, control(server, "inspect")) == {}
        assert runs.once() == 0


def _addresses(holdings: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for name in ("checkmarket", "slicktext"):
        found |= set(holdings[name]["emails"]) | set(holdings[name]["phones"])
    for listed in holdings["optizmo"]["lists"].values():
        found |= set(listed["emails"]) | set(listed["phones"])
    return found


def _ledger_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


@pytest.mark.parametrize("clear", [False, True])
def test_no_address_is_kept_in_clear_unless_a_setting_says_so(tmp_path, clear):
    with running_sandbox(size=120, seed=3) as server:
        runs = Runs(server, tmp_path, ledger_clear_addresses=clear)
        runs.once()
        addresses = _addresses(control(server, "inspect"))
        stored = _ledger_bytes(tmp_path / "ledger")
        found = [a for a in addresses if a.encode() in stored or a.lstrip("+").encode() in stored]
        if clear:
            assert len(found) > len(addresses) // 2  # the check can see addresses
        else:
            assert found == []


def test_a_dry_run_reads_the_ledger_and_writes_nothing_to_it(tmp_path):
    with running_sandbox(size=120, seed=3) as server:
        runs = Runs(server, tmp_path)
        runs.once()
        path = tmp_path / "ledger" / "ledger.sqlite"
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT count(*) FROM ledger_runs").fetchone()[0]
        assert runs.once(dry_run=True) == 0
        counts = runs.summary()["destinations"]
        assert sum(c["known_present"] for c in counts.values()) > 0
        assert sum(c["would_write"] for c in counts.values()) == 0
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM ledger_runs").fetchone()[0] == rows


def test_a_ledger_newer_than_the_code_is_a_clear_error(tmp_path):
    with running_sandbox(size=50, seed=3) as server:
        runs = Runs(server, tmp_path)
        runs.once()
        path = tmp_path / "ledger" / "ledger.sqlite"
        with sqlite3.connect(path) as db:
            db.execute("UPDATE ledger_meta SET value = '99' WHERE name = 'schema_version'")
        target = run_process(TARGET_BIN, runs.target, tmp_path, stdin=runs.tap_output())
        stderr = target.stderr.decode()
        assert target.returncode != 0
        assert "schema version 99" in stderr
        assert b'"type": "STATE"' not in target.stdout and b'"type":"STATE"' not in target.stdout


def _concurrent(runs: Runs, stdin: bytes) -> list[int]:
    results: list[Any] = []

    def one() -> None:
        completed = run_process(TARGET_BIN, runs.target, runs.tmp_path, stdin=stdin, timeout=180)
        results.append(completed)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r.returncode for r in results]


def _two_targets_at_once(server: SandboxHTTPServer, runs: Runs) -> None:
    stdin = runs.tap_output()
    before = control(server, "inspect")
    alone = Runs(server, runs.tmp_path / "alone", ledger_url="")  # the writes without a ledger
    counted = target_writes(server)
    assert _concurrent(runs, stdin) == [0, 0]
    both = target_writes(server) - counted
    assert missing_from_union(before, control(server, "inspect")) == {}
    # No lost entries: a third run on the same input writes nothing.
    assert runs.once(stdin=stdin) == 0
    # No doubled writes beyond a race's one repeat: at most what two runs without a ledger make.
    (runs.tmp_path / "alone").mkdir(exist_ok=True)
    assert both <= 2 * alone.once(stdin=stdin)


def test_two_targets_at_once_on_one_sqlite_ledger(tmp_path):
    with running_sandbox(size=300, seed=11) as server:
        _two_targets_at_once(server, Runs(server, tmp_path))


def test_two_targets_at_once_on_one_postgresql_ledger(tmp_path):
    from tests.postgres_support import bin_dir, running_postgres

    if bin_dir() is None:
        message = "PostgreSQL is not installed (as root: apt-get install postgresql)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    with running_postgres() as pg, running_sandbox(size=300, seed=11) as server:
        pg.create_database("ledger")
        url = pg.url("ledger")
        key = "ledger-hash-key-" + "k" * 24
        runs = Runs(server, tmp_path, ledger_url=url, ledger_hash_key=key)
        _two_targets_at_once(server, runs)
        assert key not in runs.stderr  # a secret: never logged
        assert int(pg.scalar("ledger", "SELECT count(*) FROM ledger_addresses")) > 0
        # Hashes only in PostgreSQL too.
        assert (
            pg.scalar("ledger", "SELECT count(*) FROM ledger_addresses WHERE clear IS NOT NULL")
            == "0"
        )


def _drop_slicktext(server: SandboxHTTPServer, number: str) -> None:
    """Drift: the provider loses an opt-out behind the ledger's back."""
    emulator: Any = server.sandbox.emulators["slicktext"]
    with emulator.lock:
        emulator.optouts.pop(emulator.by_number.pop(number))
        emulator.changed()


def test_trail_report_and_reconcile_say_what_the_providers_hold(tmp_path):
    with running_sandbox(size=200, seed=5) as server:
        runs = Runs(server, tmp_path)
        phone = "+12025550177"
        control(server, "optouts", {"provider": "checkmarket", "records": [{"PhoneNumber": phone}]})
        settle()
        runs.once()
        held = control(server, "inspect")
        assert phone in held["slicktext"]["phones"]

        trail = json.loads(runs.ledger("trail", "(202) 555-0177", "--format", "json").stdout)
        assert trail["known"] and trail["kind"] == "phone" and trail["address"] == phone
        assert trail["origin"]["destination"] == "checkmarket"
        assert trail["origin"]["opted_out_at"]
        at = trail["destinations"]
        assert at["checkmarket"]["state"] == "held"
        assert at["checkmarket"]["history"][0]["how"] == "seen"
        assert at["slicktext"]["state"] == "held"
        assert [h["how"] for h in at["slicktext"]["history"]] == ["written"]
        assert at["slicktext"]["history"][0]["answer"]["written"] >= 1
        assert at[f"optizmo:{C.OPTIZMO_SMS_LIST_ID}"]["state"] == "held"
        text = runs.ledger("trail", phone)
        assert text.returncode == 0 and "written by target-optouts" in text.stdout
        unknown = json.loads(runs.ledger("trail", "nobody@example.net", "--format", "json").stdout)
        assert unknown["known"] is False

        report = json.loads(runs.ledger("report", "--format", "json").stdout)
        by_name = {row["destination"]: row for row in report["destinations"]}
        everyone = _addresses(held)
        assert report["optouts"] == len(everyone)
        assert by_name["slicktext"]["holds"] == len(held["slicktext"]["phones"])
        assert by_name["slicktext"]["lacks_why"]["cannot_carry"] == len(everyone) - len(
            held["slicktext"]["phones"]
        )
        assert by_name["checkmarket"]["holds"] == len(everyone)
        assert by_name["slicktext"]["latency_seconds"]["count"] > 0
        text = runs.ledger("report")
        assert text.returncode == 0 and "slicktext" in text.stdout and "latency" in text.stdout
        page = tmp_path / "report.html"
        assert runs.ledger("report", "--format", "html", "-o", str(page)).returncode == 0
        content = page.read_text()
        assert (
            content.startswith("<!doctype html>")
            and "<svg" in content
            and "http" not in content.replace("http://www.w3.org/2000/svg", "")
        )

        # Drift: SlickText loses one; an incremental run does not see it; reconcile finds and
        # repairs it.
        _drop_slicktext(server, phone)
        assert runs.once() == 0
        tap_file, target_file = tmp_path / "tap.json", tmp_path / "target.json"
        tap_file.write_text(json.dumps(runs.tap))
        target_file.write_text(json.dumps(runs.target))
        rec = subprocess.run(
            [
                *LEDGER_CLI,
                "reconcile",
                "--tap-config",
                str(tap_file),
                "--target-config",
                str(target_file),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
        )
        assert rec.returncode == 0, rec.stderr[-3000:]
        assert phone in control(server, "inspect")["slicktext"]["phones"]
        report = json.loads(runs.ledger("report", "--format", "json").stdout)
        drift = {row["destination"]: row["drift"] for row in report["destinations"]}
        assert drift["slicktext"] == {"missing_found": 1, "repaired": 1}
        assert "drift: slicktext" in rec.stdout


@pytest.mark.parametrize("flush", [None, 2])
def test_an_address_a_provider_refused_is_never_recorded_as_held(
    sandbox, tmp_path, monkeypatch, flush
):
    """The normaliser keeps out what CheckMarket refuses, so the refusal is driven at the
    destinations with addresses that skipped it. `flush`: the batch's evidence stored every
    two keys (as a big batch's is) instead of at its end."""
    if flush is not None:
        from target_optouts.ledger import session

        monkeypatch.setattr(session, "FLUSH_KEYS", flush)
    from target_optouts.destinations import build_destinations
    from target_optouts.ledger.store import Ledger
    from target_optouts.normalize import OptOut
    from target_optouts.rejects import Rejects

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    config = target_config(sandbox, ("checkmarket",), checkmarket={"batch_size": 4}, ledger_url=url)
    good = [f"refusal-test-{i}@example.org" for i in range(5)]
    optouts = [OptOut("crm", email=e) for e in good[:2]]
    optouts += [OptOut("crm", email="no-at-sign.example.com"), OptOut("crm", phone="+10000000000")]
    optouts += [OptOut("crm", email=e) for e in good[2:]]

    def deliver() -> dict[str, Any]:
        destinations = build_destinations(config, Rejects(None))
        destinations.deliver("crm", optouts)
        destinations.close()
        return destinations.summary()["destinations"]["checkmarket"]

    first = deliver()
    assert (first["written"], first["rejected"]) == (5, 2)
    ledger = Ledger.open(url)
    try:
        for email in good:
            assert ledger.address(*ledger.keys.of("email", email)).present
        refused = ledger.address(*ledger.keys.of("email", "no-at-sign.example.com"))
        assert refused.present == 0 and refused.rejected != 0 and refused.pending == 0
    finally:
        ledger.close()
    report = subprocess.run(
        [*LEDGER_CLI, "--url", url, "report", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    row = json.loads(report.stdout)["destinations"][0]
    assert (row["holds"], row["lacks_why"]["rejected"]) == (5, 2)
    # The next delivery sends only what is not held: the two refused addresses, again.
    again = deliver()
    assert (again["known_present"], again["sent"], again["rejected"]) == (5, 2, 2)
    # The evidence says the same: written for the five, refused for the two.
    trail = json.loads(
        subprocess.run(
            [*LEDGER_CLI, "--url", url, "trail", good[0], "--format", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert [h["how"] for h in trail["destinations"]["checkmarket"]["history"]] == ["written"]
    assert trail["destinations"]["checkmarket"]["history"][0]["answer"]["written"] == 5
    refused_trail = json.loads(
        subprocess.run(
            [*LEDGER_CLI, "--url", url, "trail", "+10000000000", "--format", "json"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        or "{}"
    )
    if refused_trail.get("known"):
        hows = [h["how"] for h in refused_trail["destinations"]["checkmarket"]["history"]]
        assert "written" not in hows and "rejected" in hows
