"""A throwaway PostgreSQL server on loopback (Debian's `postgresql` package), for the tests that
run real Meltano plugins against it. Queries go through `psql --csv`: no driver needed here."""

from __future__ import annotations

import csv
import io
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.meltano_support import free_port

PG_ROOT = Path("/usr/lib/postgresql")


def bin_dir() -> Path | None:
    """The newest installed server's binaries (initdb, pg_ctl, psql), if any."""
    candidates = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Postgres:
    bin: Path
    host: str
    port: int
    user: str = "postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def psql(self, database: str, sql: str) -> list[dict[str, str]]:
        """Run `sql`; the rows of the last statement as dicts (values as psql prints them)."""
        result = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "--csv",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return list(csv.DictReader(io.StringIO(result.stdout)))

    def scalar(self, database: str, sql: str) -> str:
        rows = self.psql(database, sql)
        return next(iter(rows[0].values()))

    def create_database(self, name: str) -> None:
        self.psql("postgres", f'CREATE DATABASE "{name}"')


def _as_owner(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its server programs as `postgres` then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """initdb in a temporary folder, a server on a free loopback port (trust auth for
    127.0.0.1 only), stopped and removed afterwards."""
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed: run `bash scripts/setup.sh` (as root)")
    folder = Path(tempfile.mkdtemp(prefix="optouts-pg-"))
    data, sockets = folder / "data", folder / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (folder, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    run = {"capture_output": True, "text": True, "timeout": 120, "check": False}
    init = subprocess.run(
        _as_owner(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        **run,
    )
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    pg_ctl = str(binaries / "pg_ctl")
    log = folder / "server.log"
    started = subprocess.run(
        _as_owner([pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]), **run
    )
    if started.returncode != 0:
        detail = log.read_text() if log.exists() else started.stderr
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {detail.strip()[-2000:]}")
    try:
        yield Postgres(binaries, "127.0.0.1", port)
    finally:
        subprocess.run(_as_owner([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]), **run)
        shutil.rmtree(folder, ignore_errors=True)


def meltano_env(env: dict[str, str], pg: Postgres) -> dict[str, str]:
    """`env` with meltano.yml's PostgreSQL plugins pointed at `pg` (host and port only: the
    sandbox environment names the user and the databases)."""
    return {
        **env,
        "TARGET_POSTGRES_HOST": pg.host,
        "TARGET_POSTGRES_PORT": str(pg.port),
        "TAP_POSTGRES_HOST": pg.host,
        "TAP_POSTGRES_PORT": str(pg.port),
    }
