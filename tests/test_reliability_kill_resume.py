"""Kill and resume: SIGKILL the tap or the target of a real `tap | target` pipe at a random
point, run the pipe again from the last STATE the target emitted, and every provider holds the
expected union (duplicates allowed, losses not). SIGTERM lets the target finish the batch in
flight and emit its STATE. The soak (benchmarks/soak_kill_resume.py) runs 20+ such trials."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline_support import TARGET_BIN, Kill, PipeRun, leaks, run_pipeline, signatures
from tests.sandbox_support import control, missing_from_union, running_sandbox
from tests.target_support import new_phones, state, stream_messages, target_config

SIZE = 40
# Slower writes, so that a kill lands inside a batch rather than between runs.
LATENCY_MS = 8
SEED = 20261122


def trial(kill: Kill) -> tuple[PipeRun, PipeRun, dict[str, set[str]], list[str]]:
    """A killed run, then a run from its last STATE: (killed, resumed, missing, leaked)."""
    with (
        running_sandbox(size=SIZE, latency_ms=LATENCY_MS) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        before = control(server, "inspect")
        killed = run_pipeline(server, Path(tmp), kill=kill)
        resumed = run_pipeline(server, Path(tmp), state=killed.last_state)
        missing = missing_from_union(before, control(server, "inspect"))
        secrets = signatures(server)
        leaked = leaks(killed.everything(), secrets) + leaks(resumed.everything(), secrets)
    return killed, resumed, missing, leaked


def kills() -> dict[str, Kill]:
    """Random points, reproducible from SEED. For SIZE people the tap writes 81 lines (RECORD,
    SCHEMA, STATE) and the target makes about 40 write requests, over three batches."""
    rng = random.Random(SEED)
    return {
        "tap": Kill("tap", after_lines=rng.randrange(1, 60)),
        "target_first_batch": Kill("target", after_writes=rng.randrange(1, 10)),
        "target_later_batch": Kill("target", after_states=1, after_writes=rng.randrange(1, 40)),
    }


@pytest.fixture(scope="module")
def trials() -> dict[str, Any]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        return {name: pool.submit(trial, kill) for name, kill in kills().items()}


@pytest.mark.parametrize("name", ["tap", "target_first_batch", "target_later_batch"])
def test_killed_then_resumed_from_the_last_state_loses_nothing(trials, name):
    killed, resumed, missing, leaked = trials[name].result()
    assert killed.killed == name.split("_")[0], (killed.tap_stderr[-1500:], killed.relayed)
    if killed.killed == "target":
        assert killed.target_returncode == -signal.SIGKILL
    else:
        assert killed.tap_returncode in (0, -signal.SIGKILL)  # it may have written everything
        assert killed.target_returncode == 0  # the end of its input: it writes what it read
    assert resumed.ok, (resumed.tap_stderr[-2000:], resumed.target_stderr[-2000:])
    assert missing == {}
    assert leaked == []


@pytest.mark.parametrize("signals", [1, 2], ids=["once", "repeated"])
def test_sigterm_finishes_the_batch_in_flight_and_emits_its_state(tmp_path, signals):
    # A repeated signal is a duplicate (Meltano passes it on and the OS sends it to the whole
    # process group): the batch is still finished and its STATE emitted.
    numbers = new_phones(25, start=500)
    bookmark = {"bookmarks": {"crm_people": {"n": 25}}}
    lines = [*stream_messages("crm_people", [{"phone": n} for n in numbers]), state(bookmark)]
    with running_sandbox(size=10, latency_ms=40) as server:
        config = target_config(server, ("slicktext",))
        (tmp_path / "config.json").write_text(json.dumps(config))
        target = subprocess.Popen(
            [str(TARGET_BIN), "--config", str(tmp_path / "config.json")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert target.stdin is not None
        target.stdin.write("".join(json.dumps(line) + "\n" for line in lines).encode())
        target.stdin.flush()  # and the input stays open: the tap is still "running"
        deadline = time.monotonic() + 60
        while control(server, "stats").get("slicktext POST", 0) < 3:
            assert time.monotonic() < deadline and target.poll() is None
            time.sleep(0.02)
        target.send_signal(signal.SIGTERM)
        if signals == 2:
            time.sleep(0.05)
            target.send_signal(signal.SIGTERM)
        stdout, stderr = target.communicate(timeout=60)
        held = set(control(server, "inspect")["slicktext"]["phones"])
    assert target.returncode == 128 + signal.SIGTERM, stderr.decode()[-2000:]
    assert [json.loads(line) for line in stdout.splitlines()] == [bookmark]
    assert set(numbers) <= held
    assert b"signal 15: finishing the batch in flight" in stderr
    assert (b"signal 15 again: already stopping" in stderr) == (signals == 2)
