"""The three providers as destinations, each wrapping its client (see docs/providers/).

- CheckMarket carries emails and phones (E.164), in batched POSTs; a refused batch is bisected
  by the client and the bad addresses come back as rejected. A batch's parts are sent in full
  POSTs of `batch_size` (in a worker thread, while the next part is read: `inflight`); what is
  left over waits for the next part or the batch's end.
- SlickText carries phones (E.164): the legacy OPTOUT action, or the new API's find, then
  update or create; the client paces itself under the rate limit.
- Optizmo: the email list carries emails, and MD5s (bulk upload only); the SMS list carries
  phones as digits without '+' (collect). Emails: collect up to `bulk_threshold` per batch,
  bulk upload above it: a batch's emails and MD5s are spooled to a temporary file until the
  batch ends, then collected or uploaded (one upload per batch, whatever its size).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from operator import attrgetter
from typing import Any

from optouts_providers.checkmarket.client import CheckMarketClient
from optouts_providers.http import http_options
from optouts_providers.optizmo import wire as optizmo_wire
from optouts_providers.optizmo.client import OptizmoClient
from optouts_providers.results import WriteResult
from optouts_providers.slicktext.client import check_one_api, slicktext_client_from_config
from target_optouts.destinations import Destination, Destinations, Values
from target_optouts.inflight import InFlight
from target_optouts.ledger.open import open_session
from target_optouts.normalize import OptOut
from target_optouts.rejects import Rejects


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


class OptizmoDestination(Destination):
    provider = "optizmo"

    def __init__(
        self,
        client: OptizmoClient,
        *,
        email_list_id: str | None,
        sms_list_id: str | None,
        bulk_threshold: int,
        upload_timeout_seconds: float,
        poll_interval_seconds: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.email_list_id = email_list_id
        self.sms_list_id = sms_list_id
        self.bulk_threshold = bulk_threshold
        self.upload_timeout_seconds = upload_timeout_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.spools: dict[str, Spool] = {}  # per stream: the email list's emails and MD5s

    def ledger_channels(self) -> dict[str, tuple[str, str]]:
        # Each list is a destination of its own in the ledger; an SMS list holds phones.
        out = {}
        if self.email_list_id:
            out["email"] = (f"optizmo:{self.email_list_id}", "email")
            out["md5"] = (f"optizmo:{self.email_list_id}", "md5")
        if self.sms_list_id:
            out["sms"] = (f"optizmo:{self.sms_list_id}", "phone")
        return out

    def ledger_value(self, channel: str, value: str) -> str:
        return "+" + value if channel == "sms" else value

    @cached_property
    def channels(self) -> list[tuple[str, Callable[[OptOut], str | None]]]:
        # An opt-out's MD5 is set only when it has no email and no phone (normalize.py).
        out: list[tuple[str, Callable[[OptOut], str | None]]] = []
        if self.email_list_id:
            out += [("email", attrgetter("email")), ("md5", attrgetter("md5"))]
        if self.sms_list_id:
            out.append(("sms", _sms_digits))
        return out

    def send(self, values: Values, stream: str) -> WriteResult:
        # Emails and MD5s share the email list: kept until the batch ends, when their number
        # decides between collect and a bulk upload (MD5s always go in bulk: collect cannot
        # carry them: optizmo.md, 'Collect or bulk'). SMS numbers are collected at once.
        emails, hashes = values.get("email", []), values.get("md5", [])
        if self.email_list_id and (emails or hashes):
            spool = self.spools.get(stream)
            if spool is None:
                spool = self.spools[stream] = Spool()
            spool.add(emails, hashes)
        numbers = values.get("sms")
        if self.sms_list_id and numbers:
            return self._write_list(self.sms_list_id, numbers, "sms")
        return WriteResult()

    def finish(self, stream: str) -> WriteResult | None:
        spool = self.spools.pop(stream, None)
        if spool is None or not self.email_list_id:
            return None
        with spool:
            if spool.emails > self.bulk_threshold:  # the spool is the upload file itself
                return self.client.upload_file(
                    self.email_list_id,
                    spool.file,
                    spool.emails + spool.hashes,
                    timeout_seconds=self.upload_timeout_seconds,
                    poll_interval_seconds=self.poll_interval_seconds,
                )
            result = self._write_list(self.email_list_id, list(spool.values(md5=False)), "email")
            if spool.hashes:
                result.add(self._upload(spool.values(md5=True)))
            return result

    def _upload(self, values: Iterable[str]) -> WriteResult:
        assert self.email_list_id is not None
        return self.client.bulk_upload(
            self.email_list_id,
            values,
            timeout_seconds=self.upload_timeout_seconds,
            poll_interval_seconds=self.poll_interval_seconds,
        )

    def _write_list(self, list_id: str, values: list[str], channel: str) -> WriteResult:
        return self.client.write_optouts(
            list_id,
            values,
            channel=channel,
            bulk_threshold=self.bulk_threshold,
            upload_timeout_seconds=self.upload_timeout_seconds,
            poll_interval_seconds=self.poll_interval_seconds,
        )

    def stats(self) -> dict[str, Any]:
        return self.client.stats.as_dict()

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()
        self.spools.clear()
        self.client.close()


class Spool:
    """A batch's emails and MD5s for the Optizmo email list, on disk until the batch ends."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.emails = 0
        self.hashes = 0

    def add(self, emails: list[str], hashes: list[str]) -> None:
        self.emails += len(emails)
        self.hashes += len(hashes)
        for values in (emails, hashes):
            if values:
                self.file.write(("\n".join(values) + "\n").encode("utf-8"))

    def values(self, md5: bool | None = None) -> Iterator[str]:
        """Every value, or only the MD5s (True) or only the emails (False)."""
        self.file.flush()
        self.file.seek(0)
        for raw in self.file:
            value = raw.decode("utf-8").rstrip("\n")
            if md5 is None or optizmo_wire.is_md5(value) == md5:
                yield value

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sms_digits(optout: OptOut) -> str | None:
    return optizmo_wire.sms_digits(optout.phone) if optout.phone else None


