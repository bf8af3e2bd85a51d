"""The `slicktext_optouts` stream: one stream for both SlickText APIs.

See docs/providers/slicktext.md, 'Two APIs'.
"""

from __future__ import annotations

import typing as t
from functools import cached_property

from optouts_providers import slicktext
from optouts_providers.http import http_options
from tap_optouts.streams.base import OptoutsStream, load_schema

if t.TYPE_CHECKING:
    from datetime import datetime

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from optouts_providers.slicktext.client import SlickTextLegacyClient, SlickTextV2Client


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
        return slicktext.configured(config.get(cls.provider_key) or {})

    @cached_property
    def client(self) -> SlickTextLegacyClient | SlickTextV2Client:
        return slicktext.client_from_config(self.provider_config, http_options(self.config))

    def fetch(
        self, context: Context | None, start: datetime, end: datetime
    ) -> t.Iterator[dict[str, t.Any]]:
        yield from self.client.iter_optouts(start, end)
