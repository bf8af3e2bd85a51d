"""CheckMarket as a destination: emails and phones (E.164), in batched POSTs; a refused batch is
bisected by the client and the bad addresses come back as rejected. A batch's parts are sent in
full POSTs of `batch_size` (in a worker thread, while the next part is read: `inflight`); what is
left over waits for the next part or the batch's end.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from optouts_providers import checkmarket
from optouts_providers.results import WriteResult
from target_optouts.destinations.base import Destination, Values
from target_optouts.destinations.settings_check import refuse_half_pair
from target_optouts.inflight import InFlight

if TYPE_CHECKING:
    from optouts_providers.checkmarket.client import CheckMarketClient


class CheckMarketDestination(Destination):
    provider = "checkmarket"

    def __init__(self, client: CheckMarketClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        # Per stream: emails and phones, less than one POST's worth.
        self.kept: dict[str, tuple[list[str], list[str]]] = {}
        self.inflight = InFlight("checkmarket-writes")

    channels = [("email", attrgetter("email")), ("phone", attrgetter("phone"))]

    def send(self, values: Values, stream: str) -> WriteResult:
        emails, phones = self.kept.pop(stream, ([], []))
        emails.extend(values.get("email", ()))
        phones.extend(values.get("phone", ()))
        size = self.client.batch_size
        whole = (len(emails) + len(phones)) // size * size
        if not whole:
            self.kept[stream] = (emails, phones)
            return WriteResult()
        # Full POSTs now (emails first), the rest kept for the next part or the batch's end.
        ready = (emails[:whole], phones[: max(0, whole - len(emails))])
        rest = (emails[whole:], phones[max(0, whole - len(emails)) :])
        if rest[0] or rest[1]:
            self.kept[stream] = rest
        return self.inflight.submit(stream, lambda: self.client.add_optouts(*ready))

    def finish(self, stream: str) -> WriteResult | None:
        kept = self.kept.pop(stream, None)
        done = self.inflight.wait(stream)
        if kept and (kept[0] or kept[1]):
            done = (done or WriteResult()).add(self.client.add_optouts(*kept))
        return done

    def stats(self) -> dict[str, Any]:
        return self.client.stats.as_dict()

    def close(self) -> None:
        self.inflight.close()
        self.client.close()


def from_settings(
    settings: Mapping[str, Any], options: Mapping[str, Any], common: dict[str, Any]
) -> Destination | None:
    refuse_half_pair("checkmarket", settings, "master_key", "key")
    if not checkmarket.configured(settings):
        return None
    return CheckMarketDestination(checkmarket.client_from_config(settings, options), **common)
