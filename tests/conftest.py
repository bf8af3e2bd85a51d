from __future__ import annotations

from collections.abc import Iterator

import pytest

from optouts_providers.redact import install_log_redaction
from optouts_sandbox.server import SandboxHTTPServer
from tests.sandbox_support import running_sandbox

install_log_redaction()


@pytest.fixture
def sandbox() -> Iterator[SandboxHTTPServer]:
    """A fresh sandbox (300 people, seed 7, no faults) for one test."""
    with running_sandbox() as server:
        yield server
