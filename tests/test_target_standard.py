"""singer-sdk's standard target tests, against a sandbox started for this module.

The suite's inputs are generic records (a few carry an `email`): records without an address
are rejected and counted, never a crash. The suite's config is fixed when the class is built,
so it is built for a pending sandbox, which a fixture starts for the module and points it at.
The SDK's multiple-STATE input (its test is switched off in the suite) is checked here with
this target's rule: every new STATE is relayed once what precedes it is written.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterator

import pytest
from singer_sdk.testing import get_target_test_class, target_test_streams
from singer_sdk.testing.runners import TargetTestRunner

from optouts_sandbox.server import Sandbox, SandboxHTTPServer
from target_optouts.errors import ConfigurationError
from target_optouts.target import TargetOptouts
from tests.sandbox_support import PendingServer, control, repoint, serving
from tests.target_support import target_config

_CONFIG = target_config(PendingServer())


@pytest.fixture(scope="module", autouse=True)
def server() -> Iterator[SandboxHTTPServer]:
    with serving(Sandbox(size=40)) as running:
        repoint(_CONFIG, running.url)
        yield running


StandardTargetTests = get_target_test_class(
    TargetOptouts,
    config=_CONFIG,
    custom_suites=[],
)


class TestTargetOptouts(StandardTargetTests):  # type: ignore[misc, valid-type]
    """The SDK's standard target tests. Three of them expect a crash on bad input: this target
    stops the run on the two that hit a whole stream (its own error, logged as one line), and
    rejects the record missing its key property with a reason and goes on
    (docs/RELIABILITY.md), so those three are replaced by the same inputs checked for that."""

    def test_target_invalid_schema(self) -> None:
        with pytest.raises(ConfigurationError, match="'test_invalid_schema' has no properties"):
            _rejects("invalid_schema")

    def test_target_record_before_schema(self) -> None:
        with pytest.raises(ConfigurationError, match="came before any SCHEMA of it"):
            _rejects("record_before_schema")

    def test_target_record_missing_key_property(self) -> None:
        inputs = _rejects("record_missing_key_property")
        assert inputs["rejected"] == 1
        assert "MissingKeyPropertiesError" in next(iter(inputs["reasons"]))


def _rejects(name: str) -> dict:
    """The input summary of the target after one of the SDK's input files."""
    path = importlib.resources.files(target_test_streams) / f"{name}.singer"
    target = TargetOptouts(config=_CONFIG)
    with path.open() as lines:
        target.process_lines(lines)
    target.process_endofpipe()
    assert target.summary is not None
    return target.summary["input"]


def test_every_state_of_the_sdk_input_is_relayed_in_order(server):
    """The SDK's multiple-STATE input: this target drains on each new STATE, so every one is
    relayed (the SDK's own expectation, three of five, assumes draining only when full)."""
    path = importlib.resources.files(target_test_streams) / "multiple_state_messages.singer"
    expected = [
        json.loads(line)["value"]
        for line in path.read_text().splitlines()
        if json.loads(line)["type"] == "STATE"
    ]
    runner = TargetTestRunner(TargetOptouts, config=target_config(server), input_filepath=path)

    runner.sync_all()

    assert runner.state_messages == expected
    assert len(expected) == 5


def test_standard_inputs_reached_the_sandbox(server):
    """pk_updates carries two emails: they must be at CheckMarket after the suite."""
    emails = set(control(server, "inspect")["checkmarket"]["emails"])
    assert {"alice@example.com", "bob@example.com"} <= emails
