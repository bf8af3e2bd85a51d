"""`tap-optouts | target-optouts` as real processes on one sandbox, for the reliability tests
and the kill-and-resume soak (benchmarks/soak_kill_resume.py).

The test relays the tap's stdout to the target's stdin line by line (as Meltano does), so it
can SIGKILL either process at a chosen point: the tap once it has sent some lines (the rest is
never relayed), the target once it has made some write requests to the providers (counted by
the sandbox) and emitted some STATE lines. Both processes log at DEBUG to stderr and to log
files (a logging config with file handlers), so that the secrets checks can read every byte a
run left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optouts_sandbox import credentials as C
from optouts_sandbox.server import SandboxHTTPServer
from tests.sandbox_support import SECRETS, TAP_BIN, TARGET_BIN, tap_config
from tests.target_support import target_config

LOG_CONFIG = """\
version: 1
disable_existing_loggers: false
formatters:
  plain:
    format: "%(asctime)s %(levelname)s %(name)s %(message)s"
handlers:
  console:
    class: logging.StreamHandler
    stream: ext://sys.stderr
    formatter: plain
  file:
    class: logging.FileHandler
    filename: {log}
    formatter: plain
  wire:
    class: logging.FileHandler
    filename: {wire}
    formatter: plain
loggers:
  urllib3:
    level: DEBUG
    handlers: [wire]
root:
  level: DEBUG
  handlers: [console, file]
"""


@dataclass
class Kill:
    """Where to SIGKILL one side of the pipe."""

    process: str  # "tap" or "target"
    after_lines: int = 0  # tap: once this many lines were relayed
    after_writes: int = 0  # target: once it made this many write requests
    after_states: int = 0  # target: and emitted this many STATE lines


@dataclass
class PipeRun:
    tap_returncode: int
    target_returncode: int
    states: list[dict[str, Any]]  # what the target emitted (its stdout), in order
    relayed: int  # lines the target was sent
    tap_stderr: str
    target_stderr: str
    files: dict[str, str] = field(default_factory=dict)  # every file the run left behind
    killed: str | None = None

    @property
    def last_state(self) -> dict[str, Any] | None:
        return self.states[-1] if self.states else None

    @property
    def ok(self) -> bool:
        return self.tap_returncode == 0 and self.target_returncode == 0

    def everything(self) -> str:
        """Every output of the run: stdout (STATE), stderr, log files, rejects, configs aside."""
        parts = [self.tap_stderr, self.target_stderr, json.dumps(self.states)]
        parts += [text for name, text in self.files.items() if not name.endswith(".json")]
        return "\n".join(parts)


def debug_env(log_dir: Path, name: str) -> dict[str, str]:
    """DEBUG logging for one process, to stderr and to `<name>.log` / `<name>-wire.log`."""
    config = log_dir / f"{name}-logging.yaml"
    config.write_text(
        LOG_CONFIG.format(log=log_dir / f"{name}.log", wire=log_dir / f"{name}-wire.log")
    )
    return {**os.environ, "LOGLEVEL": "DEBUG", "SINGER_SDK_LOG_CONFIG": str(config)}


def pipeline_configs(
    server: SandboxHTTPServer, work: Path, *, tap: dict | None = None, target: dict | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both connectors on every provider of `server`; the target keeps a rejects file."""
    tap_settings = tap_config(server, **(tap or {}))
    target_settings = target_config(
        server, rejects_path=str(work / "rejects.jsonl"), **(target or {})
    )
    return tap_settings, target_settings


