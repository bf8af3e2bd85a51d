"""The ledger of a target run, from its settings (`ledger_url` and the others)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from optouts_providers.redact import register_secret
from target_optouts.ledger.session import LedgerSession
from target_optouts.ledger.store import DEFAULT_URL, Ledger, LedgerUnavailable

logger = logging.getLogger("target-optouts")


def ledger_url(config: Mapping[str, Any]) -> str:
    url = config.get("ledger_url")
    return DEFAULT_URL if url is None else str(url).strip()


def open_ledger(config: Mapping[str, Any], *, create: bool = True) -> Ledger | None:
    """The configured ledger; None when it is off. Raises `LedgerUnavailable` when it cannot
    be used and `LedgerError` when it is misconfigured."""
    url = ledger_url(config)
    if not url:
        return None
    key = config.get("ledger_hash_key") or None
    register_secret(key)
    return Ledger.open(
        url, hash_key=key, clear=bool(config.get("ledger_clear_addresses")), create=create
    )


def open_session(config: Mapping[str, Any], *, dry_run: bool) -> LedgerSession | None:
    """The run's ledger session. A ledger that cannot be used is said once, loudly, and the run
    goes on without it (every destination written, as without a ledger); a dry run reads an
    existing ledger and creates none."""
    try:
        ledger = open_ledger(config, create=not dry_run)
    except LedgerUnavailable as exc:
        if dry_run:
            logger.info("target-optouts: dry_run: %s; nothing is known to be held", exc)
        else:
            logger.warning(
                "target-optouts: %s; this run writes every destination as without a ledger",
                exc,
            )
        return None
    if ledger is None:
        return None
    return LedgerSession(ledger, dry_run=dry_run, reconcile=bool(config.get("ledger_reconcile")))
