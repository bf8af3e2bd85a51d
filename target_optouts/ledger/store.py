"""The ledger's store: opening it (created, migrated, recovered), and every statement it runs.

The hot statements (per block of addresses, one lookup and one append to the batch's staging
table; per batch, one merge: see `stage.py`) are written per dialect: a block goes to the
database as one parameter (a JSON array for SQLite's `json_each`, arrays for PostgreSQL's
`unnest`) or one `executemany`, not thousands of statements. Everything else goes through
SQLAlchemy Core.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from target_optouts.errors import ConfigurationError
from target_optouts.ledger import stage
from target_optouts.ledger import tables as T
from target_optouts.ledger.keys import AddressKeys, new_key_file, read_key_file

logger = logging.getLogger("target-optouts")

DEFAULT_URL = "sqlite:///.optouts/ledger.sqlite"
GAP_OPTED_OUT_AT = 1  # `Known.gaps`: the row lacks the origin's time ...
GAP_CLEAR = 2  # ... or the clear address

# What the ledger knows of a key: (hi, lo, present, gaps).
Known = tuple[int, int, int, int]


class LedgerError(ConfigurationError):
    """The ledger cannot be used as configured (a schema newer than this code, a key that does
    not match): a configuration error that stops the run."""


class LedgerUnavailable(RuntimeError):
    """The ledger cannot be read or written: the run goes on without it (writes everything)."""


def pack_ids(ids: Iterable[int]) -> bytes:
    """Keys as stored in evidence rows: 64-bit little-endian integers."""
    packed = array("q", ids)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def unpack_ids(blob: bytes) -> array[int]:
    packed = array("q")
    packed.frombytes(blob)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed


def engine_url(url: str) -> sa.URL:
    """The SQLAlchemy URL; plain `postgresql://` means psycopg (version 3), as target-postgres."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_path(url: sa.URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def _sqlite_engine(url: sa.URL) -> Engine:
    # One connection kept open (per thread): closing the last connection to a WAL database
    # checkpoints it, and a new one starts with a cold page cache.
    engine = sa.create_engine(
        url,
        connect_args={"timeout": 60, "check_same_thread": False},
        poolclass=sa.pool.QueuePool,
        pool_size=1,
        max_overflow=4,
    )

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions begun below, IMMEDIATE
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # 2 MB: the table is read and written in key order (`stage.py`), which needs few
        # pages at a time; the sort of a batch's merge takes up to this much per thread, and
        # two helper threads take about 30% off the sort of a million rows.
        cursor.execute("PRAGMA cache_size=-2048")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA threads=2")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # Take the write lock at once: a deferred transaction that reads, then writes, can
        # fail with "database is locked" beside another writer instead of waiting. One that
        # only reads, or writes only the connection's temporary tables, takes no lock.
        if connection.info.get("ledger_deferred"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@dataclass
class Destination:
    id: int
    name: str
    kinds: str

    @property
    def bit(self) -> int:
        return 1 << self.id


class Ledger:
    """One open ledger. Thread-safe as far as its callers need: one writer thread per target."""

    def __init__(self, engine: Engine, keys: AddressKeys, *, clear: bool, where: str) -> None:
        self.engine = engine
        self.keys = keys
        self.clear = clear
        self.where = where  # for messages: the URL without its password
        self.postgres = engine.dialect.name == "postgresql"
        self._destinations: dict[str, Destination] = {}
        # One connection for everything: the batches' staging tables are its own.
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self._staged: set[int] = set()  # batches with a staging table
        self._parts = 0  # the staged parts' ids
        self._sorting: dict[int, threading.Thread] = {}  # batches being sorted (`prepare`)
        self._sorted: set[int] = set()  # batches whose rows are in key order

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        url: str,
        *,
        hash_key: str | None = None,
        clear: bool = False,
        key_dir: Path | None = None,
        create: bool = True,
    ) -> Ledger:
        """Open (and create, migrate) the ledger at `url`. A SQLite file that is not a
        database, or whose key is gone, is moved aside and a new one started, with one
        warning: the ledger is a cache, and losing it costs requests, never an opt-out."""
        parsed = engine_url(url)
        where = parsed.render_as_string(hide_password=True)
        path = sqlite_path(parsed)
        if path is not None:
            if not path.exists() and not create:
                raise LedgerUnavailable(f"no ledger at {where}")
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = _sqlite_engine(parsed)
        else:
            engine = sa.create_engine(parsed, pool_pre_ping=True)
        key_file = (
            path.with_suffix(".key")
            if path is not None
            else (key_dir or Path(".optouts")) / "ledger.key"
        )
        if path is not None and create and not path.exists() and key_file.exists():
            logger.warning(
                "target-optouts: the ledger %s is missing (deleted?); a new one is started: "
                "every destination is written as if the ledger were empty",
                where,
            )
        try:
            try:
                version = _schema_version(engine)
            except sa.exc.DatabaseError as exc:
                if path is None:
                    raise
                engine.dispose()
                moved = _move_aside(path)
                logger.warning(
                    "target-optouts: the ledger %s is unreadable (%s); moved to %s and a new "
                    "one started: every destination is written as if the ledger were empty",
                    where,
                    type(exc.orig or exc).__name__,
                    moved.name,
                )
                engine = _sqlite_engine(parsed)
                version = _schema_version(engine)
            if version is not None and version > T.SCHEMA_VERSION:
                raise LedgerError(
                    f"the ledger {where} has schema version {version}, newer than this "
                    f"target-optouts knows ({T.SCHEMA_VERSION}): upgrade target-optouts, or "
                    "point ledger_url at another ledger"
                )
            if version is None and not create:
                raise LedgerUnavailable(f"no ledger at {where}")
            T.metadata.create_all(engine, checkfirst=True)
            with engine.begin() as conn:
                _set_meta_once(conn, "schema_version", str(T.SCHEMA_VERSION))
                fingerprint = _meta(conn, "key_fingerprint")
            keys = _keys(hash_key, key_file, fingerprint, where, path)
            if fingerprint is None:
                with engine.begin() as conn:
                    _set_meta_once(conn, "key_fingerprint", keys.fingerprint)
                    _set_meta_once(conn, "created_at", str(time.time()))
                    fingerprint = _meta(conn, "key_fingerprint")
            if fingerprint != keys.fingerprint:
                if path is not None and not hash_key:
                    # The key file went missing with the ledger still there: start anew.
                    engine.dispose()
                    moved = _move_aside(path)
                    logger.warning(
                        "target-optouts: the ledger %s was made with another key (its key "
                        "file is gone); moved to %s and a new one started",
                        where,
                        moved.name,
                    )
                    return cls.open(url, hash_key=None, clear=clear, key_dir=key_dir)
                raise LedgerError(
                    f"the ledger {where} was made with another hash key: set ledger_hash_key "
                    "to the key it was made with (or point ledger_url at a new ledger)"
                )
        except (LedgerError, LedgerUnavailable):
            engine.dispose()
            raise
        except (SQLAlchemyError, OSError) as exc:
            engine.dispose()
            raise LedgerUnavailable(f"the ledger {where} cannot be opened: {_brief(exc)}") from exc
        return cls(engine, keys, clear=clear, where=where)

    def close(self) -> None:
        self._stop_sorting()
        with self._lock:
            if self._conn is not None:
                try:
                    if self._conn.in_transaction():
                        self._conn.commit()
                finally:
                    self._conn.close()
                    self._conn = None
        self.engine.dispose()

    @contextmanager
    def _tx(self, *, deferred: bool = False) -> Iterator[Connection]:
        """The ledger's connection, in a transaction committed at the end of the block
        (`deferred`: one that only reads the ledger, or writes only temporary tables)."""
        with self._lock:
            if self._conn is None:
                self._conn = self.engine.connect()
            conn = self._conn
            conn.info["ledger_deferred"] = deferred
            try:
                yield conn
            except BaseException:
                if conn.in_transaction():
                    conn.rollback()
                raise
            finally:
                conn.info["ledger_deferred"] = False
            if conn.in_transaction():
                conn.commit()

    # -- destinations, runs, batches -------------------------------------------------------
    def destination(self, name: str, kinds: str = "") -> Destination:
        """The destination's bit, registered on first use (its kinds widened when given)."""
        known = self._destinations.get(name)
        if known is not None and (
            not kinds or set(kinds.split(",")) <= set(known.kinds.split(","))
        ):
            return known
        for _attempt in range(20):
            try:
                return self._register(name, kinds)
            except IntegrityError:
                continue  # another target registered one at the same moment
        raise LedgerUnavailable(f"could not register destination {name!r}")

    def _register(self, name: str, kinds: str) -> Destination:
        with self._tx() as conn:
            row = conn.execute(
                sa.select(T.destinations).where(T.destinations.c.name == name)
            ).first()
            if row is not None:
                found = Destination(row.id, row.name, row.kinds)
                wanted = _merge_kinds(found.kinds, kinds)
                if wanted != found.kinds:
                    conn.execute(
                        T.destinations.update()
                        .where(T.destinations.c.id == found.id)
                        .values(kinds=wanted)
                    )
                    found.kinds = wanted
                self._destinations[name] = found
                return found
            top = conn.execute(sa.select(sa.func.max(T.destinations.c.id))).scalar() or 0
            if top >= T.MAX_DESTINATIONS:
                raise LedgerError(
                    f"the ledger {self.where} holds {T.MAX_DESTINATIONS} destinations, its most"
                )
            conn.execute(T.destinations.insert().values(id=top + 1, name=name, kinds=kinds))
            found = Destination(top + 1, name, kinds)
            self._destinations[name] = found
            return found

    def destinations(self) -> list[Destination]:
        with self._tx() as conn:
            rows = conn.execute(sa.select(T.destinations).order_by(T.destinations.c.id))
            return [Destination(r.id, r.name, r.kinds) for r in rows]

    def start_run(self, kind: str) -> int:
        detail = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        with self._tx() as conn:
            result = conn.execute(
                T.runs.insert().values(
                    kind=kind, started_at=time.time(), status="running", detail=detail
                )
            )
            return int(result.inserted_primary_key[0])

    def end_run(self, run: int, status: str) -> None:
        with self._tx() as conn:
            conn.execute(
                T.runs.update()
                .where(T.runs.c.id == run)
                .values(ended_at=time.time(), status=status)
            )

    def start_batch(self, run: int, stream: str) -> int:
        with self._tx() as conn:
            result = conn.execute(
                T.batches.insert().values(run_id=run, stream=stream, started_at=time.time())
            )
            return int(result.inserted_primary_key[0])

    # -- the hot path ----------------------------------------------------------------------
    def lookup(self, ids: Sequence[int]) -> list[Known]:
        """What is known of these keys (`hi`): their rows' `lo`, held bits and gaps."""
        if not ids:
            return []
        with self._tx(deferred=True) as conn:
            if conn.exec_driver_sql(_ANY_ADDRESS).first() is None:
                return []  # a new ledger: nothing to look up
            if self.postgres:
                result = conn.exec_driver_sql(_PG_LOOKUP, (list(ids),))
            else:
                result = conn.exec_driver_sql(_SQLITE_LOOKUP, (json.dumps(list(ids)),))
            return [tuple(row) for row in result]  # type: ignore[misc]

    def stage(
        self,
        batch: int,
        shared: tuple[str, str | None, int | None, float, int | None, int | None],
        columns: tuple[str, ...],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:
        """Keep a block of the batch's addresses until the batch is completed (or abandoned):
        what the origin holds (`learned`) and what is being written (`pending`). `shared`:
        what the rows share (kind, origin_stream, origin_destination, first_seen_at, learned,
        pending; the last three None when each row has its own); `columns`: each row's (see
        `stage.KEY_COLUMNS`)."""
        if not rows:
            return
        self._parts += 1
        with self._tx(deferred=True) as conn:
            if batch not in self._staged:
                stage.create(conn, batch, self.postgres)
                self._staged.add(batch)
            stage.append(conn, batch, self.postgres, (self._parts, *shared), columns, rows)

    def prepare_batch(self, batch: int) -> None:
        """Every part of the batch is staged: sort its rows in key order (SQLite), on a worker
        thread, while the destinations finish their writes. Nothing of the ledger's own tables
        changes: what the batch holds is still recorded only by `complete_batch`. The worker
        holds the connection while its statement runs (sqlite3 lets go of the GIL meanwhile);
        a sort that fails leaves the batch staged as it was, and the merge sorts it."""
        if self.postgres or batch not in self._staged or batch in self._sorting:
            return
        if batch in self._sorted:
            return
        worker = threading.Thread(
            target=self._sort, args=(batch,), name=f"ledger-sort-{batch}", daemon=True
        )
        self._sorting[batch] = worker
        worker.start()

    def _sort(self, batch: int) -> None:
        try:
            with self._tx(deferred=True) as conn:
                stage.sort(conn, batch)
            self._sorted.add(batch)
        except Exception as exc:  # the merge then sorts the rows itself
            logger.debug("target-optouts: the ledger's sort of batch %s failed: %s", batch, exc)

    def _sorted_now(self, batch: int) -> bool:
        """Wait for the batch's sort, if one runs; whether its rows are in key order."""
        worker = self._sorting.pop(batch, None)
        if worker is not None:
            worker.join()
        return batch in self._sorted

    def _stop_sorting(self, timeout: float = 10.0) -> None:
        """Interrupt any sort still running (a run that ends early) and wait for it, bounded:
        the interrupted statement rolls back, and the batch stays as staged."""
        if not self._sorting:
            return
        conn = self._conn
        if conn is not None:
            with suppress(Exception):  # a connection already closed
                conn.connection.dbapi_connection.interrupt()  # type: ignore[union-attr]
        for batch, worker in list(self._sorting.items()):
            worker.join(timeout)
            if not worker.is_alive():
                self._sorting.pop(batch, None)

    def complete_batch(
        self,
        run: int,
        batch: int,
        *,
        refused: dict[int, list[tuple[int, int]]],
        withheld: int,
        evidence: list[tuple[int, str, int, str | None, bytes]],
        stored: dict[str, Any] | None = None,
    ) -> None:
        """The batch was accepted by every destination: what was pending becomes held, less
        the addresses refused (`refused`: per destination bit, their keys) and
        every address of the destinations in `withheld` (bits whose refusals could not be
        traced to an address). `evidence`: (destination id, how, count, answer, keys).
        `stored`: for the evidence stored while the batch ran, each destination's answer, the
        keys to take out of its written rows (refused, already held) and the destinations
        withheld."""
        is_sorted = self._sorted_now(batch)
        now = time.time()
        with self._tx() as conn:
            if stored:
                self._settle_stored(conn, batch, now, stored)
            if batch in self._staged:
                stage.refuse(conn, batch, self.postgres, refused, is_sorted=is_sorted)
                stage.merge(
                    conn,
                    batch,
                    self.postgres,
                    run=run,
                    withheld=withheld,
                    accepted=True,
                    is_sorted=is_sorted,
                )
                self._staged.discard(batch)
                self._sorted.discard(batch)
            if evidence:
                _insert_evidence(conn, run, batch, now, evidence)
            conn.execute(T.batches.update().where(T.batches.c.id == batch).values(completed_at=now))

    def abandon_batch(self, run: int, batch: int) -> None:
        """The batch was not accepted (the run failed): what its origin holds is recorded,
        what was being written stays pending."""
        if batch not in self._staged:
            return
        is_sorted = self._sorted_now(batch)
        with self._tx() as conn:
            stage.merge(
                conn,
                batch,
                self.postgres,
                run=run,
                withheld=0,
                accepted=False,
                is_sorted=is_sorted,
            )
            self._staged.discard(batch)
            self._sorted.discard(batch)

    def _settle_stored(
        self, conn: Connection, batch: int, now: float, stored: dict[str, Any]
    ) -> None:
        e = T.evidence.c
        of_batch = T.evidence.update().where(e.batch_id == batch)
        for dest_id in stored["withheld"]:
            conn.execute(
                T.evidence.delete().where(
                    e.batch_id == batch, e.destination_id == dest_id, e.how == "written"
                )
            )
        for dest_id, gone in stored["gone"].items():
            rows = conn.execute(
                sa.select(e.id, e.ids).where(
                    e.batch_id == batch, e.destination_id == dest_id, e.how == "written"
                )
            ).all()
            for row_id, blob in rows:
                kept = [hi for hi in unpack_ids(blob) if hi not in gone]
                conn.execute(
                    T.evidence.update()
                    .where(e.id == row_id)
                    .values(ids=pack_ids(kept), count=len(kept))
                )
        for dest_id, answer in stored["answers"].items():
            conn.execute(
                of_batch.where(e.destination_id == dest_id, e.how == "written").values(
                    answer=answer
                )
            )
        conn.execute(of_batch.values(at=now))

    def store_evidence(
        self, run: int, batch: int, rows: list[tuple[int, str, int, str | None, bytes]]
    ) -> None:
        """Evidence of a batch still open (it counts once the batch is completed)."""
        with self._tx() as conn:
            _insert_evidence(conn, run, batch, time.time(), rows)

    def pending_in(self, hi: int, lo: int, batch: int, bit: int) -> bool:
        """Whether the key waits, in this batch, to be recorded held by the destination."""
        if batch not in self._staged:
            return False
        is_sorted = self._sorted_now(batch)
        with self._tx(deferred=True) as conn:
            return stage.sent(conn, batch, self.postgres, hi, lo, bit, is_sorted=is_sorted)

    def add_evidence(
        self, run: int, destination: int, how: str, ids: bytes, count: int, answer: str | None
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                T.evidence.insert().values(
                    run_id=run,
                    destination_id=destination,
                    how=how,
                    at=time.time(),
                    count=count,
                    answer=answer,
                    ids=ids,
                )
            )

    # -- reconcile -------------------------------------------------------------------------
    def mark_missing(self, run: int, destination: Destination, seen: set[int]) -> int:
        """After a full read of `destination`: every address the ledger holds there that the
        read did not see is marked missing (no longer held), so that the next run writes it
        again. Returns how many."""
        bit = destination.bit
        missing: list[int] = []
        with self._tx() as conn:
            result = conn.execute(
                sa.select(T.addresses.c.id).where(T.addresses.c.present.op("&")(bit) != 0)
            )
            for (hi,) in result:
                if hi not in seen:
                    missing.append(hi)
        if not missing:
            return 0
        now = time.time()
        with self._tx() as conn:
            for start in range(0, len(missing), 5000):
                chunk = missing[start : start + 5000]
                conn.execute(
                    T.addresses.update()
                    .where(T.addresses.c.id.in_(chunk))
                    .values(present=T.addresses.c.present.op("&")(~bit))
                )
            conn.execute(
                T.evidence.insert().values(
                    run_id=run,
                    destination_id=destination.id,
                    how="missing",
                    at=now,
                    count=len(missing),
                    answer=json.dumps({"reconcile": "not in the provider's full read"}),
                    ids=pack_ids(missing),
                )
            )
        return len(missing)

    # -- reading (trail, report) -----------------------------------------------------------
    def address(self, hi: int, lo: int) -> Any:
        with self._tx() as conn:
            row = conn.execute(sa.select(T.addresses).where(T.addresses.c.id == hi)).first()
        return row if row is not None and row.lo == lo else None

    def evidence_of(self, hi: int) -> list[Any]:
        """Every evidence row that names this key, oldest first."""
        needle = pack_ids([hi])
        found = []
        with self._tx() as conn:
            rows = conn.execute(_settled(sa.select(T.evidence)).order_by(T.evidence.c.id))
            for row in rows:
                if _contains(row.ids, needle):
                    found.append(row)
        return found

    def evidence_rows(self, how: str | None = None) -> list[Any]:
        query = _settled(sa.select(T.evidence)).order_by(T.evidence.c.id)
        if how is not None:
            query = query.where(T.evidence.c.how == how)
        with self._tx() as conn:
            return list(conn.execute(query))

    def mask_counts(self) -> list[tuple[str, int, int, int, int]]:
        """(kind, present, pending, rejected, count) over every address."""
        a = T.addresses.c
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(a.kind, a.present, a.pending, a.rejected, sa.func.count()).group_by(
                    a.kind, a.present, a.pending, a.rejected
                )
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]

    def origin_times(self, ids: Sequence[int]) -> dict[int, tuple[str | None, float]]:
        """Per key: the time it opted out at its origin (as recorded) and when the ledger
        first saw it."""
        a = T.addresses.c
        out: dict[int, tuple[str | None, float]] = {}
        with self._tx() as conn:
            for start in range(0, len(ids), 5000):
                chunk = list(ids[start : start + 5000])
                for hi, at, first in conn.execute(
                    sa.select(a.id, a.opted_out_at, a.first_seen_at).where(a.id.in_(chunk))
                ):
                    out[hi] = (at, first)
        return out

    def runs(self) -> list[Any]:
        with self._tx() as conn:
            return list(conn.execute(sa.select(T.runs).order_by(T.runs.c.id)))


