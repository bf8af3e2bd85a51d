"""The real data stack: Debian's PostgreSQL, MeltanoLabs' target-postgres and tap-postgres, and
meltano-map-transform, run by Meltano from this project's meltano.yml against the sandbox.

One sandbox, one PostgreSQL server, three Meltano commands:

1. `meltano elt tap-optouts target-postgres --state-id <the warehouse job's state id>`: every
   opt-out into the warehouse (schema `optouts`).
2. Late opt-outs land at the providers and in the CRM table `crm.unsubscribes`; then
   `meltano run crm-to-providers warehouse-hashed`: tap-postgres reads the table, the
   `crm-to-optouts` mapping renames its columns, target-optouts writes the opt-outs to every
   provider; then every opt-out goes through the `hash-emails` mapping into the schema
   `optouts_hashed`.
3. `meltano el tap-optouts target-postgres --state-id <the same>`: the second, incremental run
   continues from the bookmarks the first left, and brings in only what is new.

`meltano run warehouse` keeps its state under that same id, so the three commands can take turns.
"""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from optouts_sandbox import credentials as C
from tests.meltano_support import ensure_installed, meltano, sandbox_env, tap_summaries
from tests.postgres_support import bin_dir, meltano_env, running_postgres
from tests.sandbox_support import control, held_addresses, running_sandbox

pytestmark = pytest.mark.timeout(900)

STREAMS = {
    # stream: (replication key, partition column or None)
    "checkmarket_optouts": ("DateOptOut", None),
    "slicktext_optouts": ("optOutDate", None),
    "optizmo_optouts": ("timestamp", "optout_list_id"),
}
TYPES = {
    "checkmarket_optouts": {
        "ContactId": "bigint",
        "SurveyId": "bigint",
        "DateOptOut": "timestamp without time zone",
        "Email": "text",
        "PhoneNumber": "text",
    },
    "slicktext_optouts": {
        "id": "text",
        "number": "text",
        "optOutDate": "timestamp without time zone",
        "subscribedDate": "timestamp without time zone",
        "birthDate": "date",
    },
    "optizmo_optouts": {
        "optout_list_id": "text",
        "plain": "text",
        "hashed": "text",
        "timestamp": "timestamp without time zone",
    },
}
PRIMARY_KEYS = {
    "checkmarket_optouts": 'PRIMARY KEY ("ContactId", "SurveyId")',
    "slicktext_optouts": "PRIMARY KEY (id)",
    "optizmo_optouts": "PRIMARY KEY (optout_list_id, hashed)",
}
CRM_ROWS = [
    # contact_email, mobile_phone: what a CRM holds, in the shapes people type
    ("crm.one@ecosystem.example.com", "+12065550101"),
    (" CRM.Two@Ecosystem.Example.com ", None),
    (None, "(206) 555-0103"),
]
CRM_EMAILS = {"crm.one@ecosystem.example.com", "crm.two@ecosystem.example.com"}
CRM_PHONES = {"+12065550101", "+12065550103"}
STATE_ID = "sandbox:tap-optouts-to-target-postgres"  # what `meltano run warehouse` uses
LATE = {
    "checkmarket": [{"Email": "late.checkmarket@ecosystem.example.com"}],
    "slicktext": [{"number": "+12065550199"}],
    "optizmo": [
        {"list_id": C.OPTIZMO_EMAIL_LIST_ID, "email": "late.optizmo@ecosystem.example.com"}
    ],
}


def _md5(value: str) -> str:
    return hashlib.md5(value.encode()).hexdigest()


def _e164(value: str) -> str:
    return value if value.startswith("+") else "+" + value


def _contents(pg, schema: str) -> dict[str, set[str] | int]:
    """What a warehouse schema holds, in the terms of /_sandbox/inspect."""
    cm = pg.psql("warehouse", f'SELECT "Email", "PhoneNumber" FROM {schema}.checkmarket_optouts')
    st = pg.psql("warehouse", f"SELECT number FROM {schema}.slicktext_optouts")
    oz = pg.psql("warehouse", f"SELECT optout_list_id, plain FROM {schema}.optizmo_optouts")

    def plain(list_id: str) -> list[str]:
        return [r["plain"] for r in oz if r["optout_list_id"] == list_id and r["plain"]]

    return {
        "checkmarket rows": len(cm),
        "checkmarket emails": {r["Email"].lower() for r in cm if r["Email"]},
        "checkmarket phones": {r["PhoneNumber"] for r in cm if r["PhoneNumber"]},
        "slicktext rows": len(st),
        "slicktext phones": {r["number"] for r in st if r["number"]},
        "optizmo email rows": sum(1 for r in oz if r["optout_list_id"] == C.OPTIZMO_EMAIL_LIST_ID),
        "optizmo sms rows": sum(1 for r in oz if r["optout_list_id"] == C.OPTIZMO_SMS_LIST_ID),
        "optizmo emails": set(plain(C.OPTIZMO_EMAIL_LIST_ID)),
        "optizmo phones": {_e164(p) for p in plain(C.OPTIZMO_SMS_LIST_ID)},
    }


