"""The providers' webhook deliveries read into events: which source, the provider's event id,
the fields of a record as the target reads them (`normalize_record`), and the event's time.

A body that is not the event it should be raises `NotTheEvent` (answered 400); an event of
another kind (a CheckMarket event other than `Panelist.Optout`, a SlickText contact whose
status is not an opt-out) is an `Event` with `optout=False` (answered 200, ignored).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from optouts_providers.checkmarket import webhooks as cm_hooks
from optouts_providers.slicktext import webhooks as st_hooks
from optouts_providers.timeutil import pacific_to_utc, parse_timestamp, to_rfc3339

# The streams the events go in as: the name decides the origin provider (skip_origin, and
# what the ledger learns: the origin holds the address).
STREAMS = {
    "checkmarket": "checkmarket_webhooks",
    "slicktext": "slicktext_webhooks",
    "slicktext-v2": "slicktext_webhooks",
}


class NotTheEvent(ValueError):
    """The body is not the delivery this endpoint takes."""


@dataclass
class Event:
    source: str  # checkmarket, slicktext, slicktext-v2
    name: str  # the provider's event name
    optout: bool  # an opt-out (else ignored)
    event_id: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    at: str | None = None  # the event's own time, RFC 3339 UTC

    @property
    def stream(self) -> str:
        return STREAMS[self.source]


def _object(raw: bytes | str) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotTheEvent("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise NotTheEvent("the body is not a JSON object")
    return body


def _utc(value: Any, *, pacific: bool) -> str | None:
    """An event time as RFC 3339 UTC; None when absent or unreadable (the received time then
    stands for it)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        text = value.strip()
        naive = "T" not in text and "+" not in text and not text.endswith("Z")
        when = pacific_to_utc(text) if pacific and naive else parse_timestamp(text)
    except (ValueError, OverflowError):
        return None
    return to_rfc3339(when)


def checkmarket(raw: bytes) -> Event:
    body = _object(raw)
    contact = body.get("Contact")
    name = body.get("EventName")
    if not isinstance(contact, dict) or not isinstance(name, str):
        raise NotTheEvent("not a CheckMarket delivery (Contact and EventName)")
    if name != cm_hooks.OPTOUT_EVENT:
        return Event("checkmarket", name, optout=False)
    record = {k: contact.get(k) for k in ("Email", "PhoneNumber") if contact.get(k)}
    contact_id = contact.get("ContactId")
    return Event(
        "checkmarket",
        name,
        optout=True,
        # The delivery has no event id of its own: a contact opts out once at a given time.
        event_id=f"{contact_id}:{contact.get('DateOptOut')}" if contact_id is not None else None,
        record=record,
        at=_utc(contact.get("DateOptOut"), pacific=False),
    )


def slicktext_data(raw: bytes) -> str | None:
    """The legacy delivery's `data` field (None when the body has none). The signature may
    cover this value or the whole body (see `webhooks.signature_matches`)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    values = parse_qs(text, keep_blank_values=True).get("data")
    return values[0] if values else None


def slicktext(data: str) -> Event:
    body = _object(data)
    name = body.get("Event")
    subscriber = body.get("Subscriber")
    if not isinstance(name, str) or (name == st_hooks.LEGACY_OPTOUT_EVENT and not subscriber):
        raise NotTheEvent("not a SlickText event (Event and Subscriber)")
    if name != st_hooks.LEGACY_OPTOUT_EVENT:
        return Event("slicktext", name, optout=False)
    if not isinstance(subscriber, dict):
        raise NotTheEvent("Subscriber is not an object")
    record = {"number": subscriber.get("Number"), "email": subscriber.get("Email")}
    at = subscriber.get("DateOptedOut") or body.get("Timestamp")
    subscriber_id = subscriber.get("SubscriberId")
    return Event(
        "slicktext",
        name,
        optout=True,
        # attemptNumber changes between retries; the subscriber and its opt-out time do not.
        event_id=f"{subscriber_id}:{at}" if subscriber_id else None,
        record={k: v for k, v in record.items() if v},
        at=_utc(at, pacific=True),
    )


def slicktext_v2(raw: bytes) -> Event:
    body = _object(raw)
    name, contact = body.get("name"), body.get("data")
    if not isinstance(name, str) or not isinstance(contact, dict):
        raise NotTheEvent("not a SlickText envelope (name and data)")
    event_id = body.get("id")
    if not st_hooks.is_v2_optout(name, contact):
        return Event("slicktext-v2", name, optout=False)
    record = {"mobile_number": contact.get("mobile_number"), "email": contact.get("email")}
    at = contact.get("last_opt_in_status_change") or body.get("date")
    return Event(
        "slicktext-v2",
        name,
        optout=True,
        event_id=str(event_id) if event_id else None,
        record={k: v for k, v in record.items() if v},
        at=_utc(at, pacific=True),
    )
