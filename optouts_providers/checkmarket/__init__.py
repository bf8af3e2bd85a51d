"""CheckMarket: its default host, whether settings configure it, and the client they make.

`settings` is the `checkmarket` object of the tap's or the target's config; `http_options` is
what `optouts_providers.http.http_options(config)` returns. The client module is imported
when a client is made: the sandbox imports this package for its wire format only.
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

if t.TYPE_CHECKING:
    from optouts_providers.checkmarket.client import CheckMarketClient

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_PAGE_SIZE",
    "base_url",
    "client_from_config",
    "configured",
]

# The EU region; accounts elsewhere set base_url (api-us, api-ca).
DEFAULT_BASE_URL = "https://api-eu.agileresearch.medallia.com"
DEFAULT_PAGE_SIZE = 1000
DEFAULT_BATCH_SIZE = 1000


def base_url(settings: Mapping[str, t.Any]) -> str:
    return settings.get("base_url") or DEFAULT_BASE_URL


def configured(settings: Mapping[str, t.Any]) -> bool:
    """Both keys (master_key and key) are set."""
    return bool(settings.get("master_key") and settings.get("key"))


def client_from_config(
    settings: Mapping[str, t.Any], http_options: Mapping[str, t.Any]
) -> CheckMarketClient:
    from optouts_providers.checkmarket.client import CheckMarketClient

    return CheckMarketClient(
        base_url(settings),
        settings["master_key"],
        settings["key"],
        page_size=int(settings.get("page_size") or DEFAULT_PAGE_SIZE),
        batch_size=int(settings.get("batch_size") or DEFAULT_BATCH_SIZE),
        **http_options,
    )