def _settings(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    return dict(config.get(name) or {})


def _require_pair(name: str, settings: Mapping[str, Any], first: str, second: str) -> bool:
    """True when both are set; an error when only one is (a half-configured destination)."""
    has_first, has_second = bool(settings.get(first)), bool(settings.get(second))
    if has_first != has_second:
        missing = second if has_first else first
        raise ValueError(f"{name}: {missing} is not set (both {first} and {second} are needed)")
    return has_first


def build_destinations(config: Mapping[str, Any], rejects: Rejects) -> Destinations:
    """A destination per provider whose credentials are set, and the ledger (`ledger_url`)."""
    common = {
        "rejects": rejects,
        "dry_run": bool(config.get("dry_run", False)),
        "skip_origin": bool(config.get("skip_origin", True)),
    }
    options = http_options(config)
    items: list[Destination] = []

    cm = _settings(config, "checkmarket")
    if _require_pair("checkmarket", cm, "master_key", "key"):
        client = CheckMarketClient(
            cm.get("base_url") or "https://api-eu.agileresearch.medallia.com",
            cm["master_key"],
            cm["key"],
            batch_size=int(cm.get("batch_size") or 1000),
            **options,
        )
        items.append(CheckMarketDestination(client, **common))

    st = _settings(config, "slicktext")
    check_one_api(st)
    legacy = _require_pair("slicktext", st, "public_key", "private_key")
    if legacy or st.get("api_key"):
        items.append(SlickTextDestination(slicktext_client_from_config(st, **options), **common))

    oz = _settings(config, "optizmo")
    if oz.get("api_key"):
        if not (oz.get("email_list_id") or oz.get("sms_list_id")):
            raise ValueError("optizmo: api_key is set but neither email_list_id nor sms_list_id")
        client = OptizmoClient(
            oz.get("base_url") or optizmo_wire.DEFAULT_BASE_URL,
            oz["api_key"],
            collect_base_url=oz.get("collect_base_url") or optizmo_wire.DEFAULT_COLLECT_BASE_URL,
            **options,
        )
        items.append(
            OptizmoDestination(
                client,
                email_list_id=oz.get("email_list_id"),
                sms_list_id=oz.get("sms_list_id"),
                bulk_threshold=int(oz.get("bulk_threshold", 1000)),
                upload_timeout_seconds=float(oz.get("upload_timeout_seconds") or 900),
                poll_interval_seconds=float(oz.get("poll_interval_seconds") or 5),
                **common,
            )
        )
    elif oz.get("email_list_id") or oz.get("sms_list_id"):
        raise ValueError("optizmo: a list id is set but api_key is not")
    ledger = open_session(config, dry_run=common["dry_run"]) if items else None
    return Destinations(items, rejects, dry_run=common["dry_run"], ledger=ledger)
