"""A batch's addresses, staged until every destination has accepted the batch, then merged into
`ledger_addresses` in one statement, in key order.

The keys are keyed hashes, so the blocks of a batch arrive in random key order: upserted as
they come, every block would touch most pages of the table, and once the table outgrows the
page cache each row costs a page read and a page write. Staged, a block is appended to a
temporary table of the ledger's connection (no index: appends only), and the batch is merged
once, sorted by key, so that each page of the table is read and written once. The staging
table is the connection's own: it is gone with it, and a crash before the merge leaves the
ledger as if the batch had never been seen (the next run writes it again).

A staged row: the address's key and origin, when it was first seen, the destinations now known
to hold it (`learned`: its own stream's provider), those it is being written to (`pending`)
and those that refused it (`rejected`, set once the batch's answers are in).

Once a batch's last part is staged, its rows can be sorted (`sort`: SQLite) into a table in key
order while the destinations finish their last writes; the merge then reads that table in
order, with no sort of its own. The sorted table holds every row's values (a part's shared
ones resolved), so refusals and lookups read it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

# What a part's addresses share: (part id, kind, origin_stream, origin_destination,
# first_seen_at, learned, pending); the last three None when each row has its own.
Part = tuple[int, str, str | None, int | None, float, int | None, int | None]
# The row columns a part stages, as `append` takes them: the key and the origin's time, the
# clear address when it is kept, each row's own origin and masks when the part has none.
KEY_COLUMNS = ("id", "lo", "opted_out_at")
CLEAR_COLUMNS = ("clear",)
OWN_COLUMNS = ("origin_destination", "learned", "pending")
_PG_TYPES = {
    "id": "bigint[]",
    "lo": "bigint[]",
    "opted_out_at": "text[]",
    "clear": "text[]",
    "origin_destination": "int[]",
    "learned": "bigint[]",
    "pending": "bigint[]",
}
# A staged row as the merge reads it: the part's values where the row has none.
_ROWS = (
    "SELECT s.id AS id, s.lo AS lo, p.kind AS kind, s.clear AS clear, "
    "p.origin_stream AS origin_stream, "
    "coalesce(s.origin_destination, p.origin_destination) AS origin_destination, "
    "s.opted_out_at AS opted_out_at, p.first_seen_at AS first_seen_at, "
    "coalesce(s.learned, p.learned) AS learned, coalesce(s.pending, p.pending) AS pending, "
    "s.rejected AS rejected, s.part AS part FROM {table} AS s JOIN {parts} AS p ON p.id = s.part"
)


def name(batch: int, postgres: bool) -> str:
    table = f"ledger_stage_{int(batch)}"
    return table if postgres else f"temp.{table}"


def sorted_name(batch: int) -> str:
    return f"temp.ledger_sorted_{int(batch)}"


def _parts(postgres: bool) -> str:
    return "ledger_stage_parts" if postgres else "temp.ledger_stage_parts"


def create(conn: Connection, batch: int, postgres: bool) -> None:
    bits = "BIGINT" if postgres else "INTEGER"
    conn.exec_driver_sql(
        "CREATE TEMP TABLE IF NOT EXISTS ledger_stage_parts (id INTEGER PRIMARY KEY, "
        f"kind TEXT, origin_stream TEXT, origin_destination INTEGER, first_seen_at FLOAT, "
        f"learned {bits}, pending {bits})"
    )
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS ledger_stage_{int(batch)} (part INTEGER, "
        f"id {bits}, lo {bits}, opted_out_at TEXT, clear TEXT, origin_destination INTEGER, "
        f"learned {bits}, pending {bits}, rejected {bits} NOT NULL DEFAULT 0)"
    )


def append(
    conn: Connection,
    batch: int,
    postgres: bool,
    part: Part,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Stage a part: what its rows share, then the rows (`columns` of each)."""
    mark = "%s" if postgres else "?"
    conn.exec_driver_sql(
        f"INSERT INTO {_parts(postgres)} (id, kind, origin_stream, origin_destination, "
        f"first_seen_at, learned, pending) VALUES ({', '.join([mark] * 7)})",
        part,
    )
    table, names = name(batch, postgres), ", ".join(columns)
    part_id = int(part[0])
    if postgres:
        arrays = tuple(list(column) for column in zip(*rows, strict=True))
        source = ", ".join(f"%s::{_PG_TYPES[c]}" for c in columns)
        conn.exec_driver_sql(
            f"INSERT INTO {table} (part, {names}) SELECT {part_id}, * FROM unnest({source})",
            arrays,
        )
    else:
        # executemany: at a microsecond a row, about half the cost of reading one JSON array
        # with `json_each`.
        marks = ", ".join("?" * len(columns))
        conn.exec_driver_sql(
            f"INSERT INTO {table} (part, {names}) VALUES ({part_id}, {marks})", list(rows)
        )


