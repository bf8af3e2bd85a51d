"""Running the measured processes: wall time, exit status and the peak RSS of each process.

Peak RSS is the kernel's high-water mark (`VmHWM` in /proc/<pid>/status), read every 50 ms for
every process of the tree (Meltano's plugins are grandchildren; the tree is walked through
/proc/<pid>/task/<tid>/children, which costs next to nothing, unlike a scan of every process);
the largest value read per role (tap, target, meltano, ...) is kept. For a direct child that
starts no process of its own (not Meltano), its `wait4` figure (exact) counts as well.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

POLL_SECONDS = 0.05
ROLES = ("tap-optouts", "target-optouts", "meltano", "reference.py")


@dataclass
class Measured:
    wall: float
    returncodes: list[int]
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return all(code == 0 for code in self.returncodes)


def role_of(cmdline: Sequence[str]) -> str:
    """tap-optouts, target-optouts, meltano, or the program's name."""
    for part in cmdline[:3]:
        name = Path(part).name
        for role in ROLES:
            if name == role or name.startswith(role + "."):
                return role.removesuffix(".py")
    return Path(cmdline[0]).name if cmdline else "?"


def _tree(root: int) -> list[int]:
    """`root` and its descendants (Linux: each thread's children file)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError):
            continue
    return found


def _hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RssWatch(threading.Thread):
    """Polls the peak RSS of every process below the given roots until stopped."""

    def __init__(self, roots: Sequence[int]) -> None:
        super().__init__(daemon=True)
        self.roots = list(roots)
        self.peaks: dict[str, int] = {}
        self._roles: dict[int, str] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(POLL_SECONDS)

    def sample(self) -> None:
        pids: list[int] = []
        for root in self.roots:
            pids.extend(_tree(root))
        for pid in pids:
            role = self._roles.get(pid)
            if role is None:
                try:
                    role = self._roles[pid] = role_of(psutil.Process(pid).cmdline())
                except psutil.Error:
                    continue
            kb = _hwm_kb(pid)
            if kb is not None and kb > self.peaks.get(role, 0):
                self.peaks[role] = kb

    def note(self, role: str, kb: int) -> None:
        self.peaks[role] = max(self.peaks.get(role, 0), kb)

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join()
        return {role: round(kb / 1024, 1) for role, kb in sorted(self.peaks.items())}


def _wait(process: subprocess.Popen[bytes], watch: RssWatch, role: str) -> int:
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if role != "meltano":  # wait4 counts waited-for children too: Meltano's are its plugins
        watch.note(role, usage.ru_maxrss)
    return process.returncode


def run(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | int = subprocess.DEVNULL,
    cwd: str | Path | None = None,
    timeout: float = 3600,
) -> Measured:
    """One process, timed from start to exit."""
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command), env=dict(env), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd
    )
    watch = RssWatch([process.pid])
    watch.start()
    stderr = _drain(process)
    deadline = threading.Timer(timeout, process.kill)
    deadline.start()
    try:
        code = _wait(process, watch, role_of(command))
    except BaseException:
        process.kill()  # interrupted: leave nothing running
        raise
    finally:
        deadline.cancel()
    wall = time.perf_counter() - started
    return Measured(wall, [code], watch.stop(), stderr())


def pipe(
    producer: Sequence[str],
    consumer: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float = 3600,
) -> Measured:
    """`producer | consumer`, timed until both have exited."""
    started = time.perf_counter()
    first = subprocess.Popen(
        list(producer), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    second = subprocess.Popen(
        list(consumer),
        env=dict(env),
        stdin=first.stdout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert first.stdout is not None
    first.stdout.close()  # the consumer holds the read end
    watch = RssWatch([first.pid, second.pid])
    watch.start()
    errors = [_drain(first), _drain(second)]
    deadline = threading.Timer(timeout, lambda: (first.kill(), second.kill()))
    deadline.start()
    try:
        codes = [_wait(first, watch, role_of(producer)), _wait(second, watch, role_of(consumer))]
    except BaseException:
        first.kill()  # interrupted: leave nothing running
        second.kill()
        raise
    finally:
        deadline.cancel()
    wall = time.perf_counter() - started
    return Measured(wall, codes, watch.stop(), "\n".join(read() for read in errors))


def _drain(process: subprocess.Popen[bytes]) -> Any:
    """Read a process's stderr in the background (a full pipe would block it); returns a
    function giving the last 200,000 characters once the process has ended."""
    chunks: list[bytes] = []
    stream = process.stderr
    assert stream is not None

    def pump() -> None:
        for chunk in iter(lambda: stream.read(65536), b""):
            chunks.append(chunk)
            if len(chunks) > 256:  # keep the tail (about 8 MB at most)
                del chunks[:128]

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()

    def text() -> str:
        thread.join(timeout=10)
        return b"".join(chunks).decode("utf-8", "replace")[-200_000:]

    return text
