"""SlickText as a destination: phones (E.164), the legacy OPTOUT action, or the new API's find,
then update or create; the client paces itself under the rate limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import Any

from optouts_providers import slicktext
from optouts_providers.results import WriteResult
from target_optouts.destinations.base import Destination, Values
from target_optouts.destinations.settings_check import refuse_half_pair


class SlickTextDestination(Destination):
    provider = "slicktext"

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client

    channels = [("phone", attrgetter("phone"))]

    def send(self, values: Values, stream: str) -> WriteResult:
        return self.client.optout_numbers(values.get("phone", []))

    def stats(self) -> dict[str, Any]:
        return self.client.stats.as_dict()

    def close(self) -> None:
        self.client.close()


def from_settings(
    settings: Mapping[str, Any], options: Mapping[str, Any], common: dict[str, Any]
) -> Destination | None:
    slicktext.check_one_api(settings)
    refuse_half_pair("slicktext", settings, "public_key", "private_key")
    if not slicktext.configured(settings):
        return None
    return SlickTextDestination(slicktext.client_from_config(settings, options), **common)
