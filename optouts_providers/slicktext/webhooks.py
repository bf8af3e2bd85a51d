"""SlickText's webhooks, shared by the receiver (`optouts_webhooks`) and the sandbox.

- Legacy API: a form POST with one field `data` holding the JSON event (`{"Event": "OptOut",
  "Timestamp", "attemptNumber", "Subscriber": {...}, "Textword": {...}}`), signed in the header
  `X-Slicktext-Signature`: the hex HMAC-MD5, keyed with the account's webhook secret, of the
  posted data. Whether that is the `data` value or the whole body is not clear from the
  vendor's text, so both are accepted. Times are Pacific wall times.
- New API: a JSON envelope `{"id", "name", "url", "attempts", "date", "data": {contact}}`; an
  opt-out is a `contact_updated` (or `contact_created`) whose `opt_in_status` is `unsubscribed`
  or `blocked`. No signing scheme is documented.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import urlencode

from optouts_providers.slicktext import wire

SIGNATURE_HEADER = "X-Slicktext-Signature"
LEGACY_OPTOUT_EVENT = "OptOut"
V2_CONTACT_EVENTS = ("contact_updated", "contact_created")


def signature(secret: str, data: bytes) -> str:
    """The legacy signature of `data`: hex HMAC-MD5 keyed with the webhook secret."""
    return hmac.new(secret.encode("utf-8"), data, hashlib.md5).hexdigest()


def signature_matches(secret: str, given: str | None, candidates: list[bytes]) -> bool:
    """True when `given` is the signature of one of `candidates` (compared in constant time)."""
    if not given:
        return False
    given = given.strip().lower()
    found = False
    for data in candidates:
        found |= hmac.compare_digest(signature(secret, data), given)
    return found


def legacy_body(event_json: str) -> bytes:
    """The form-encoded body of a legacy delivery."""
    return urlencode({"data": event_json}).encode("ascii")


def legacy_event(subscriber: dict[str, Any], timestamp: str, attempt: int) -> dict[str, Any]:
    """A legacy `OptOut` event for `subscriber` (SubscriberId, Number, Email, DateOptedOut...)."""
    return {
        "Event": LEGACY_OPTOUT_EVENT,
        "Timestamp": timestamp,
        "attemptNumber": attempt,
        "Subscriber": subscriber,
        "Textword": {"TextwordId": subscriber.get("TextwordId")},
    }


def is_v2_optout(name: Any, contact: Any) -> bool:
    return (
        name in V2_CONTACT_EVENTS
        and isinstance(contact, dict)
        and contact.get("opt_in_status") in wire.OPTED_OUT_STATUSES
    )
