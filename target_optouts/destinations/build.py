"""The run's destinations from the target's config: one per provider whose credentials are set,
and the ledger (`ledger_url`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optouts_providers.http import http_options
from target_optouts.destinations import checkmarket, optizmo, slicktext
from target_optouts.destinations.base import Destination
from target_optouts.destinations.fanout import Destinations
from target_optouts.ledger.open import open_session
from target_optouts.rejects import Rejects

BUILDERS = (
    ("checkmarket", checkmarket.from_settings),
    ("slicktext", slicktext.from_settings),
    ("optizmo", optizmo.from_settings),
)


def build_destinations(config: Mapping[str, Any], rejects: Rejects) -> Destinations:
    """A destination per provider whose credentials are set, and the ledger (`ledger_url`).
    A half-configured provider is an error."""
    common = {
        "rejects": rejects,
        "dry_run": bool(config.get("dry_run", False)),
        "skip_origin": bool(config.get("skip_origin", True)),
    }
    options = http_options(config)
    built = [build(dict(config.get(name) or {}), options, common) for name, build in BUILDERS]
    items: list[Destination] = [destination for destination in built if destination is not None]
    ledger = open_session(config, dry_run=common["dry_run"]) if items else None
    return Destinations(items, rejects, dry_run=common["dry_run"], ledger=ledger)