def sort(conn: Connection, batch: int) -> None:
    """Copy the batch's staged rows (SQLite), their values resolved, into a table in key order
    (its rowids), and drop the unsorted one: what the merge reads then needs no sort."""
    rows = _ROWS.format(table=name(batch, False), parts=_parts(False))
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE ledger_sorted_{int(batch)} AS SELECT * FROM ({rows}) ORDER BY id"
    )
    conn.exec_driver_sql(f"DROP TABLE {name(batch, False)}")


def _rows(batch: int, postgres: bool, is_sorted: bool) -> str:
    if is_sorted:
        return f"SELECT * FROM {sorted_name(batch)}"
    return _ROWS.format(table=name(batch, postgres), parts=_parts(postgres))


def sent(
    conn: Connection,
    batch: int,
    postgres: bool,
    hi: int,
    lo: int,
    bit: int,
    *,
    is_sorted: bool = False,
) -> bool:
    """Whether the staged key is being written to the destination `bit` (a scan: only for a
    provider's answer naming a key the batch no longer keeps in memory)."""
    mark = "%s" if postgres else "?"
    rows = _rows(batch, postgres, is_sorted)
    row = conn.exec_driver_sql(
        f"SELECT 1 FROM ({rows}) AS r WHERE id = {mark} AND lo = {mark} "
        f"AND pending & {mark} != 0 LIMIT 1",
        (hi, lo, bit),
    ).first()
    return row is not None


def refuse(
    conn: Connection,
    batch: int,
    postgres: bool,
    refused: dict[int, list[tuple[int, int]]],
    *,
    is_sorted: bool = False,
) -> None:
    """The keys each destination (`bit`: keys) refused: rejected there, not pending."""
    per_key: dict[tuple[int, int], int] = {}
    for bit, items in refused.items():
        for key in items:
            per_key[key] = per_key.get(key, 0) | bit
    if not per_key:
        return
    table = sorted_name(batch) if is_sorted else name(batch, postgres)
    mark = "%s" if postgres else "?"
    cast = "::bigint" if postgres else ""
    # One statement per key would scan the staged rows once each; through a keyed temporary
    # table of the refusals they are scanned once.
    conn.exec_driver_sql(
        "CREATE TEMP TABLE IF NOT EXISTS ledger_refused (id BIGINT, lo BIGINT, bits BIGINT, "
        "PRIMARY KEY (id, lo))"
    )
    conn.exec_driver_sql("DELETE FROM ledger_refused")
    conn.exec_driver_sql(
        f"INSERT INTO ledger_refused (id, lo, bits) VALUES ({mark}, {mark}, {mark})",
        [(hi, lo, bits) for (hi, lo), bits in per_key.items()],
    )
    short = table.removeprefix("temp.")
    own = (
        f"{short}.pending"
        if is_sorted
        else f"coalesce({short}.pending, (SELECT p.pending FROM {_parts(postgres)} AS p "
        f"WHERE p.id = {short}.part))"
    )
    conn.exec_driver_sql(
        f"UPDATE {table} SET rejected = {short}.rejected | r.bits{cast}, "
        f"pending = {own} & ~r.bits{cast} FROM ledger_refused AS r "
        f"WHERE r.id = {short}.id AND r.lo = {short}.lo"
    )
    conn.exec_driver_sql("DELETE FROM ledger_refused")


