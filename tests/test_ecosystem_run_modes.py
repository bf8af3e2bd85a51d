"""`meltano config test` for both connectors (the target's an expected failure on Meltano
4.4.1), and a plain `tap-optouts | target-optouts` pipe that keeps its state in a file, each a
real process against the sandbox. (`meltano run`:
tests/test_meltano_sync.py and test_meltano_tap.py; `meltano elt` and `meltano el` with a state
id: tests/test_ecosystem_postgres.py.)"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from optouts_sandbox import credentials as C
from tests.meltano_support import ensure_installed, meltano, meltano_version, sandbox_env
from tests.sandbox_support import (
    BIN,
    control,
    held_addresses,
    missing_from_union,
    running_sandbox,
    tap_config,
)
from tests.target_support import target_config

pytestmark = pytest.mark.timeout(900)

STREAMS = {"checkmarket_optouts", "slicktext_optouts", "optizmo_optouts"}
BOOKMARK = re.compile(r"Starting incremental sync of '(\w+)' with bookmark value: (\S+)")
LATE_EMAIL = "late.runmodes@ecosystem.example.com"


def _late_checkmarket_optout(server) -> dict:
    """One opt-out that reaches CheckMarket after a sync; returns the holdings after it. The
    next sync starts in a later second: the query's upper bound has whole seconds (floored,
    so that rows added while a list is paged cannot shift its pages), and an opt-out of the
    same second as the sync start is the following sync's."""
    control(server, "optouts", {"provider": "checkmarket", "records": [{"Email": LATE_EMAIL}]})
    time.sleep(1.05 - time.time() % 1)
    return control(server, "inspect")


def _added(before: dict, after: dict) -> dict[str, set[str]]:
    old, new = held_addresses(before), held_addresses(after)
    return {name: new[name] - old[name] for name in new if new[name] - old[name]}


def _bookmarks(stderr: str) -> dict[str, set[str]]:
    """The bookmark each stream (partition) started from, as the SDK logs it."""
    found: dict[str, set[str]] = {}
    for stream, value in BOOKMARK.findall(stderr):
        found.setdefault(stream, set()).add(value)
    return found


def _stored_bookmarks(state: dict) -> dict[str, set[str]]:
    """Each stream's stored bookmark values (one per partition)."""
    out: dict[str, set[str]] = {}
    for stream, bookmark in state["bookmarks"].items():
        entries = bookmark.get("partitions") or [bookmark]
        out[stream] = {e["replication_key_value"] for e in entries if "replication_key_value" in e}
    return out


def test_meltano_config_test_passes_for_the_tap(tmp_path):
    """`meltano config test tap-optouts`: the tap reads a record from the sandbox."""
    with running_sandbox() as server:
        env = sandbox_env(tmp_path, server.url)
        ensure_installed(env, "tap-optouts")
        result = meltano("config", "test", "tap-optouts", env=env)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "Plugin configuration is valid" in result.stdout


# Meltano 4.4.1's loader test terminates the loader after it has exited (ProcessLookupError),
# so `meltano config test <loader>` fails for a loader that exits at once, as this one does.
# It is a race: on a loaded machine the loader is now and then still running when Meltano
# terminates it, and the command passes; so the mark is not strict (a strict one failed CI at
# random). On a later Meltano the condition is false and the test runs as any other.
@pytest.mark.xfail(
    meltano_version() <= (4, 4, 1),
    reason="Meltano <= 4.4.1: `meltano config test <loader>` raises ProcessLookupError",
    raises=AssertionError,
    strict=False,
)
def test_meltano_config_test_passes_for_the_target(tmp_path):
    """`meltano config test target-optouts`: the target takes Meltano's test stream (its
    record carries no address: rejected, counted, not fatal)."""
    with running_sandbox() as server:
        env = sandbox_env(tmp_path, server.url)
        ensure_installed(env, "target-optouts")
        result = meltano("config", "test", "target-optouts", env=env)
        rejects = tmp_path / "output" / "rejects.jsonl"
        rejected = rejects.read_text().splitlines() if rejects.exists() else []
    # pytest.fail, not assert: anything but the known bug is a failure, not the expected one.
    streams = [json.loads(line)["stream"] for line in rejected]
    if streams != ["meltano_test_stream"]:
        pytest.fail(f"the target did not reject Meltano's test record: {streams}")
    output = result.stdout + result.stderr
    if result.returncode != 0 and "ProcessLookupError" not in output:
        pytest.fail(f"meltano config test failed, not with the known bug: {output[-3000:]}")
    assert result.returncode == 0, output[-3000:]
    assert "Plugin configuration is valid" in result.stdout


def _pipe(tmp_path: Path, tap: dict, target: dict, state_in: Path | None, state_out: Path):
    """`tap-optouts --config tap.json [--state s.json] | target-optouts --config t.json > out`,
    run by bash as a user would type it."""
    bin_dir = BIN
    (tmp_path / "tap.json").write_text(json.dumps(tap))
    (tmp_path / "target.json").write_text(json.dumps(target))
    tap_cmd = [str(bin_dir / "tap-optouts"), "--config", str(tmp_path / "tap.json")]
    if state_in is not None:
        tap_cmd += ["--state", str(state_in)]
    target_cmd = [str(bin_dir / "target-optouts"), "--config", str(tmp_path / "target.json")]
    script = (
        f"set -o pipefail; {shlex.join(tap_cmd)} | {shlex.join(target_cmd)} "
        f"> {shlex.quote(str(state_out))}"
    )
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=300, check=False
    )


def test_plain_pipe_keeps_its_state_in_a_file(tmp_path):
    with running_sandbox() as server:
        tap, target = tap_config(server), target_config(server)
        before = control(server, "inspect")
        first = _pipe(tmp_path, tap, target, None, tmp_path / "state-1.jsonl")
        after_first = control(server, "inspect")
        late = _late_checkmarket_optout(server)
        # A target writes each STATE's value as a line; the last one is the next --state.
        lines = (tmp_path / "state-1.jsonl").read_text().splitlines()
        (tmp_path / "state.json").write_text(lines[-1])
        second = _pipe(tmp_path, tap, target, tmp_path / "state.json", tmp_path / "state-2.jsonl")
        after_second = control(server, "inspect")
    assert first.returncode == 0, first.stderr[-4000:]
    state = json.loads(lines[-1])
    assert all("bookmarks" in json.loads(line) for line in lines)
    assert set(state["bookmarks"]) == STREAMS
    assert missing_from_union(before, after_first) == {}
    assert second.returncode == 0, second.stderr[-4000:]
    # The second run started from the file's bookmarks, not from start_date.
    assert _bookmarks(second.stderr) == _stored_bookmarks(state)
    assert _added(late, after_second) == {"optizmo emails": {LATE_EMAIL}}
    assert missing_from_union(late, after_second) == {}
    assert (tmp_path / "state-2.jsonl").read_text().strip(), "no STATE passed on"
    assert C.OPTIZMO_API_KEY not in first.stderr + second.stderr