def _expected(held: dict) -> dict[str, set[str] | int]:
    """The same view of what the providers hold."""
    lists = held["optizmo"]["lists"]
    addresses = held_addresses(held)
    return {
        "checkmarket rows": held["checkmarket"]["count"],
        "checkmarket emails": addresses["checkmarket emails"],
        "checkmarket phones": addresses["checkmarket phones"],
        "slicktext rows": held["slicktext"]["count"],
        "slicktext phones": addresses["slicktext phones"],
        "optizmo email rows": lists[C.OPTIZMO_EMAIL_LIST_ID]["count"],
        "optizmo sms rows": lists[C.OPTIZMO_SMS_LIST_ID]["count"],
        "optizmo emails": addresses["optizmo emails"],
        "optizmo phones": addresses["optizmo phones"],
    }


def _started_from(stderr: str) -> dict[str, set[str]]:
    """The bookmark each stream (partition) started from, as the SDK logs it."""
    found: dict[str, set[str]] = {}
    for stream, value in re.findall(
        r"Starting incremental sync of '(\w+)' with bookmark value: (\S+)", stderr
    ):
        found.setdefault(stream, set()).add(value)
    return found


def _rows(pg, stream: str) -> int:
    return int(pg.scalar("warehouse", f"SELECT count(*) FROM optouts.{stream}"))


def _boundary_rows(pg, stream: str) -> int:
    """Rows equal to their partition's bookmark: an incremental run reads them again."""
    key, partition = STREAMS[stream]
    group = f"GROUP BY {partition}" if partition else ""
    by = f"{partition}, " if partition else ""
    sql = (
        f'SELECT count(*) FROM optouts.{stream} WHERE ({by}"{key}") IN '
        f'(SELECT {by}max("{key}") FROM optouts.{stream} {group})'
    )
    return int(pg.scalar("warehouse", sql))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if bin_dir() is None:
        # CI installs it (scripts/setup.sh); elsewhere, say why these tests did not run.
        message = "PostgreSQL is not installed (as root: apt-get install postgresql)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    tmp_path = tmp_path_factory.mktemp("stack")
    with running_postgres() as pg, running_sandbox() as server:
        pg.create_database("warehouse")
        pg.create_database("crm")
        env = meltano_env(sandbox_env(tmp_path, server.url), pg)
        # Exact incremental counts: no lookback, so a second run re-reads only bookmark rows.
        env["TAP_OPTOUTS_LOOKBACK_MINUTES"] = "0"
        ensure_installed(
            env,
            "tap-optouts",
            "target-optouts",
            "target-postgres",
            "target-postgres-hashed",
            "tap-postgres",
            "meltano-map-transformer",
        )
        out: dict = {"pg": pg, "held_before": control(server, "inspect")}
        out["first"] = meltano(
            "elt", "tap-optouts", "target-postgres", "--state-id", STATE_ID, env=env
        )
        out["held_first"] = control(server, "inspect")
        out["rows_first"] = {s: _rows(pg, s) for s in STREAMS}
        out["boundary_first"] = {s: _boundary_rows(pg, s) for s in STREAMS}
        out["warehouse_first"] = _contents(pg, "optouts")
        out["types"] = {
            (r["table_name"], r["column_name"]): r["data_type"]
            for r in pg.psql(
                "warehouse",
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'optouts'",
            )
        }
        out["keys"] = {
            r["table"]: r["key"]
            for r in pg.psql(
                "warehouse",
                "SELECT conrelid::regclass::text AS table, pg_get_constraintdef(oid) AS key "
                "FROM pg_constraint WHERE contype = 'p' AND connamespace = 'optouts'::regnamespace",
            )
        }

        for provider, records in LATE.items():
            control(server, "optouts", {"provider": provider, "records": records})
        pg.psql(
            "crm",
            "CREATE SCHEMA crm; CREATE TABLE crm.unsubscribes (id serial PRIMARY KEY, "
            "contact_email text, mobile_phone text, reason text, "
            "updated_at timestamptz NOT NULL DEFAULT now())",
        )
        values = ", ".join(
            "({}, {}, 'unsubscribed')".format(*(f"'{v}'" if v is not None else "NULL" for v in row))
            for row in CRM_ROWS
        )
        pg.psql(
            "crm",
            f"INSERT INTO crm.unsubscribes (contact_email, mobile_phone, reason) VALUES {values}",
        )
        out["held_late"] = control(server, "inspect")
        out["crm"] = meltano("run", "crm-to-providers", "warehouse-hashed", env=env)
        out["hashed"] = _contents(pg, "optouts_hashed")
        out["hashed_raw"] = pg.psql(
            "warehouse",
            'SELECT "Email" AS value FROM optouts_hashed.checkmarket_optouts '
            "UNION ALL SELECT email FROM optouts_hashed.slicktext_optouts "
            "UNION ALL SELECT plain FROM optouts_hashed.optizmo_optouts",
        )
        out["second"] = meltano(
            "el", "tap-optouts", "target-postgres", "--state-id", STATE_ID, env=env
        )
        out["held_second"] = control(server, "inspect")
        out["rows_second"] = {s: _rows(pg, s) for s in STREAMS}
        out["warehouse_second"] = _contents(pg, "optouts")
        yield out


