"""The fault matrix: `tap-optouts | target-optouts` (real processes, DEBUG logging) on a sandbox
that misbehaves. Every run either completes with every provider holding the expected union, or
exits non-zero with a clear message, and the next run from the last STATE the target emitted
completes with nothing lost. No run leaves a credential or a signature behind.

Each scenario has its own sandbox; the scenarios run side by side (module fixture) because
most of their time is process start-up and retry waits, then each test checks its own."""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline_support import PipeRun, leaks, run_pipeline, signatures
from tests.sandbox_support import control, missing_from_union, running_sandbox

# Emails go in bulk uploads (the upload faults), phones through collect.
TARGET = {"optizmo": {"bulk_threshold": 0}}
SIZE = 40


@dataclass
class Outcome:
    runs: list[PipeRun] = field(default_factory=list)
    missing: dict[str, set[str]] | None = None  # after the last run, vs the expected union
    leaked: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    imports: dict[str, str] = field(default_factory=dict)

    def faults(self, kind: str) -> int:
        return sum(count for key, count in self.stats.items() if key.endswith(f"fault:{kind}"))


@dataclass
class Scenario:
    switches: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)  # tap and target
    tap: dict[str, Any] = field(default_factory=dict)
    fails: bool = False  # the first run must fail; a second runs from its last STATE


SCENARIOS = {
    "429_storm": Scenario({"error_rate": 0.2, "error_status": 429, "retry_after": 0.2}),
    "5xx": Scenario({"error_rate": 0.15, "error_status": 503}),
    "resets": Scenario({"reset_rate": 0.15}),
    "stalls": Scenario(
        {"stall_rate": 0.08, "stall_seconds": 2.5}, settings={"request_timeout_seconds": 1.0}
    ),
    "truncated_download": Scenario({"truncate_downloads": True}, fails=True),
    "download_too_slow": Scenario(
        {"download_delay_seconds": 30},
        tap={"optizmo": {"download_timeout_seconds": 1, "poll_interval_seconds": 0.2}},
        fails=True,
    ),
    "expired_upload_url": Scenario({"upload_url_ttl_seconds": 0}, fails=True),
    "upload_failed": Scenario({"upload_outcome": "failed"}, fails=True),
}


def play(scenario: Scenario) -> Outcome:
    outcome = Outcome()
    with running_sandbox(size=SIZE) as server, tempfile.TemporaryDirectory() as tmp:
        before = control(server, "inspect")
        normal = control(server, "config")
        control(server, "config", scenario.switches)
        tap = {**scenario.settings, **scenario.tap}
        target = {**TARGET, **scenario.settings}
        outcome.runs.append(run_pipeline(server, Path(tmp), tap=tap, target=target))
        if scenario.fails:
            control(server, "config", {key: normal[key] for key in scenario.switches})
            state = outcome.runs[0].last_state
            outcome.runs.append(run_pipeline(server, Path(tmp), state=state, target=TARGET))
        after = control(server, "inspect")
        outcome.missing = missing_from_union(before, after)
        outcome.imports = after["optizmo"]["imports"]
        outcome.stats = control(server, "stats")
        secrets = signatures(server)
        outcome.leaked = [leak for run in outcome.runs for leak in leaks(run.everything(), secrets)]
    return outcome


@pytest.fixture(scope="module")
def matrix() -> dict[str, Any]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return {name: pool.submit(play, scenario) for name, scenario in SCENARIOS.items()}


def outcome_of(matrix: dict[str, Any], name: str) -> Outcome:
    return matrix[name].result()


def completed(outcome: Outcome) -> PipeRun:
    """The run completed: both processes succeeded, STATE emitted, nothing lost or leaked."""
    run = outcome.runs[-1]
    assert run.ok, (run.tap_stderr[-2000:], run.target_stderr[-2000:])
    assert run.states, "the target emitted no STATE"
    assert outcome.missing == {}
    assert outcome.leaked == []
    return run


def completed_despite(matrix: dict[str, Any], name: str, fault: str, at_least: int) -> PipeRun:
    """Scenario `name` completed (see `completed`) though the sandbox injected `fault` at least
    `at_least` times."""
    outcome = outcome_of(matrix, name)
    run = completed(outcome)
    assert outcome.faults(fault) >= at_least
    return run


def failed_then_resumed(outcome: Outcome, side: str, message: str) -> PipeRun:
    """The first run failed on `side` with `message`; the next, from its STATE, completed."""
    first = outcome.runs[0]
    code = first.tap_returncode if side == "tap" else first.target_returncode
    stderr = first.tap_stderr if side == "tap" else first.target_stderr
    assert code != 0, stderr[-2000:]
    assert message in stderr
    assert len(outcome.runs) == 2
    completed(outcome)
    return first


# -- transient faults: the run completes ------------------------------------------------------
def test_a_429_storm_is_waited_out(matrix):
    completed_despite(matrix, "429_storm", "429", at_least=3)


def test_a_share_of_5xx_is_retried(matrix):
    completed_despite(matrix, "5xx", "503", at_least=3)


def test_connection_resets_are_retried(matrix):
    completed_despite(matrix, "resets", "reset", at_least=3)


def test_answers_slower_than_the_request_timeout_are_retried(matrix):
    run = completed_despite(matrix, "stalls", "stall", at_least=1)
    assert "ReadTimeout" in run.tap_stderr + run.target_stderr


# -- faults that stop the run: the next run from the last STATE completes ---------------------
def test_a_truncated_download_fails_the_tap_and_the_next_run_completes(matrix):
    first = failed_then_resumed(
        outcome_of(matrix, "truncated_download"), "tap", "the download was cut short"
    )
    assert "Optizmo GET" in first.tap_stderr and "/optizmo/storage/downloads/" in first.tap_stderr


def test_a_download_slower_than_the_poll_timeout_fails_clearly(matrix):
    failed_then_resumed(
        outcome_of(matrix, "download_too_slow"),
        "tap",
        "the download was still not ready after 1s (download_timeout_seconds",
    )


def test_an_expired_upload_url_fails_clearly(matrix):
    failed_then_resumed(
        outcome_of(matrix, "expired_upload_url"),
        "target",
        "the pre-signed upload URL was refused twice (expired?)",
    )


def test_an_upload_that_ends_failed_names_its_import(matrix):
    outcome = outcome_of(matrix, "upload_failed")
    first = failed_then_resumed(outcome, "target", "ended failed")
    failed = [ref for ref, status in outcome.imports.items() if status == "failed"]
    assert failed and any(f"import {ref} ended failed" in first.target_stderr for ref in failed)
    assert "the batch is not acknowledged" in first.target_stderr