def _insert_evidence(
    conn: Connection,
    run: int,
    batch: int,
    now: float,
    rows: list[tuple[int, str, int, str | None, bytes]],
) -> None:
    """Evidence rows of a batch: (destination id, how, count, answer, packed keys) each."""
    conn.execute(
        T.evidence.insert(),
        [
            {
                "run_id": run,
                "batch_id": batch,
                "destination_id": dest,
                "how": how,
                "at": now,
                "count": count,
                "answer": answer,
                "ids": ids,
            }
            for dest, how, count, answer, ids in rows
        ],
    )


def _settled(query: Any) -> Any:
    """Evidence of completed batches only (or of none: reconcile marks)."""
    e, b = T.evidence.c, T.batches.c
    done = sa.select(b.id).where(b.completed_at.isnot(None))
    return query.where(sa.or_(e.batch_id.is_(None), e.batch_id.in_(done)))


def _contains(blob: bytes, needle: bytes) -> bool:
    start = blob.find(needle)
    while start != -1:
        if start % 8 == 0:
            return True
        start = blob.find(needle, start + 1)
    return False


def _merge_kinds(old: str, new: str) -> str:
    kinds = [k for k in old.split(",") if k]
    kinds += [k for k in new.split(",") if k and k not in kinds]
    return ",".join(kinds)


