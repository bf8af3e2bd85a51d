"""Running Meltano against this project, isolated per test (own system database, own
sandbox port, own output folder), for the tests whose contract is Meltano's."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Meltano's system folder (plugin venvs, run files) for this test process only: runs in
# parallel sessions must not share `.meltano/run/`, and the tests leave `.meltano/` alone.
SYS_DIR = Path(tempfile.mkdtemp(prefix="meltano-sys-"))
atexit.register(shutil.rmtree, SYS_DIR, ignore_errors=True)  # plugin venvs: hundreds of MB


def meltano_executable() -> str:
    local = ROOT / ".tools" / "meltano" / "bin" / "meltano"
    if local.exists():
        return str(local)
    found = shutil.which("meltano")
    if not found:
        raise RuntimeError("meltano is not installed: run `bash scripts/setup.sh` first")
    return found


def meltano_version() -> tuple[int, ...]:
    """The version of the Meltano `meltano_executable()` runs, from its installed metadata
    (`meltano --version` takes seconds to start)."""
    site = Path(meltano_executable()).resolve().parent.parent / "lib"
    found = sorted(site.glob("python3*/site-packages/meltano-*.dist-info"))
    if not found:
        raise RuntimeError(f"no meltano-*.dist-info under {site}")
    version = found[0].name.removeprefix("meltano-").removesuffix(".dist-info")
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sandbox_env(tmp_path: Path, sandbox_url: str, port: int | None = None) -> dict[str, str]:
    """Environment that points the sandbox environment of meltano.yml at `sandbox_url`."""
    env = {
        **os.environ,
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "MELTANO_SYS_DIR_ROOT": str(SYS_DIR),
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_ENVIRONMENT": "sandbox",
        "OPTOUTS_SANDBOX_DIR": str(tmp_path / "sandbox-run"),
        "TARGET_JSONL_DESTINATION_PATH": str(tmp_path / "output"),
        "TARGET_OPTOUTS_REJECTS_PATH": str(tmp_path / "output" / "rejects.jsonl"),
        "TARGET_OPTOUTS_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger' / 'ledger.sqlite'}",
        # The optouts-ledger utility reads the same ledger (its own setting `url`).
        "OPTOUTS_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger' / 'ledger.sqlite'}",
        "TAP_OPTOUTS_CHECKMARKET_BASE_URL": f"{sandbox_url}/checkmarket",
        "TAP_OPTOUTS_SLICKTEXT_BASE_URL": f"{sandbox_url}/slicktext",
        "TAP_OPTOUTS_OPTIZMO_BASE_URL": f"{sandbox_url}/optizmo",
        "TAP_OPTOUTS_OPTIZMO_POLL_INTERVAL_SECONDS": "1",
        "TARGET_OPTOUTS_CHECKMARKET_BASE_URL": f"{sandbox_url}/checkmarket",
        "TARGET_OPTOUTS_SLICKTEXT_BASE_URL": f"{sandbox_url}/slicktext",
        "TARGET_OPTOUTS_OPTIZMO_BASE_URL": f"{sandbox_url}/optizmo",
        "TARGET_OPTOUTS_OPTIZMO_COLLECT_BASE_URL": f"{sandbox_url}/optizmo-collect",
    }
    if port is not None:
        env["OPTOUTS_SANDBOX_PORT"] = str(port)
    return env


def meltano(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [meltano_executable(), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# The project's own plugins and target-jsonl; the third-party ones are installed by the tests
# that need them (ensure_installed(env, "target-postgres", ...)).
CORE_PLUGINS = ("tap-optouts", "target-optouts", "target-jsonl", "optouts-sandbox")
_installed: set[str] = set()


def ensure_installed(env: dict[str, Any], *plugins: str) -> None:
    """`meltano install <plugins>` (default: CORE_PLUGINS), each plugin once per test session
    (its venv lives in this process's MELTANO_SYS_DIR_ROOT)."""
    wanted = [p for p in (plugins or CORE_PLUGINS) if p not in _installed]
    if not wanted:
        return
    result = meltano("install", *wanted, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    _installed.update(wanted)


def jsonl_lines(folder: Path) -> dict[str, int]:
    """Lines per stream in target-jsonl's output (timestamped file names)."""
    counts: dict[str, int] = {}
    for path in sorted(folder.glob("*.jsonl")):
        stream = path.name.rsplit("-", 1)[0] if "-" in path.stem else path.stem
        with path.open() as handle:
            counts[stream] = counts.get(stream, 0) + sum(1 for _ in handle)
    return counts


def tap_summaries(output: str) -> list[dict[str, Any]]:
    """The `tap-optouts summary json:` of each tap run in a Meltano command's log, in order."""
    return [
        json.loads(found)
        for found in re.findall(r"tap-optouts summary json: (\{.*\})\s*$", output, re.M)
    ]