def test_first_run_loads_every_optout_into_postgres(stack):
    assert stack["first"].returncode == 0, stack["first"].stderr[-5000:]
    assert stack["warehouse_first"] == _expected(stack["held_first"])
    # The sync read what the providers held before: the warehouse run writes nowhere else.
    assert stack["held_first"] == stack["held_before"]
    (summary,) = tap_summaries(stack["first"].stderr)
    assert {s: v["records"] for s, v in summary["streams"].items()} == stack["rows_first"]


def test_columns_have_the_types_of_the_stream_schemas(stack):
    found = {(t, c): stack["types"].get((t, c)) for t, cols in TYPES.items() for c in cols}
    assert found == {(t, c): kind for t, cols in TYPES.items() for c, kind in cols.items()}
    assert stack["keys"] == {f"optouts.{t}": key for t, key in PRIMARY_KEYS.items()}


def test_hashed_warehouse_holds_no_email_in_clear(stack):
    assert stack["crm"].returncode == 0, stack["crm"].stderr[-5000:]
    clear = _expected(stack["held_second"])
    hashed = stack["hashed"]
    assert all("@" not in (r["value"] or "") for r in stack["hashed_raw"])
    # Emails became the MD5 of the address (Optizmo's own hash, so they join across providers).
    assert hashed["checkmarket emails"] == {_md5(e) for e in clear["checkmarket emails"]}
    assert hashed["optizmo emails"] == set()
    # Phones and row counts are untouched.
    for key in ("checkmarket phones", "slicktext phones", "optizmo phones", "checkmarket rows"):
        assert hashed[key] == clear[key], key


def test_crm_table_optouts_land_at_every_provider(stack):
    assert stack["crm"].returncode == 0, stack["crm"].stderr[-5000:]
    late, after = held_addresses(stack["held_late"]), held_addresses(stack["held_second"])
    added = {name: after[name] - late[name] for name in after}
    assert added == {
        "checkmarket emails": CRM_EMAILS,
        "checkmarket phones": CRM_PHONES,
        "slicktext phones": CRM_PHONES,
        "optizmo emails": CRM_EMAILS,
        "optizmo phones": CRM_PHONES,
    }


def test_second_warehouse_run_is_incremental_and_complete(stack):
    assert stack["second"].returncode == 0, stack["second"].stderr[-5000:]
    # Everything the providers hold now is in the warehouse: the late opt-outs and the CRM's.
    assert stack["warehouse_second"] == _expected(stack["held_second"])
    assert "late.optizmo@ecosystem.example.com" in stack["warehouse_second"]["optizmo emails"]
    # el started each stream (partition) from the bookmarks elt ended at, kept by Meltano
    # under the state id ...
    (first,), (summary,) = (
        tap_summaries(stack["first"].stderr),
        tap_summaries(stack["second"].stderr),
    )
    ended = {name: set(s["bookmarks"]) for name, s in first["streams"].items()}
    assert set(ended) == set(STREAMS) and all(ended.values()), ended
    assert _started_from(stack["second"].stderr) == ended
    # ... and read only the new rows, and the rows equal to each bookmark (at-least-once); the
    # loader's upsert on the stream keys keeps those from doubling.
    read = {s: v["records"] for s, v in summary["streams"].items()}
    new = {s: stack["rows_second"][s] - stack["rows_first"][s] for s in STREAMS}
    assert all(count > 0 for count in new.values()), new
    assert read == {s: new[s] + stack["boundary_first"][s] for s in STREAMS}
