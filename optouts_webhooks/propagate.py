"""Propagation: the inbox's events written to every destination, each on its own.

One worker thread per configured provider, each with its own `Destinations` (built by the
target's `build_destinations` from the receiver's config restricted to that provider), so that
the writing is the target's own: normalisation, skip_origin, the ledger's skip, batching,
pacing and retries. A worker waits for events (woken by the receiver, or every second),
gathers what arrived for a moment (`GATHER_SECONDS`) so that a burst becomes a few requests,
feeds them per stream and completes the batch; only then are they marked done for that
destination. A provider that fails keeps its events pending, retried with growing delays
(`Inbox.failed`); its `Destinations` is rebuilt (a failed batch leaves a destination's memory
of what it wrote unreliable), and the other workers never wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from optouts_providers.redact import redact
from target_optouts.destinations import Destinations, NoDestinationError, build_destinations
from target_optouts.ledger.inbox import Inbox, Pending
from target_optouts.normalize import PROVIDERS, origin_provider
from target_optouts.rejects import Rejects

logger = logging.getLogger("optouts-webhooks")

GATHER_SECONDS = 0.25  # how long a worker lets a burst gather before writing it
BATCH_LIMIT = 500  # events per batch at most
IDLE_SECONDS = 1.0  # a worker looks at the inbox at least this often
# Each attempt's own retries stay short: the inbox retries a failed batch later.
MAX_RETRY_WAIT_SECONDS = 30.0


def provider_config(config: Mapping[str, Any], provider: str) -> dict[str, Any]:
    """The target's config with only `provider`'s destination in it."""
    out = {k: v for k, v in config.items() if k not in PROVIDERS or k == provider}
    out.pop("webhooks", None)
    out["dry_run"] = False
    wait = float(out.get("max_retry_wait_seconds", MAX_RETRY_WAIT_SECONDS))
    out["max_retry_wait_seconds"] = min(wait, MAX_RETRY_WAIT_SECONDS)
    return out


def build_for(config: Mapping[str, Any], provider: str, rejects: Rejects) -> Destinations | None:
    """`provider`'s Destinations; None when it is not configured. A half-configured
    provider is an error (ValueError), as in the target."""
    try:
        destinations = build_destinations(provider_config(config, provider), rejects)
    except NoDestinationError:
        return None
    return destinations


class Refusals(Rejects):
    """The target's rejects file, and the values a provider refused in the current batch."""

    def __init__(self, path: str | None) -> None:
        super().__init__(path)
        self.values: set[str] = set()

    def refused(self, stream: str, destination: str, value: str, reason: str) -> None:
        super().refused(stream, destination, value, reason)
        self.values.add(value)


class Worker(threading.Thread):
    def __init__(self, provider: str, config: Mapping[str, Any], inbox: Inbox) -> None:
        super().__init__(name=f"optouts-webhooks-{provider}", daemon=True)
        self.provider = provider
        self.config = config
        self.inbox = inbox
        self.wake = threading.Event()
        self.halt = threading.Event()
        self.rejects = Refusals(config.get("rejects_path"))
        self.destinations: Destinations | None = None
        self.stats = {"batches": 0, "events": 0, "failures": 0}

    def open(self) -> Destinations:
        if self.destinations is None:
            built = build_for(self.config, self.provider, self.rejects)
            if built is None:
                raise ValueError(f"{self.provider} is not configured")
            self.destinations = built
        return self.destinations

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self._step()
            except Exception as exc:  # the inbox unreadable for a moment: try again
                logger.warning("optouts-webhooks: %s worker: %s", self.provider, redact(exc))
                self.halt.wait(IDLE_SECONDS)
        self._close(ok=True)

    def _step(self) -> None:
        self.wake.clear()
        due = self.inbox.due(self.provider, limit=BATCH_LIMIT)
        if not due:
            next_try = self.inbox.next_try(self.provider)
            wait = IDLE_SECONDS if next_try is None else next_try - time.time()
            self.wake.wait(min(IDLE_SECONDS, max(0.01, wait)))
            return
        if len(due) < BATCH_LIMIT and not self.halt.is_set():
            self.halt.wait(GATHER_SECONDS)
            due = self.inbox.due(self.provider, limit=BATCH_LIMIT) or due
        self.deliver(due)

    def deliver(self, due: list[Pending]) -> None:
        by_stream: dict[str, list[Pending]] = {}
        for item in due:
            by_stream.setdefault(item.optout.stream, []).append(item)
        for stream, items in by_stream.items():
            ids = [item.id for item in items]
            self.rejects.values.clear()
            try:
                destinations = self.open()
                destinations.feed(stream, [item.optout for item in items])
                destinations.complete(stream)
            except Exception as exc:
                self.stats["failures"] += 1
                self._close(ok=False)
                earliest = self.inbox.failed(self.provider, ids, redact(exc))
                logger.warning(
                    "optouts-webhooks: %s did not accept %d event(s); retried in %.0f s: %s",
                    self.provider,
                    len(ids),
                    max(0.0, earliest - time.time()),
                    redact(exc),
                )
                return
            self.inbox.delivered(self.provider, ids, self._held(stream, items))
            self.stats["batches"] += 1
            self.stats["events"] += len(ids)

    def _held(self, stream: str, items: list[Pending]) -> list[tuple[int, int, int]]:
        """(hi, lo, bit) of each address the destination now holds: what it carries of
        these events, less its own provider's (skip_origin) and what it refused."""
        assert self.destinations is not None
        refused = self.rejects.values
        origin = origin_provider(stream)
        out = []
        for destination in self.destinations.items:
            for channel, target in destination.ledger_targets.items():
                if target.skip_origin and origin == target.provider:
                    continue
                for item in items:
                    key = item.keys.get(target.kind)
                    if key is None:
                        continue
                    value = item.optout.email if target.kind == "email" else item.optout.phone
                    sent = value[1:] if channel == "sms" and value else value
                    if value in refused or sent in refused:
                        continue
                    out.append((key[0], key[1], target.bit))
        return out

    def _close(self, ok: bool) -> None:
        if self.destinations is not None:
            try:
                self.destinations.close(ok)
            except Exception as exc:  # closing must not stop the worker
                logger.warning("optouts-webhooks: closing %s: %s", self.provider, redact(exc))
            self.destinations = None

    def stop(self) -> None:
        self.halt.set()
        self.wake.set()


class Propagator:
    """Every configured provider's worker."""

    def __init__(self, config: Mapping[str, Any], inbox: Inbox) -> None:
        self.workers: list[Worker] = []
        for provider in PROVIDERS:
            worker = Worker(provider, config, inbox)
            # Built now, so that a configuration error stops the receiver before it serves.
            worker.destinations = build_for(config, provider, worker.rejects)
            if worker.destinations is not None:
                self.workers.append(worker)
        if not self.workers:
            raise ValueError(
                "no destination is configured: set the credentials of at least one provider"
            )

    @property
    def names(self) -> list[str]:
        return [worker.provider for worker in self.workers]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def wake(self) -> None:
        for worker in self.workers:
            worker.wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.join(timeout)

    def stats(self) -> dict[str, dict[str, int]]:
        return {worker.provider: dict(worker.stats) for worker in self.workers}
