"""The main job under Meltano: `tap-optouts target-optouts` keeps every provider in step."""

from __future__ import annotations

import re
import subprocess

import pytest

from optouts_sandbox.cli import summarize
from tests.meltano_support import ensure_installed, free_port, meltano, sandbox_env
from tests.sandbox_support import BIN, control, missing_from_union, running_sandbox

pytestmark = pytest.mark.timeout(900)

SUMMARY = re.compile(r"target-optouts summary: (\w+) (.*)")


def _summary(stderr: str) -> dict[str, dict[str, int]]:
    """The target's per-destination summary lines, as Meltano relays them."""
    found: dict[str, dict[str, int]] = {}
    for destination, counts in SUMMARY.findall(stderr):
        found[destination] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """One sandbox synced twice with `meltano run tap-optouts target-optouts`."""
    tmp_path = tmp_path_factory.mktemp("sync")
    with running_sandbox() as server:
        env = sandbox_env(tmp_path, server.url)
        ensure_installed(env)
        before = control(server, "inspect")
        first = meltano("run", "tap-optouts", "target-optouts", env=env)
        after_first = control(server, "inspect")
        second = meltano("run", "tap-optouts", "target-optouts", env=env)
        after_second = control(server, "inspect")
    return {
        "before": before,
        "first": first,
        "after_first": after_first,
        "second": second,
        "after_second": after_second,
    }


def test_one_run_puts_every_optout_everywhere_its_channel_allows(synced):
    assert synced["first"].returncode == 0, synced["first"].stderr[-4000:]
    assert missing_from_union(synced["before"], synced["after_first"]) == {}
    summary = _summary(synced["first"].stderr)
    assert {"checkmarket", "slicktext", "optizmo"} <= set(summary), summary
    assert all(counts["written"] > 0 for counts in summary.values() if "written" in counts)


def test_second_run_writes_nothing_new(synced):
    assert synced["second"].returncode == 0, synced["second"].stderr[-4000:]
    assert summarize(synced["after_second"]) == summarize(synced["after_first"])
    assert missing_from_union(synced["before"], synced["after_second"]) == {}


def test_sync_job_prints_holdings_before_and_after(synced, tmp_path):
    """`meltano run sync`: sandbox started, inspected, synced, inspected, stopped."""
    port = free_port()
    env = sandbox_env(tmp_path, f"http://127.0.0.1:{port}", port)
    result = meltano("run", "sync", env=env)
    if result.returncode != 0:  # the job stopped before its own stop step
        subprocess.run([str(BIN / "optouts-sandbox"), "stop", "--force"], env=env, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ledger " in result.stderr and "holds  lacks" in result.stderr  # the report step
    output = result.stdout + result.stderr
    sections = re.split(r"opt-outs held by each provider (before|after):", output)
    assert len(sections) == 5, output[-3000:]
    counts = {
        label: dict(re.findall(r"(\S+:?\S*)\s+([\d,]+)\s*$", body, re.M))
        for label, body in zip(sections[1::2], sections[2::2], strict=True)
    }
    as_ints = {
        label: {k: int(v.replace(",", "")) for k, v in table.items()}
        for label, table in counts.items()
    }
    # The job's sandbox has the same seed and size: it must end where the in-process sync did.
    assert as_ints["before"] == summarize(synced["before"])
    assert as_ints["after"] == summarize(synced["after_first"])
    assert not (tmp_path / "sandbox-run" / "sandbox.pid").exists(), "sandbox left running"
