"""The webhook receiver's inbox, in the ledger's store: events stored before they are answered,
then delivered to each destination on its own (`optouts_webhooks.propagate`).

- `store` commits an event and one pending delivery per destination in one transaction, or
  nothing when the event is there already: a provider's retry carries the same event id
  (`event_key`), or the same address, event and time (`content_key`); either makes it a
  duplicate. The content key holds the address's ledger key, never the address.
- The clear addresses are kept in the row only while some destination still lacks the event:
  once the last one accepted it, they are erased (the keys stay, for the trail and the
  report).
- A destination that fails keeps its deliveries pending, each retried later and later
  (`retry_delay`); the other destinations' deliveries do not wait for it.
- `delivered` also records, in the same transaction, that the destination holds each
  address it accepted (its bit in `ledger_addresses.present`): the destinations are written by
  concurrent sessions, whose batches may overlap on an address.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from optouts_providers.timeutil import parse_timestamp
from target_optouts.ledger import tables as T
from target_optouts.ledger.store import Ledger
from target_optouts.normalize import OptOut, origin_provider

FIRST_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 600.0


def retry_delay(attempts: int) -> float:
    """Seconds before the next try of a delivery that failed `attempts` times: 2, 4, 8, ...
    up to ten minutes."""
    return min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Pending:
    """One delivery due: the inbox row's id, and the opt-out it carries."""

    id: int
    optout: OptOut
    keys: dict[str, tuple[int, int]]  # per kind (email, phone): the ledger key
    attempts: int