def merge(
    conn: Connection,
    batch: int,
    postgres: bool,
    *,
    run: int,
    withheld: int,
    accepted: bool,
    is_sorted: bool = False,
) -> None:
    """Merge the staged rows into `ledger_addresses`, in key order. `accepted`: every
    destination accepted the batch, so what was pending is now held (less `withheld`: bits
    whose refusals could not be traced to a key); otherwise it stays pending (`pending_batch`),
    and only what the origin holds is recorded held. `is_sorted`: read the sorted table, in
    its order."""
    rows = _ROWS.format(table=name(batch, postgres), parts=_parts(postgres))
    p = _marks(postgres)
    order = "id"
    if postgres:
        # A statement may upsert a row only once: a key staged twice is merged first.
        source = (
            "(SELECT id, lo, min(kind) AS kind, min(clear) AS clear, "
            "min(origin_stream) AS origin_stream, min(origin_destination) AS "
            "origin_destination, min(opted_out_at) AS opted_out_at, min(first_seen_at) AS "
            "first_seen_at, bit_or(learned) AS learned, bit_or(pending) AS pending, "
            f"bit_or(rejected) AS rejected FROM ({rows}) AS r GROUP BY id, lo)"
        )
    elif is_sorted:
        source, order = sorted_name(batch), "s.rowid"
    else:
        source = f"({rows})"
    if accepted:
        values = f"learned | (pending & ~{p['withheld']}), 0, NULL, rejected & ~learned"
        update = (
            "present = a.present | excluded.present, "
            "pending = a.pending & ~excluded.present, "
            "pending_batch = CASE WHEN a.pending & ~excluded.present != 0 THEN a.pending_batch "
            "END, "
            "rejected = (a.rejected | excluded.rejected) & ~(a.present | excluded.present)"
        )
    else:
        values = (
            f"learned, pending & ~learned, CASE WHEN pending & ~learned != 0 THEN {p['batch']} "
            "END, rejected & ~learned"
        )
        update = (
            "present = a.present | excluded.present, "
            "pending = CASE WHEN excluded.pending & ~a.present != 0 THEN "
            "excluded.pending & ~a.present ELSE a.pending & ~excluded.present END, "
            "pending_batch = CASE WHEN excluded.pending & ~a.present != 0 THEN "
            "excluded.pending_batch ELSE a.pending_batch END, "
            "rejected = (a.rejected | excluded.rejected) & ~excluded.present"
        )
    conn.exec_driver_sql(
        "INSERT INTO ledger_addresses AS a (id, lo, kind, clear, origin_stream, "
        "origin_destination, opted_out_at, first_seen_at, first_run, present, pending, "
        "pending_batch, rejected) "
        "SELECT id, lo, kind, clear, origin_stream, origin_destination, opted_out_at, "
        f"first_seen_at, {p['run']}, {values} FROM {source} AS s WHERE true ORDER BY {order} "
        f"ON CONFLICT (id) DO UPDATE SET {update}, "
        "origin_stream = coalesce(a.origin_stream, excluded.origin_stream), "
        "origin_destination = coalesce(a.origin_destination, excluded.origin_destination), "
        "opted_out_at = coalesce(a.opted_out_at, excluded.opted_out_at), "
        "clear = coalesce(a.clear, excluded.clear) "
        "WHERE a.lo = excluded.lo",
        {"run": run, "withheld": withheld, "batch": batch},
    )
    drop(conn, batch, postgres, is_sorted=is_sorted)


def drop(conn: Connection, batch: int, postgres: bool, *, is_sorted: bool = False) -> None:
    table = sorted_name(batch) if is_sorted else name(batch, postgres)
    conn.exec_driver_sql(
        f"DELETE FROM {_parts(postgres)} WHERE id IN (SELECT DISTINCT part FROM {table})"
    )
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")


def _marks(postgres: bool) -> dict[str, Any]:
    if postgres:
        return {
            "run": "%(run)s",
            "withheld": "%(withheld)s::bigint",
            "batch": "%(batch)s",
        }
    return {"run": ":run", "withheld": ":withheld", "batch": ":batch"}
