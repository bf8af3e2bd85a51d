"""The `slicktext_optouts` stream: one stream for both SlickText APIs.

See docs/providers/slicktext.md, 'Two APIs'.
"""

from __future__ import annotations

import typing as t

from optouts_providers.slicktext.client import slicktext_client_from_config
from tap_optouts.client import OptoutsStream, http_options, load_schema

if t.TYPE_CHECKING:
    from datetime import datetime

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from optouts_providers.http import CallStats


class SlickTextOptoutsStream(OptoutsStream):
    """Opt-outs from the legacy API (public and private key) or the new API (API key)."""

    name = "slicktext_optouts"
    provider_key = "slicktext"
    primary_keys = ("id",)
    replication_key = "optOutDate"

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap=tap, schema=load_schema(self.name))

    @classmethod
    def configured(cls, config: t.Mapping[str, t.Any]) -> bool:
        settings = config.get(cls.provider_key) or {}
        legacy = bool(settings.get("public_key") and settings.get("private_key"))
        return legacy or bool(settings.get("api_key"))

    def fetch(
        self, context: Context | None, start: datetime, end: datetime
    ) -> t.Iterator[dict[str, t.Any]]:
        client = slicktext_client_from_config(self.provider_config, **http_options(self.config))
        self._client = client
        try:
            yield from client.iter_optouts(start, end)
        finally:
            client.close()

    def client_stats(self) -> CallStats | None:
        client = getattr(self, "_client", None)
        return client.stats if client is not None else None