class Inbox:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.engine = ledger.engine
        self.keys = ledger.keys
        self.postgres = ledger.postgres
        if not self.postgres and not getattr(self.engine, "_inbox_secure_delete", False):
            # An erased clear address is overwritten in the file, not only unlinked (the
            # inbox's connections are the pool's, opened from now on).
            sa.event.listen(self.engine, "connect", _secure_delete)
            self.engine._inbox_secure_delete = True  # type: ignore[attr-defined]
            self.engine.pool.dispose()

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql if self.postgres else sqlite).insert(table)

    def store(
        self,
        *,
        source: str,
        optout: OptOut,
        event: str,
        event_id: str | None,
        destinations: Sequence[str],
        received_at: float | None = None,
    ) -> int | None:
        """Commit the event and its pending deliveries; its id, or None for a duplicate."""
        now = time.time() if received_at is None else received_at
        keys = self.address_keys(optout)
        first = keys.get("email") or keys.get("phone")
        family = origin_provider(optout.stream) or source
        content_key = f"{family}:{event}:{first[0] if first else ''}:{optout.at or ''}"
        values = {
            "source": source,
            "stream": optout.stream,
            "event_key": f"{source}:{event_id}" if event_id else None,
            "content_key": content_key,
            "received_at": now,
            "origin_at": optout.at,
            "email": optout.email,
            "phone": optout.phone,
        }
        for kind in ("email", "phone"):
            hi, lo = keys.get(kind, (None, None))
            values[f"{kind}_hi"], values[f"{kind}_lo"] = hi, lo
        statement = self._insert(T.inbox).values(**values).on_conflict_do_nothing()
        with self.engine.begin() as conn:
            found = conn.execute(statement.returning(T.inbox.c.id)).first()
            if found is None:
                return None
            inbox_id = int(found[0])
            if destinations:
                conn.execute(
                    T.inbox_deliveries.insert(),
                    [
                        {
                            "inbox_id": inbox_id,
                            "destination": name,
                            "status": "pending",
                            "attempts": 0,
                            "next_try": now,
                        }
                        for name in destinations
                    ],
                )
            else:
                conn.execute(
                    T.inbox.update()
                    .where(T.inbox.c.id == inbox_id)
                    .values(done_at=now, email=None, phone=None)
                )
        return inbox_id

    def address_keys(self, optout: OptOut) -> dict[str, tuple[int, int]]:
        out = {}
        if optout.email:
            out["email"] = self.keys.of("email", optout.email)
        if optout.phone:
            out["phone"] = self.keys.of("phone", optout.phone)
        return out

    def due(self, destination: str, *, limit: int, now: float | None = None) -> list[Pending]:
        """The destination's deliveries due now, oldest event first."""
        i, d = T.inbox.c, T.inbox_deliveries.c
        query = (
            sa.select(
                i.id,
                i.stream,
                i.email,
                i.phone,
                i.origin_at,
                i.email_hi,
                i.email_lo,
                i.phone_hi,
                i.phone_lo,
                d.attempts,
            )
            .join(T.inbox_deliveries, d.inbox_id == i.id)
            .where(d.destination == destination, d.status == "pending")
            .where(d.next_try <= (time.time() if now is None else now))
            .order_by(i.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
        out = []
        for row in rows:
            keys = {}
            if row.email_hi is not None:
                keys["email"] = (row.email_hi, row.email_lo)
            if row.phone_hi is not None:
                keys["phone"] = (row.phone_hi, row.phone_lo)
            optout = OptOut(row.stream, row.email, row.phone, at=row.origin_at)
            out.append(Pending(row.id, optout, keys, row.attempts))
        return out

    def next_try(self, destination: str) -> float | None:
        """When the destination's next pending delivery is due (None: none is pending)."""
        d = T.inbox_deliveries.c
        query = sa.select(sa.func.min(d.next_try)).where(
            d.destination == destination, d.status == "pending"
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else float(found)

    def delivered(
        self,
        destination: str,
        ids: Sequence[int],
        held: Iterable[tuple[int, int, int]] = (),
        now: float | None = None,
    ) -> None:
        """The destination accepted these events: done, and `held` ((hi, lo, bit): an address
        the destination now holds) recorded. An event every destination accepted loses its
        clear addresses."""
        if not ids:
            return
        now = time.time() if now is None else now
        i, d, a = T.inbox.c, T.inbox_deliveries.c, T.addresses.c
        with self.engine.begin() as conn:
            conn.execute(
                T.inbox_deliveries.update()
                .where(d.destination == destination, d.inbox_id.in_(list(ids)))
                .values(status="done", written_at=now, error=None)
            )
            for hi, lo, bit in held:
                conn.execute(
                    T.addresses.update()
                    .where(a.id == hi, a.lo == lo)
                    .values(
                        present=a.present.op("|")(bit),
                        pending=a.pending.op("&")(~bit),
                        rejected=a.rejected.op("&")(~bit),
                    )
                )
            still = sa.select(d.inbox_id).where(d.inbox_id == i.id, d.status == "pending").exists()
            conn.execute(
                T.inbox.update()
                .where(i.id.in_(list(ids)), ~still)
                .values(done_at=now, email=None, phone=None)
            )

    def failed(self, destination: str, ids: Sequence[int], error: str) -> float:
        """The destination did not accept these events: each is tried again later (longer
        after each failure). Returns the earliest next try."""
        now = time.time()
        d = T.inbox_deliveries.c
        earliest = now + MAX_RETRY_SECONDS
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(d.inbox_id, d.attempts).where(
                    d.destination == destination, d.inbox_id.in_(list(ids))
                )
            )
            for inbox_id, attempts in list(rows):
                next_try = now + retry_delay(attempts + 1)
                earliest = min(earliest, next_try)
                conn.execute(
                    T.inbox_deliveries.update()
                    .where(d.destination == destination, d.inbox_id == inbox_id)
                    .values(attempts=attempts + 1, next_try=next_try, error=error[:500])
                )
        return earliest

    def counts(self) -> dict[str, dict[str, int]]:
        """Per destination: deliveries pending and done."""
        d = T.inbox_deliveries.c
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.destination, d.status, sa.func.count()).group_by(
                    d.destination, d.status
                )
            )
            for name, status, count in rows:
                out.setdefault(name, {"pending": 0, "done": 0})[status] = int(count)
        return out

    def latencies(self) -> list[tuple[str, str, str | None, float, float]]:
        """Per delivery written: (source, destination, origin time, received at, written
        at), for the report and the benchmark."""
        i, d = T.inbox.c, T.inbox_deliveries.c
        query = (
            sa.select(i.source, d.destination, i.origin_at, i.received_at, d.written_at)
            .join(T.inbox_deliveries, d.inbox_id == i.id)
            .where(d.status == "done")
        )
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def _secure_delete(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def webhook_summary(ledger: Ledger) -> dict[str, Any]:
    """The webhook path apart from polling, for `optouts-ledger report`: events received per
    source, deliveries pending, and per destination the latency from the event's own time
    (and from its receipt) to the destination's accepting it."""
    inbox = Inbox(ledger)
    received: dict[str, int] = {}
    i = T.inbox.c
    with inbox.engine.connect() as conn:
        for source, count in conn.execute(sa.select(i.source, sa.func.count()).group_by(i.source)):
            received[source] = int(count)
    per: dict[str, tuple[list[float], list[float]]] = {}
    for _source, destination, origin_at, received_at, written_at in inbox.latencies():
        from_event, from_receipt = per.setdefault(destination, ([], []))
        origin = _epoch(origin_at, received_at)
        from_event.append(max(0.0, written_at - origin))
        from_receipt.append(max(0.0, written_at - received_at))
    counts = inbox.counts()
    return {
        "received": received,
        "destinations": {
            name: {
                "pending": counts.get(name, {}).get("pending", 0),
                "from_event": _quantiles(per.get(name, ([], []))[0]),
                "from_receipt": _quantiles(per.get(name, ([], []))[1]),
            }
            for name in sorted(set(per) | set(counts))
        },
    }


def webhook_text(summary: dict[str, Any]) -> list[str]:
    """The report's webhook lines (none when no webhook was ever received)."""
    if not summary["received"]:
        return []
    sources = ", ".join(f"{k} {v}" for k, v in sorted(summary["received"].items()))
    lines = [f"  webhooks received: {sources}"]
    for name, row in summary["destinations"].items():
        event, receipt = row["from_event"], row["from_receipt"]
        lines.append(
            f"  webhooks -> {name}: {event['count']} done, {row['pending']} pending; "
            f"event to written median/p95/max {_text(event)}, received to written "
            f"{_text(receipt)}"
        )
    return lines


def _epoch(text: str | None, default: float) -> float:
    if not text:
        return default
    try:
        return parse_timestamp(text).timestamp()
    except ValueError:
        return default


def _quantiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "median": None, "p95": None, "max": None}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "median": round(ordered[len(ordered) // 2], 3),
        "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3),
        "max": round(ordered[-1], 3),
    }


def _text(q: dict[str, Any]) -> str:
    if not q["count"]:
        return "-"
    return f"{q['median']:.2f}s/{q['p95']:.2f}s/{q['max']:.2f}s"
