"""CheckMarket's `Panelist.Optout` webhook: the hook registration and the delivery's shape,
shared by the receiver (`optouts_webhooks`) and the sandbox that emits them.

A hook is registered with `POST 3/hooks` (`EventName`, `TargetUrl`); each opt-out is then
POSTed to the URL as JSON: `{"Contact": <the opt-out: ContactId, Email, DateOptOut, ...>,
"WebhookId", "EventName", "Links"}`. The delivery carries no signature: the receiver's URL
holds a long secret token instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from optouts_providers.checkmarket import wire

HOOKS_PATH = "3/hooks"
OPTOUT_EVENT = "Panelist.Optout"


def hook_body(url: str) -> dict[str, Any]:
    """The body of `POST 3/hooks` that registers the opt-out hook at `url`."""
    return {"EventName": OPTOUT_EVENT, "TargetUrl": url}


def hook_data(webhook_id: int, url: str, registered: datetime) -> dict[str, Any]:
    """A registered hook as `3/hooks` answers it (its `Data`)."""
    return {
        "WebhookId": webhook_id,
        "RegisteredDate": wire.format_date_optout(registered),
        "SurveyId": None,
        "EventName": OPTOUT_EVENT,
        "ClientUrl": url,
        "IsActive": True,
        "SurveyTitle": None,
    }


def delivery(contact: dict[str, Any], webhook_id: int) -> dict[str, Any]:
    """One `Panelist.Optout` delivery of `contact` (ContactId, Email, DateOptOut, ...)."""
    return {"Contact": contact, "WebhookId": webhook_id, "EventName": OPTOUT_EVENT, "Links": []}
