"""A batch's addresses are staged and merged into the ledger only once every destination has
accepted the batch: before that, another reader of the ledger sees none of them held; a run
that fails records them pending (written again by the next run); a completed batch is held,
and the next run writes nothing of it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from target_optouts.ledger.session import LedgerSession, Target
from target_optouts.ledger.store import Ledger
from target_optouts.normalize import OptOut

STREAM = "optizmo_optouts"
LIST_ID = "list-1"


def _session(url: str) -> LedgerSession:
    session = LedgerSession(Ledger.open(url), dry_run=False)
    session.register(Target("checkmarket", "email", "checkmarket", False))
    session.register(Target("checkmarket", "phone", "checkmarket", False))
    return session


def _optouts(count: int, *, lists: tuple[str, ...] = (LIST_ID,)) -> list[OptOut]:
    return [
        OptOut(
            STREAM,
            email=f"staged-{i}@example.org",
            phone=f"+1555{i:07d}" if i % 3 == 0 else None,
            at=f"2026-01-01T00:00:{i % 60:02d}Z",
            list_id=lists[i % len(lists)],
        )
        for i in range(count)
    ]


def _plan_all(session: LedgerSession, optouts: list[OptOut], part: int = 1000) -> dict[str, int]:
    """Every address's wanted mask, as the destinations would read it."""
    wanted: dict[str, int] = {}
    for start in range(0, len(optouts), part):
        plan = session.plan(STREAM, optouts[start : start + part])
        assert plan is not None
        for kind, values in plan.pending.items():
            for value, mask in values.items():
                wanted[f"{kind}:{value}"] = mask
    return wanted


def _held(url: str, optouts: list[OptOut]) -> list[tuple[int, int, int]]:
    ledger = Ledger.open(url)
    try:
        rows = []
        for optout in optouts:
            row = ledger.address(*ledger.keys.of("email", optout.email))
            rows.append((0, 0, 0) if row is None else (row.present, row.pending, row.rejected))
        return rows
    finally:
        ledger.close()


@pytest.mark.parametrize("presorted", [False, True], ids=["merge-sorts", "presorted"])
@pytest.mark.parametrize("lists", [(LIST_ID,), (LIST_ID, "list-2")])
def test_a_batch_is_held_only_once_accepted_and_then_never_written_again(
    tmp_path: Path, lists: tuple[str, ...], presorted: bool
):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    optouts = _optouts(2500, lists=lists)
    session = _session(url)
    checkmarket = next(iter(session.targets.values())).bit
    first = _plan_all(session, optouts + optouts[:10])  # a repeat in a later part
    assert set(first.values()) == {checkmarket}
    assert _held(url, optouts[:50]) == [(0, 0, 0)] * 50  # staged, not yet in the ledger
    if presorted:
        session.completing(STREAM)  # sorted while the destinations would finish
        session.ledger._sorted_now(session.batches[STREAM].id)
        assert _held(url, optouts[:50]) == [(0, 0, 0)] * 50  # sorted, still not held
    session.completed(STREAM)
    session.close(True)
    held = _held(url, optouts)
    assert all(present & checkmarket and not pending for present, pending, _r in held)
    # The origin list of each address is held too (learned from its own stream).
    assert len({present for present, _p, _r in held}) == len(lists)

    again = _session(url)
    assert set(_plan_all(again, optouts).values()) == {0}
    again.completed(STREAM)
    again.close(True)


def test_a_failed_run_leaves_its_batch_pending_and_the_next_run_writes_it(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    optouts = _optouts(1500)
    session = _session(url)
    checkmarket = next(iter(session.targets.values())).bit
    _plan_all(session, optouts)
    session.close(False)  # the batch was never completed
    for present, pending, _rejected in _held(url, optouts):
        assert not present & checkmarket and pending == checkmarket
        assert present  # the origin list, as its stream said

    again = _session(url)
    assert set(_plan_all(again, optouts).values()) == {checkmarket}
    again.completed(STREAM)
    again.close(True)
    assert all(p & checkmarket and not pend for p, pend, _r in _held(url, optouts))


def test_a_failure_while_the_batch_sorts_records_nothing_as_written(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    optouts = _optouts(3000)
    session = _session(url)
    checkmarket = next(iter(session.targets.values())).bit
    _plan_all(session, optouts)
    batch = session.batches[STREAM].id
    session.completing(STREAM)
    assert batch in session.ledger._sorting  # the sort runs beside the destinations
    session.close(False)  # a destination failed before accepting the batch
    held = _held(url, optouts)
    assert all(
        not present & checkmarket and pending == checkmarket for present, pending, _r in held
    )
    assert not [t for t in threading.enumerate() if t.name.startswith("ledger-sort-")]


def test_refusals_are_traced_through_a_sorted_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Evidence flushed every 500 keys: the first refusal is traced through the staged rows.
    monkeypatch.setattr("target_optouts.ledger.session.FLUSH_KEYS", 500)
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    optouts = _optouts(2000)
    session = _session(url)
    email = next(t for t in session.targets.values() if t.kind == "email")
    _plan_all(session, optouts)
    session.completing(STREAM)
    refused = [optouts[0], optouts[-1]]  # both flushed from memory: found in the sorted rows
    for optout in refused:
        session.refused(STREAM, [email], optout.email, "invalid")
    assert session.batches[STREAM].withheld == 0  # both traced
    session.completed(STREAM)
    session.close(True)
    held = _held(url, optouts)
    for index in (0, len(optouts) - 1):
        present, pending, rejected = held[index]
        assert not present & email.bit and not pending and rejected == email.bit
    assert all(p & email.bit for p, _pend, _r in held[1:-1])


def test_closing_the_ledger_while_a_sort_runs_stops_it_and_records_nothing(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    optouts = _optouts(60_000)
    session = _session(url)
    _plan_all(session, optouts, part=20_000)
    session.completing(STREAM)
    started = time.monotonic()
    session.ledger.close()  # the run ends at once (a signal): the sort is interrupted
    assert time.monotonic() - started < 10
    assert not [t for t in threading.enumerate() if t.name.startswith("ledger-sort-")]
    assert _held(url, optouts[:100]) == [(0, 0, 0)] * 100
