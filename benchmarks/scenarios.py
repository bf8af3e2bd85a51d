"""The sandboxes the benchmark runs, and the connector settings that point at them.

Three sandboxes, each a separate `optouts-sandbox serve` process with the benchmark population
(`--only`: every person opted out at exactly those providers, with an email and a phone):

- `read`:  checkmarket, slicktext and optizmo hold N opt-outs each (the taps read them);
- `write`: only Optizmo holds N (the target writes to the empty CheckMarket, SlickText and the
  spare Optizmo list; reset before every writing figure);
- `big`:   only Optizmo holds the big list (the `meltano run` figure; reset before each round).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optouts_sandbox import credentials as C
from tests.meltano_support import free_port, meltano_executable

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
__all__ = ["meltano_executable"]


class SandboxProcess:
    """`optouts-sandbox serve` in the background, on a free port."""

    def __init__(self, name: str, size: int, only: str, log_dir: Path) -> None:
        self.name, self.size, self.only = name, size, only
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"sandbox-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 900) -> float:
        """Start and wait until seeded; returns the seconds it took."""
        command = [str(VENV_BIN / "optouts-sandbox"), "serve", "--port", str(self.port)]
        command += ["--size", str(self.size), "--only", self.only]
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        STARTED.append(self)
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"sandbox {self.name} exited; see {self.log}")
            try:
                if requests.get(f"{self.url}/_sandbox/health", timeout=1).ok:
                    return time.perf_counter() - started
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"sandbox {self.name} did not start within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def reset(self) -> float:
        """Reseed (what a writing figure wrote is gone); returns the seconds it took."""
        started = time.perf_counter()
        requests.post(f"{self.url}/_sandbox/reset", json={}, timeout=900).raise_for_status()
        return time.perf_counter() - started

    def stats(self) -> dict[str, int]:
        return requests.get(f"{self.url}/_sandbox/stats", timeout=60).json()

    def base(self, provider: str) -> str:
        return f"{self.url}/{provider}"


STARTED: list[SandboxProcess] = []


def stop_all() -> None:
    """Stop every sandbox this process started."""
    while STARTED:
        STARTED.pop().stop()


def request_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Provider requests made between two /_sandbox/stats answers (faults and 429s aside)."""
    out: dict[str, int] = {}
    for key, value in after.items():
        kind = key.partition(" ")[2]
        if kind.isupper() and value - before.get(key, 0):
            out[key] = value - before.get(key, 0)
    return out


# -- connector settings ----------------------------------------------------------------------
def tap_config(sandbox: SandboxProcess, source: str) -> dict[str, Any]:
    """The tap reading one source: checkmarket, slicktext, slicktext-v2, optizmo (email list)
    or optizmo-sms."""
    config: dict[str, Any] = {"start_date": "2025-01-01T00:00:00Z", "lookback_minutes": 0}
    if source == "checkmarket":
        config["checkmarket"] = {
            "base_url": sandbox.base("checkmarket"),
            "master_key": C.CHECKMARKET_MASTER_KEY,
            "key": C.CHECKMARKET_KEY,
        }
    elif source == "slicktext":
        config["slicktext"] = {
            "base_url": sandbox.base("slicktext"),
            "public_key": C.SLICKTEXT_PUBLIC_KEY,
            "private_key": C.SLICKTEXT_PRIVATE_KEY,
        }
    elif source == "slicktext-v2":
        config["slicktext"] = {
            "base_url": sandbox.base("slicktext-v2"),
            "api_key": C.SLICKTEXT_V2_API_KEY,
            "brand_id": C.SLICKTEXT_V2_BRAND_ID,
            "requests_per_second": 100_000,  # rate limits off: the machine is the limit
        }
    else:
        list_id = C.OPTIZMO_SMS_LIST_ID if source == "optizmo-sms" else C.OPTIZMO_EMAIL_LIST_ID
        config["optizmo"] = {
            "base_url": sandbox.base("optizmo"),
            "api_key": C.OPTIZMO_API_KEY,
            "list_ids": [list_id],
            "poll_interval_seconds": 0.2,
        }
    return config


