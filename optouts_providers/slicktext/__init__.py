"""SlickText: the default hosts of its two APIs, whether settings configure one, and the client
they make (docs/providers/slicktext.md, 'Two APIs').

`settings` is the `slicktext` object of the tap's or the target's config; `http_options` is
what `optouts_providers.http.http_options(config)` returns. The client module is imported when
a client is made: the sandbox imports this package for its wire format only.
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

from optouts_providers.slicktext.wire import (
    DEFAULT_OPTOUT_ACTION,
    LEGACY_DEFAULT_BASE_URL,
    MAX_PAGE_SIZE,
    V2_DEFAULT_BASE_URL,
)

if t.TYPE_CHECKING:
    from optouts_providers.slicktext.client import SlickTextLegacyClient, SlickTextV2Client

__all__ = [
    "BOTH_APIS_MESSAGE",
    "LEGACY_DEFAULT_BASE_URL",
    "V2_DEFAULT_BASE_URL",
    "base_url",
    "check_one_api",
    "client_from_config",
    "configured",
]

BOTH_APIS_MESSAGE = (
    "slicktext: set either public_key and private_key (legacy API) or api_key (new API), not both"
)


def configured(settings: Mapping[str, t.Any]) -> bool:
    """The legacy API's key pair (public_key and private_key) or the new API's api_key is set."""
    legacy = bool(settings.get("public_key") and settings.get("private_key"))
    return legacy or bool(settings.get("api_key"))


def base_url(settings: Mapping[str, t.Any]) -> str:
    """The configured host, else the default of the API the keys name (new API: `api_key`)."""
    default = V2_DEFAULT_BASE_URL if settings.get("api_key") else LEGACY_DEFAULT_BASE_URL
    return settings.get("base_url") or default


def check_one_api(settings: Mapping[str, t.Any]) -> None:
    """Refuse settings that name both APIs: the account has one, and picking either would
    fail on every request (or read the wrong account)."""
    if settings.get("api_key") and (settings.get("public_key") or settings.get("private_key")):
        raise ValueError(BOTH_APIS_MESSAGE)


def client_from_config(
    settings: Mapping[str, t.Any], http_options: Mapping[str, t.Any]
) -> SlickTextLegacyClient | SlickTextV2Client:
    """The new API when `api_key` is set, the legacy API when public and private key are;
    both is an error (`check_one_api`)."""
    from optouts_providers.slicktext.client import SlickTextLegacyClient, SlickTextV2Client

    check_one_api(settings)
    page_size = int(settings.get("page_size") or MAX_PAGE_SIZE)
    if settings.get("api_key"):
        return SlickTextV2Client(
            base_url(settings),
            settings["api_key"],
            settings.get("brand_id"),
            page_size=page_size,
            requests_per_second=settings.get("requests_per_second"),
            **http_options,
        )
    if settings.get("public_key") and settings.get("private_key"):
        return SlickTextLegacyClient(
            base_url(settings),
            settings["public_key"],
            settings["private_key"],
            page_size=page_size,
            optout_action=settings.get("optout_action") or DEFAULT_OPTOUT_ACTION,
            **http_options,
        )
    missing = "private_key" if settings.get("public_key") else "public_key"
    if not settings.get("public_key") and not settings.get("private_key"):
        missing = "api_key (new API) or public_key and private_key (legacy API)"
    raise ValueError(f"SlickText: {missing} is not set")
