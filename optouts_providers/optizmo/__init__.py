"""Optizmo: its default hosts, whether settings configure it, the client they make, and the
choice between collect and bulk upload.

`settings` is the `optizmo` object of the tap's or the target's config; `http_options` is what
`optouts_providers.http.http_options(config)` returns. The client module is imported when a
client is made: the sandbox imports this package for its wire format only.
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

from optouts_providers.optizmo.wire import DEFAULT_BASE_URL, DEFAULT_COLLECT_BASE_URL

if t.TYPE_CHECKING:
    from optouts_providers.optizmo.client import OptizmoClient

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_COLLECT_BASE_URL",
    "base_url",
    "client_from_config",
    "collect_base_url",
    "configured",
    "emails_in_bulk",
]


def base_url(settings: Mapping[str, t.Any]) -> str:
    return settings.get("base_url") or DEFAULT_BASE_URL


def collect_base_url(settings: Mapping[str, t.Any]) -> str:
    return settings.get("collect_base_url") or DEFAULT_COLLECT_BASE_URL


def configured(settings: Mapping[str, t.Any]) -> bool:
    """The API key is set. What a side needs beyond it, it checks itself: the tap lists to
    read (`list_ids`), the target a list to write to (`email_list_id`, `sms_list_id`)."""
    return bool(settings.get("api_key"))


def client_from_config(
    settings: Mapping[str, t.Any], http_options: Mapping[str, t.Any]
) -> OptizmoClient:
    from optouts_providers.optizmo.client import OptizmoClient

    return OptizmoClient(
        base_url(settings),
        settings["api_key"],
        collect_base_url=collect_base_url(settings),
        **http_options,
    )


def emails_in_bulk(email_count: int, bulk_threshold: int) -> bool:
    """Collect or bulk (docs/providers/optizmo.md, 'Collect or bulk'): a batch's emails go
    one by one to collect up to `bulk_threshold`, and in one bulk upload with its MD5s above
    it. MD5s always go in bulk: collect cannot carry them."""
    return email_count > bulk_threshold
