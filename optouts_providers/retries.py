"""How long to wait before retrying a request, and when to stop: exponential backoff with full
jitter, a server-given wait (`Retry-After`, a rate-limit reset) honoured, one request's cap and
the process's budget (see docs/providers/README.md)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from optouts_providers.redact import redact
from optouts_providers.throttle import CallStats, WaitBudget

logger = logging.getLogger("optouts.http")


@dataclass
class RetryPolicy:
    max_tries: int = 8
    base_seconds: float = 0.5
    factor: float = 2.0
    cap_seconds: float = 60.0
    # The longest one request may keep retrying (waits and tries together).
    max_wait_seconds: float = 900.0


class Retrying:
    """One call's retries, as python-backoff drives them: `waits` is its wait generator
    (full-jitter exponential, or the server's wait a little lengthened: jitter never shortens
    it), which stops where waiting would pass the request's cap (`max_wait_seconds`) or the
    process's `WaitBudget`; `before_retry` is its `on_backoff` handler; `gave_up` says, for the
    error that ends the call, which limit stopped it."""

    def __init__(
        self,
        provider: str,
        method: str,
        endpoint: str,
        policy: RetryPolicy,
        budget: WaitBudget,
        stats: CallStats,
    ) -> None:
        self.provider = provider
        self.method = method
        self.endpoint = endpoint
        self.policy = policy
        self.budget = budget
        self.stats = stats
        self.started = time.monotonic()
        self.tries = 1
        self.budget_ran_out = False  # else the tries or the request's cap did
        self.why = f"max_tries={policy.max_tries} reached"

    def waits(self) -> Generator[float, BaseException | None, None]:
        failure = yield 0.0  # python-backoff primes the generator first
        while True:
            wait = self._wait_before(self.tries, getattr(failure, "wait_seconds", None))
            elapsed = time.monotonic() - self.started
            if elapsed + wait > self.policy.max_wait_seconds:
                self.why = (
                    f"waiting {wait:.1f}s more would pass max_retry_wait_seconds="
                    f"{self.policy.max_wait_seconds:g} for this request"
                )
                return
            if not self.budget.allows(wait):
                self.budget_ran_out = True
                self.why = f"waiting {wait:.1f}s more: {self.budget.describe()}"
                return
            self.tries += 1
            failure = yield wait

    def _wait_before(self, retry: int, server_wait: float | None) -> float:
        """The wait before retry number `retry` (1, 2, ...)."""
        if server_wait is not None:
            return server_wait + random.uniform(0, min(1.0, 0.1 * server_wait + 0.05))
        policy = self.policy
        return random.uniform(
            0, min(policy.cap_seconds, policy.base_seconds * policy.factor ** (retry - 1))
        )

    def before_retry(self, details: Any) -> None:
        wait = float(details.get("wait") or 0.0)
        self.budget.spend(wait)
        self.stats.retries += 1
        self.stats.throttled_seconds += wait
        self.stats.retry_wait_seconds += wait
        failure = details.get("exception")
        logger.info(
            "%s: retrying %s %s in %.2fs (try %d): %s",
            self.provider,
            self.method,
            self.endpoint,
            wait,
            details.get("tries", 0),
            redact(failure) if failure else "",
        )

    def gave_up(self, last_detail: str) -> str:
        """The detail of the error that ends the call: the last failure, and why it stopped."""
        detail = f"{last_detail}; " if last_detail else ""
        return detail + f"gave up after {self.tries} tries: {self.why}"
