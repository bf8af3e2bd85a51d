"""Collect (docs/providers/optizmo.md, 'Collect'): one opt-out at a time into a list."""

from __future__ import annotations

from optouts_providers.http import ProviderError
from optouts_providers.optizmo import wire
from optouts_providers.optizmo.hosts import Hosts
from optouts_providers.results import WriteResult


def collect(
    hosts: Hosts, list_id: str, *, email: str | None = None, sms: str | None = None
) -> None:
    """'Collect': one opt-out into an email list (`email`) or an SMS list (`sms`)."""
    if (email is None) == (sms is None):
        raise ValueError("collect takes exactly one of email or sms")
    body = {"optoutListId": list_id}
    if email is not None:
        body["email"] = wire.normalize(email)
    else:
        body["sms"] = wire.sms_digits(sms or "")
    hosts.collect.request("POST", wire.COLLECT, json=body).close()


def collect_each(hosts: Hosts, list_id: str, values: list[str], kind: str) -> WriteResult:
    """Each value collected (`kind`: "email" or "sms"); one Optizmo refuses (400) is rejected."""
    result = WriteResult()
    for value in values:
        try:
            if kind == "sms":
                collect(hosts, list_id, sms=value)
            else:
                collect(hosts, list_id, email=value)
        except ProviderError as exc:
            if exc.status != 400:
                raise
            result.rejected.append((value, exc.detail or "refused by Optizmo collect"))
            continue
        # Collect does not tell whether the list held the address already.
        result.written += 1
    return result
