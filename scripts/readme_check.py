"""Run every command of README.md as a new user would: in a fresh copy of the project.

    python3 scripts/readme_check.py            # run them (CI: .ci/run)
    python3 scripts/readme_check.py --list     # print the blocks and what would be skipped

The README's ```sh blocks run in order, in one bash session (an `export` carries over), with
`set -euo pipefail`. A block preceded by `<!-- readme-check: skip (REASON) -->` is not run; the
reason is printed (production credentials, a command that runs this check itself). The copy is
`git ls-files --cached --others --exclude-standard`: what a clone would hold, plus files not yet
committed. uv's cache is reused, so the set-up costs little.

What the commands need besides the project: the sandbox on port 8765 and a PostgreSQL at
127.0.0.1:5432 (user postgres). Where 8765 is taken, OPTOUTS_SANDBOX_PORT moves the sandbox and
meltano.yml's sandbox environment to a free port; a
throwaway PostgreSQL is started on a free port and named by TARGET_POSTGRES_PORT,
TAP_POSTGRES_PORT and PGPORT, as the README tells its readers to do for their own server.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres_support import running_postgres  # noqa: E402

BLOCK = re.compile(
    r"(?:<!-- readme-check: skip \((?P<skip>[^)]*)\) -->\s*\n)?```sh\n(?P<body>.*?)```", re.S
)
SANDBOX_PORT = 8765


@dataclass
class Block:
    line: int
    body: str
    skip: str | None


def blocks(readme: str) -> list[Block]:
    return [
        Block(readme.count("\n", 0, m.start("body")) + 1, m.group("body"), m.group("skip"))
        for m in BLOCK.finditer(readme)
    ]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sandbox_overrides() -> dict[str, str]:
    """Nothing when 8765 is free; else the sandbox environment moved to a free port (one
    variable: meltano.yml builds the plugins' base URLs from it)."""
    if _port_free(SANDBOX_PORT):
        return {}
    return {"OPTOUTS_SANDBOX_PORT": str(_free_port())}


def copy_project(destination: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        name = raw.decode()
        source = ROOT / name
        target = destination / name
        if source.is_symlink():  # packages/<dist>/<package>: a link, as a clone has it
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.readlink())
            continue
        if not source.is_file():
            continue  # deleted in the working tree
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def script(selected: list[Block]) -> str:
    parts = ["set -euo pipefail"]
    for block in selected:
        parts.append(f"echo '--- README.md line {block.line} ---' >&2")
        for line in block.body.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                parts.append(f"echo '$ '{_quote(line)} >&2")
            parts.append(line)
    return "\n".join(parts) + "\n"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def main() -> int:
    readme = (ROOT / "README.md").read_text()
    found = blocks(readme)
    runnable = [b for b in found if b.skip is None]
    for block in found:
        if block.skip is not None:
            print(f"README.md line {block.line}: skipped ({block.skip})")
    if "--list" in sys.argv:
        for block in runnable:
            print(f"README.md line {block.line}: runs\n{block.body}")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="readme-check-"))
    clone = workdir / "optouts"
    copy_project(clone)
    started = time.monotonic()
    with running_postgres() as pg:
        env = {
            **os.environ,
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TARGET_POSTGRES_HOST": pg.host,
            "TARGET_POSTGRES_PORT": str(pg.port),
            "TAP_POSTGRES_HOST": pg.host,
            "TAP_POSTGRES_PORT": str(pg.port),
            "PGPORT": str(pg.port),
            **sandbox_overrides(),
        }
        env.pop("VIRTUAL_ENV", None)
        for key in sorted(set(env) - set(os.environ)):
            print(f"  {key}={env[key]}")
        result = subprocess.run(
            ["bash", "-c", script(runnable)], cwd=clone, env=env, timeout=1800, check=False
        )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        print(f"README check FAILED (exit {result.returncode}) after {seconds:.0f}s; copy: {clone}")
        return 1
    print(f"README check passed: {len(runnable)} blocks in a fresh copy, {seconds:.0f}s")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
