"""checkmarket_optouts: the account's opt-out list, or one partition per configured survey."""

from __future__ import annotations

import typing as t
from functools import cached_property

from optouts_providers import checkmarket
from optouts_providers.http import http_options
from tap_optouts.streams.base import OptoutsStream, load_schema

if t.TYPE_CHECKING:
    from datetime import datetime

    from singer_sdk.helpers.types import Context

    from optouts_providers.checkmarket.client import CheckMarketClient


class CheckMarketOptoutsStream(OptoutsStream):
    name = "checkmarket_optouts"
    provider_key = "checkmarket"
    replication_key = "DateOptOut"
    # SurveyId is 0 for the account-wide list: the pair is unique within a sync.
    primary_keys: t.ClassVar[list[str]] = ["ContactId", "SurveyId"]
    schema = load_schema("checkmarket_optouts")

    @classmethod
    def configured(cls, config: t.Mapping[str, t.Any]) -> bool:
        return checkmarket.configured(config.get(cls.provider_key) or {})

    @property
    def partitions(self) -> list[dict[str, t.Any]] | None:
        survey_ids = self.provider_config.get("survey_ids")
        if not survey_ids:
            return None
        # The context key is the record's own field: the SDK copies context into records.
        return [{"SurveyId": int(survey_id)} for survey_id in survey_ids]

    @cached_property
    def client(self) -> CheckMarketClient:
        return checkmarket.client_from_config(self.provider_config, http_options(self.config))

    def fetch(
        self, context: Context | None, start: datetime, end: datetime
    ) -> t.Iterator[dict[str, t.Any]]:
        survey_id = (context or {}).get("SurveyId")
        yield from self.client.iter_optouts(start, end, survey_id=survey_id)