def _schema_version(engine: Engine) -> int | None:
    with engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        if T.meta.name not in names:
            return None
        value = _meta(conn, "schema_version")
        return int(value) if value is not None else None


def _meta(conn: Connection, name: str) -> str | None:
    return conn.execute(sa.select(T.meta.c.value).where(T.meta.c.name == name)).scalar()


def _set_meta_once(conn: Connection, name: str, value: str) -> None:
    if _meta(conn, name) is None:
        try:
            with conn.begin_nested():
                conn.execute(T.meta.insert().values(name=name, value=value))
        except IntegrityError:
            pass  # set by another target at the same moment


def _keys(
    hash_key: str | None, key_file: Path, fingerprint: str | None, where: str, path: Path | None
) -> AddressKeys:
    if hash_key:
        return AddressKeys(hash_key.encode())
    key = read_key_file(key_file)
    if key is None:
        if fingerprint is not None and path is None:
            raise LedgerError(
                f"the ledger {where} was made with a hash key that is not here: set ledger_hash_key"
            )
        key = new_key_file(key_file)
    return AddressKeys(key)


def _move_aside(path: Path) -> Path:
    moved = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.unlink()
    path.rename(moved)
    return moved


def _brief(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig or exc).splitlines()[0] if str(orig or exc) else type(exc).__name__
    return f"{type(orig or exc).__name__}: {text}"[:300]


# -- per-dialect statements ----------------------------------------------------------------
_ANY_ADDRESS = "SELECT 1 FROM ledger_addresses LIMIT 1"
_GAPS = (
    f"(CASE WHEN opted_out_at IS NULL THEN {GAP_OPTED_OUT_AT} ELSE 0 END) + "
    f"(CASE WHEN clear IS NULL THEN {GAP_CLEAR} ELSE 0 END)"
)
_SQLITE_LOOKUP = f"""
SELECT id, lo, present, {_GAPS} FROM ledger_addresses
WHERE id IN (SELECT value FROM json_each(?))
"""
_PG_LOOKUP = f"SELECT id, lo, present, {_GAPS} FROM ledger_addresses WHERE id = ANY(%s::bigint[])"