def target_config(sandbox: SandboxProcess, destinations: list[str]) -> dict[str, Any]:
    """The target writing to `destinations` (checkmarket, optizmo = the spare email list,
    slicktext (legacy), slicktext-v2). Origins are not skipped: the recorded streams come
    from the providers."""
    # No ledger: each round writes everything (the ledger's figures set their own).
    config: dict[str, Any] = {"skip_origin": False, "ledger_url": ""}
    if "checkmarket" in destinations:
        config["checkmarket"] = {
            "base_url": sandbox.base("checkmarket"),
            "master_key": C.CHECKMARKET_MASTER_KEY,
            "key": C.CHECKMARKET_KEY,
        }
    if "optizmo" in destinations:
        config["optizmo"] = {
            "base_url": sandbox.base("optizmo"),
            "collect_base_url": sandbox.base("optizmo-collect"),
            "api_key": C.OPTIZMO_API_KEY,
            "email_list_id": C.OPTIZMO_SPARE_EMAIL_LIST_ID,
            "poll_interval_seconds": 0.2,
        }
    if "slicktext" in destinations:
        config["slicktext"] = {
            "base_url": sandbox.base("slicktext"),
            "public_key": C.SLICKTEXT_PUBLIC_KEY,
            "private_key": C.SLICKTEXT_PRIVATE_KEY,
        }
    if "slicktext-v2" in destinations:
        config["slicktext"] = {
            "base_url": sandbox.base("slicktext-v2"),
            "api_key": C.SLICKTEXT_V2_API_KEY,
            "brand_id": C.SLICKTEXT_V2_BRAND_ID,
            "requests_per_second": 100_000,  # rate limits off: the machine is the limit
        }
    return config


def meltano_env(
    base_env: dict[str, str], sandbox: SandboxProcess, work: Path, *, batch: bool
) -> dict[str, str]:
    """`meltano run tap-optouts target-optouts` (meltano.yml's sandbox environment) on the big
    sandbox: the tap reads the Optizmo email list (and the empty CheckMarket and SlickText
    lists), the target writes to CheckMarket and the spare Optizmo list."""
    env = {
        **base_env,
        "MELTANO_DATABASE_URI": f"sqlite:///{work / 'meltano.db'}",
        "MELTANO_SYS_DIR_ROOT": str(work.parent / "meltano-sys"),
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_ENVIRONMENT": "sandbox",
        "TAP_OPTOUTS_CHECKMARKET_BASE_URL": sandbox.base("checkmarket"),
        "TAP_OPTOUTS_SLICKTEXT_BASE_URL": sandbox.base("slicktext"),
        "TAP_OPTOUTS_OPTIZMO_BASE_URL": sandbox.base("optizmo"),
        "TAP_OPTOUTS_OPTIZMO_LIST_IDS": json.dumps([C.OPTIZMO_EMAIL_LIST_ID]),
        "TAP_OPTOUTS_OPTIZMO_POLL_INTERVAL_SECONDS": "1",
        "TARGET_OPTOUTS_CHECKMARKET_BASE_URL": sandbox.base("checkmarket"),
        "TARGET_OPTOUTS_SLICKTEXT_BASE_URL": sandbox.base("slicktext"),
        "TARGET_OPTOUTS_OPTIZMO_BASE_URL": sandbox.base("optizmo"),
        "TARGET_OPTOUTS_OPTIZMO_COLLECT_BASE_URL": sandbox.base("optizmo-collect"),
        "TARGET_OPTOUTS_OPTIZMO_EMAIL_LIST_ID": C.OPTIZMO_SPARE_EMAIL_LIST_ID,
        "TARGET_OPTOUTS_SKIP_ORIGIN": "false",
        "TARGET_OPTOUTS_REJECTS_PATH": str(work / "rejects.jsonl"),
    }
    if batch:
        env["TAP_OPTOUTS_BATCH_CONFIG"] = json.dumps(batch_config(work / "batches"))
    return env


def batch_config(folder: Path) -> dict[str, Any]:
    """BATCH messages: JSON-lines files in a local folder."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "encoding": {"format": "jsonl", "compression": "none"},
        "storage": {"root": f"file://{folder}", "prefix": "batch-"},
        "batch_size": 100_000,
    }
