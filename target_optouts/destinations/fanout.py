"""Destinations: every configured destination, shared by every sink of the run.

A sink feeds a batch in parts (`feed`) and then completes it (`complete`), so that a batch of a
million opt-outs costs full CheckMarket POSTs and one Optizmo upload, and never sits in memory;
`deliver` is both at once. Sinks may drain in parallel threads: a lock per destination keeps
filtering, writing and counting consistent.

With a ledger (`ledger.session`), each part is first admitted to it, and a destination skips,
with no request, every address the ledger knows it holds (`known_present`); the ledger records
the batch once every destination has accepted it (`complete`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from target_optouts.destinations.base import (
    DeliveryError,
    Destination,
    NoDestinationError,
)
from target_optouts.ledger.session import LedgerSession
from target_optouts.normalize import OptOut
from target_optouts.rejects import Rejects

logger = logging.getLogger("target-optouts")


class Destinations:
    """Every configured destination; what the sinks hand their batches to."""

    def __init__(
        self,
        items: list[Destination],
        rejects: Rejects,
        *,
        dry_run: bool,
        ledger: LedgerSession | None = None,
    ) -> None:
        if not items:
            raise NoDestinationError(
                "No destination is configured: set the credentials of at least one of "
                "checkmarket (master_key, key), slicktext (public_key and private_key, or "
                "api_key) or optizmo (api_key and email_list_id and/or sms_list_id)."
            )
        self.items = items
        self.rejects = rejects
        self.dry_run = dry_run
        self.ledger = ledger
        self.ledger_summary: dict[str, Any] | None = None
        if ledger is not None:
            for destination in items:
                destination.attach_ledger(ledger)

    def deliver(self, stream: str, optouts: list[OptOut]) -> None:
        self.feed(stream, optouts)
        self.complete(stream)

    def feed(self, stream: str, optouts: list[OptOut]) -> None:
        plan = self.ledger.plan(stream, optouts) if self.ledger is not None else None
        self._each(lambda destination: destination.feed(stream, optouts, plan))

    def complete(self, stream: str) -> None:
        if self.ledger is not None:
            self.ledger.completing(stream)  # the ledger sorts the batch while they finish
        self._each(lambda destination: destination.complete(stream))
        if self.ledger is not None:
            self.ledger.completed(stream)

    def _each(self, call: Callable[[Destination], None]) -> None:
        try:
            for destination in self.items:
                call(destination)
        except DeliveryError:
            logger.warning(
                "target-optouts summary at failure: %s", json.dumps(self.summary(), sort_keys=True)
            )
            raise

    def summary(self) -> dict[str, Any]:
        out = {
            "dry_run": self.dry_run,
            "input": self.rejects.summary(),
            "destinations": {
                d.name: {**d.counts.as_dict(), "calls": d.stats()} for d in self.items
            },
        }
        if self.ledger_summary is not None:
            out["ledger"] = self.ledger_summary
        return out

    def close(self, ok: bool = True) -> None:
        for destination in self.items:
            destination.close()
        self.rejects.close()
        if self.ledger is not None and self.ledger_summary is None:
            self.ledger_summary = self.ledger.close(ok)
