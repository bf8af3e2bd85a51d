"""The ledger's tables (SQLAlchemy Core: SQLite and PostgreSQL alike) and their version.

- `ledger_addresses`: one row per opt-out address (its key, see `keys.py`): its kind, the clear
  value only when `ledger_clear_addresses` is on, its origin (stream, destination, the time it
  opted out there), when the ledger first saw it, and three masks of destination bits: held
  (`present`), sent in a batch not yet accepted (`pending`, with `pending_batch`) and refused
  (`rejected`). One row, not one per destination, so that a block of addresses costs one
  upsert and one lookup whatever the number of destinations.
- `ledger_destinations`: each destination's bit (1..62) and the kinds of address it carries
  (empty for a provider list only read, never written).
- `ledger_runs`, `ledger_batches`: each target run, and each batch of a stream it wrote.
- `ledger_evidence`: the audit trail: per batch and destination, how the addresses became known
  (`seen` in the provider's own stream, `written`, `already` present, `rejected`, `missing` at a
  reconcile), when, the provider's answer, and the keys concerned (packed `hi` values).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 1
MAX_DESTINATIONS = 62  # bits of a signed 64-bit mask

# SQLite makes `INTEGER PRIMARY KEY` the row id (no second index); PostgreSQL needs BIGINT.
Key = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

meta = Table(
    "ledger_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

destinations = Table(
    "ledger_destinations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(255), nullable=False, unique=True),
    Column("kinds", String(64), nullable=False, default=""),
)

runs = Table(
    "ledger_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("status", String(32), nullable=False),
    Column("detail", Text),
)

batches = Table(
    "ledger_batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("ledger_runs.id"), nullable=False),
    Column("stream", String(255), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("completed_at", Float),
)

addresses = Table(
    "ledger_addresses",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=False),
    Column("lo", BigInteger, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("clear", Text),
    Column("origin_stream", String(255)),
    Column("origin_destination", Integer),
    Column("opted_out_at", String(64)),  # the record's replication key, as it came
    Column("first_seen_at", Float, nullable=False),
    Column("first_run", Integer),
    Column("present", BigInteger, nullable=False, default=0),
    Column("pending", BigInteger, nullable=False, default=0),
    Column("pending_batch", Integer),
    Column("rejected", BigInteger, nullable=False, default=0),
)
# `pending` and `pending_batch` are set only by a batch that was not accepted (a failed run) and
# by the webhook receiver: a batch in flight keeps its rows in its staging table (`stage.py`).


evidence = Table(
    "ledger_evidence",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, nullable=False),
    Column("batch_id", Integer),
    Column("destination_id", Integer, nullable=False),
    Column("how", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("count", Integer, nullable=False),
    Column("answer", Text),
    Column("ids", LargeBinary, nullable=False),
)

# The webhook receiver's inbox (`optouts_webhooks`, methods in `inbox.py`): each event once it
# is stored (a provider's retry of it is the same `event_key` or `content_key`), and, per
# destination, whether it has accepted it. The clear addresses are kept only until every
# destination accepted the event; the keys stay.
inbox = Table(
    "ledger_inbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", String(32), nullable=False),  # checkmarket, slicktext, slicktext-v2
    Column("stream", String(255), nullable=False),  # decides the origin (skip_origin)
    Column("event_key", String(255), unique=True),  # the provider's own event id, if any
    Column("content_key", String(255), nullable=False, unique=True),
    Column("received_at", Float, nullable=False),
    Column("origin_at", String(64)),  # the event's own time, RFC 3339 UTC
    Column("email", Text),
    Column("phone", Text),
    Column("email_hi", BigInteger),
    Column("email_lo", BigInteger),
    Column("phone_hi", BigInteger),
    Column("phone_lo", BigInteger),
    Column("done_at", Float),
)
inbox_deliveries = Table(
    "ledger_inbox_deliveries",
    metadata,
    Column("inbox_id", Integer, ForeignKey("ledger_inbox.id"), primary_key=True),
    Column("destination", String(64), primary_key=True),  # checkmarket, slicktext, optizmo
    Column("status", String(16), nullable=False),  # pending, done
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_try", Float, nullable=False),
    Column("written_at", Float),
    Column("error", Text),
)
Index(
    "ledger_inbox_due",
    inbox_deliveries.c.destination,
    inbox_deliveries.c.next_try,
    sqlite_where=inbox_deliveries.c.status == "pending",
    postgresql_where=inbox_deliveries.c.status == "pending",
)
