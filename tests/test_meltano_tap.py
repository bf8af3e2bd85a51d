"""The tap under Meltano: the sandbox job, and incremental runs with state kept by Meltano."""

from __future__ import annotations

import json

import pytest

from optouts_sandbox import credentials as C
from tests.meltano_support import ensure_installed, jsonl_lines, meltano, sandbox_env
from tests.sandbox_support import control, running_sandbox

pytestmark = pytest.mark.timeout(900)


def _held(server) -> dict[str, int]:
    held = control(server, "inspect")
    return {
        "checkmarket_optouts": held["checkmarket"]["count"],
        "slicktext_optouts": held["slicktext"]["count"],
        "optizmo_optouts": sum(v["count"] for v in held["optizmo"]["lists"].values()),
    }


def test_meltano_state_makes_the_second_run_incremental(tmp_path):
    with running_sandbox() as server:
        env = sandbox_env(tmp_path, server.url)
        ensure_installed(env)
        first = meltano("run", "tap-optouts", "target-jsonl", env=env)
        assert first.returncode == 0, first.stderr[-4000:]
        assert jsonl_lines(tmp_path / "output") == _held(server)

        state = meltano("state", "get", "sandbox:tap-optouts-to-target-jsonl", env=env)
        assert state.returncode == 0, state.stderr[-2000:]
        bookmarks = json.loads(state.stdout)["singer_state"]["bookmarks"]
        assert set(bookmarks) == {"checkmarket_optouts", "slicktext_optouts", "optizmo_optouts"}

        control(
            server,
            "optouts",
            {"provider": "checkmarket", "records": [{"Email": "late.optout@example.com"}]},
        )
        control(
            server,
            "optouts",
            {
                "provider": "optizmo",
                "records": [
                    {"list_id": C.OPTIZMO_EMAIL_LIST_ID, "email": "late.optout@example.com"}
                ],
            },
        )
        for path in (tmp_path / "output").glob("*.jsonl"):
            path.unlink()
        # A second run on the same day: its timestamped files must not collide with the first.
        second = meltano("run", "tap-optouts", "target-jsonl", env=env)
        assert second.returncode == 0, second.stderr[-4000:]
        lines = []
        for path in (tmp_path / "output").glob("*.jsonl"):
            lines += [json.loads(line) for line in path.read_text().splitlines()]
        emails = {r.get("Email") or r.get("plain") for r in lines}
        assert "late.optout@example.com" in emails
        # Only the new opt-outs, plus at most the rows equal to each bookmark (at-least-once).
        assert len(lines) <= 2 + 10, f"second run re-read {len(lines)} rows"