def run_pipeline(
    server: SandboxHTTPServer,
    work: Path,
    *,
    state: dict[str, Any] | None = None,
    tap: dict | None = None,
    target: dict | None = None,
    kill: Kill | None = None,
    timeout: float = 120.0,
) -> PipeRun:
    """One run of the pipe, from `state`; `kill` stops one side with SIGKILL."""
    work.mkdir(parents=True, exist_ok=True)
    run_id = len(list(work.glob("run-*"))) + 1
    run_dir = work / f"run-{run_id}"
    run_dir.mkdir()
    tap_settings, target_settings = pipeline_configs(server, work, tap=tap, target=target)
    (run_dir / "tap.json").write_text(json.dumps(tap_settings))
    (run_dir / "target.json").write_text(json.dumps(target_settings))
    tap_command = [str(TAP_BIN), "--config", str(run_dir / "tap.json")]
    if state is not None:
        (run_dir / "state.json").write_text(json.dumps(state))
        tap_command += ["--state", str(run_dir / "state.json")]
    with (
        open(run_dir / "tap.stderr", "wb") as tap_err,
        open(run_dir / "target.stderr", "wb") as target_err,
    ):
        tap_proc = subprocess.Popen(
            tap_command,
            stdout=subprocess.PIPE,
            stderr=tap_err,
            env=debug_env(run_dir, "tap"),
        )
        target_proc = subprocess.Popen(
            [str(TARGET_BIN), "--config", str(run_dir / "target.json")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=target_err,
            env=debug_env(run_dir, "target"),
        )
        states: list[dict[str, Any]] = []
        reader = threading.Thread(target=_read_states, args=(target_proc, states), daemon=True)
        reader.start()
        writes = lambda: target_writes(server)  # noqa: E731
        relayed, killed = _relay(tap_proc, target_proc, states, kill, writes, timeout)
        tap_code = _wait(tap_proc, timeout)
        target_code = _wait(target_proc, timeout)
        reader.join(timeout)
    files = {
        path.name: path.read_text("utf-8", "replace")
        for path in sorted([*run_dir.iterdir(), *work.glob("rejects.jsonl")])
        if path.is_file()
    }
    return PipeRun(
        tap_code,
        target_code,
        states,
        relayed,
        files.get("tap.stderr", ""),
        files.get("target.stderr", ""),
        files,
        killed,
    )


def _read_states(process: subprocess.Popen[bytes], states: list[dict[str, Any]]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip():
            states.append(json.loads(line))


def _relay(
    tap: subprocess.Popen[bytes],
    target: subprocess.Popen[bytes],
    states: list[dict[str, Any]],
    kill: Kill | None,
    writes: Callable[[], int],
    timeout: float,
) -> tuple[int, str | None]:
    """Copy the tap's lines to the target; apply `kill`. Returns (lines relayed, killed)."""
    assert tap.stdout is not None and target.stdin is not None
    relayed = 0
    killed: list[str] = []
    watcher: threading.Thread | None = None
    if kill is not None and kill.process == "target":
        watcher = threading.Thread(
            target=_kill_target,
            args=(target, states, kill, writes, timeout, killed),
            daemon=True,
        )
        watcher.start()
    try:
        for line in tap.stdout:
            if kill is not None and kill.process == "tap" and relayed >= kill.after_lines:
                tap.send_signal(signal.SIGKILL)
                killed.append("tap")
                break
            target.stdin.write(line)
            target.stdin.flush()
            relayed += 1
    except BrokenPipeError:
        pass  # the target is gone
    finally:
        # Like a shell pipe: the tap's next write fails once nobody reads, and the target
        # sees the end of its input.
        tap.stdout.close()
        with contextlib.suppress(BrokenPipeError):
            target.stdin.close()
    if watcher is not None:
        watcher.join(timeout)
    return relayed, killed[0] if killed else None


def _kill_target(
    target: subprocess.Popen[bytes],
    states: list[dict[str, Any]],
    kill: Kill,
    writes: Callable[[], int],
    timeout: float,
    killed: list[str],
) -> None:
    deadline = time.monotonic() + timeout
    while len(states) < kill.after_states or writes() < kill.after_writes:
        if time.monotonic() > deadline or target.poll() is not None:
            return
        time.sleep(0.005)
    if target.poll() is None:
        target.send_signal(signal.SIGKILL)
        killed.append("target")


def _wait(process: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


# Requests only the target makes (the tap's POSTs are Optizmo prepare-download).
TARGET_WRITES = ("checkmarket POST", "slicktext POST", "optizmo-collect POST", "optizmo PUT")


def target_writes(server: SandboxHTTPServer) -> int:
    with server.sandbox.stats_lock:
        return sum(server.sandbox.stats.get(key, 0) for key in TARGET_WRITES)


def signatures(server: SandboxHTTPServer) -> set[str]:
    """Every pre-signed URL signature the sandbox handed out."""
    optizmo: Any = server.sandbox.emulators["optizmo"]
    found = {download.signature for download in optizmo.downloads.values()}
    found |= {upload.signature for upload in optizmo.uploads.values()}
    return found


def leaks(text: str, extra: Iterable[str] = ()) -> list[str]:
    """The secrets (credentials, Authorization values, signatures) present in `text`."""
    import base64

    basic = base64.b64encode(f"{C.SLICKTEXT_PUBLIC_KEY}:{C.SLICKTEXT_PRIVATE_KEY}".encode())
    candidates = [*SECRETS, basic.decode(), *extra]
    return [secret for secret in candidates if secret and secret in text]
