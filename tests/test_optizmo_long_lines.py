"""An Optizmo download that is one endless line: refused with a clear error, in flat memory.

The sandbox serves, after the header row, one line of LINE_BYTES bytes (the `long_line` file
fault, made as it is sent). The tap runs as a real process; its peak resident memory comes
from the kernel (`os.wait4`), and it must stay under PEAK_RSS_LIMIT, far below the line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from optouts_providers.http import ProviderError
from optouts_providers.optizmo.files import MAX_LINE_BYTES
from optouts_sandbox import credentials as C
from tests.optizmo_support import client_for, read
from tests.sandbox_support import BIN, running_sandbox, tap_config

LINE_BYTES = 200 * 1024 * 1024
# The tap peaks near 50 MB on any list (benchmarks/RESULTS.md); reading the line whole
# would take several times LINE_BYTES.
PEAK_RSS_LIMIT = 150 * 1024 * 1024
TIME_LIMIT = 120.0


# Runs its arguments as a child and writes the child's peak RSS (KiB, from `wait4`) to the file
# PEAK_FILE names. The kernel counts in a child's peak the memory of the process it was
# started from, up to its exec: this small process keeps that out of the tap's figure (the
# test process itself may be large).
MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
with open(os.environ["PEAK_FILE"], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def run_tap_measured(config: dict, tmp_path: Path) -> tuple[int, str, str, int]:
    """(exit status, stdout, stderr, peak RSS in bytes) of one tap run, killed after
    TIME_LIMIT seconds."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    peak_path = tmp_path / "peak"
    command = [
        sys.executable,
        "-c",
        MEASURE,
        str(BIN / "tap-optouts"),
        "--config",
        str(config_path),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PEAK_FILE": str(peak_path)},
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIME_LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    # Linux reports ru_maxrss in KiB.
    peak = int(peak_path.read_text()) * 1024 if peak_path.exists() else 0
    return process.returncode, stdout.decode(), stderr.decode(), peak


@pytest.mark.parametrize("download_format", ["csv", "zip"])
def test_an_endless_line_fails_the_tap_clearly_in_flat_memory(tmp_path, download_format):
    with running_sandbox(
        size=50,
        download_format=download_format,
        optizmo_file_fault=f"long_line:{LINE_BYTES}",
    ) as server:
        config = tap_config(
            server, providers=("optizmo",), optizmo={"list_ids": [C.OPTIZMO_EMAIL_LIST_ID]}
        )
        status, stdout, stderr, peak = run_tap_measured(config, tmp_path)
    assert status not in (0, -signal.SIGKILL, None) and peak, stderr[-2000:]
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MB"
    assert f"list {C.OPTIZMO_EMAIL_LIST_ID}" in stderr
    assert "line 2 of the download is longer than" in stderr
    assert "Optizmo GET" in stderr
    messages = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    bookmarks = [m["value"].get("bookmarks", {}) for m in messages if m["type"] == "STATE"]
    assert not any(
        p.get("replication_key_value")
        for b in bookmarks
        for p in b.get("optizmo_optouts", {}).get("partitions", [])
    )


def test_a_line_just_under_the_cap_is_read_and_one_over_is_refused():
    """The cap counts the bytes before a line's `\n` (the fault's line ends `\r\n`): a line
    of exactly the cap passes it (and is then refused by the CSV reader, whose field limit is
    lower), one byte more is refused by the cap. Both errors name the list and the line."""
    at_cap = MAX_LINE_BYTES - 1
    cases = ((at_cap, "is not CSV"), (at_cap + 1, "is longer than"))
    for size, problem in cases:
        with (
            running_sandbox(size=50, optizmo_file_fault=f"long_line:{size}") as server,
            pytest.raises(
                ProviderError, match=f"list {C.OPTIZMO_EMAIL_LIST_ID}: line 2 .*{problem}"
            ),
        ):
            read(client_for(server), C.OPTIZMO_EMAIL_LIST_ID)
