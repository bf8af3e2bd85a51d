"""The collect app emulator ('Collect'): one opt-out per call into an email or SMS list of the
SUPPRESS emulator, shown in the list after `collect_delay_seconds`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from optouts_providers.optizmo import wire
from optouts_sandbox.core import Request, Response, json_response
from optouts_sandbox.optizmo.auth import INVALID_PAYLOAD, OptizmoApp
from optouts_sandbox.optizmo.lists import row_for
from optouts_sandbox.optizmo.suppress import OptizmoEmulator

COLLECTED_MESSAGE = "Optout has been collected and will be processed shortly."


class OptizmoCollectEmulator(OptizmoApp):
    """The collect app: it writes into the SUPPRESS emulator's lists, under its lock."""

    prefix = "optizmo-collect"

    def __init__(self, sandbox: Any, optizmo: OptizmoEmulator) -> None:
        super().__init__(sandbox)
        self.optizmo = optizmo
        self.lock = optizmo.lock

    def handle(self, request: Request) -> Response:
        if request.path.rstrip("/") != "/" + wire.COLLECT or request.method != "POST":
            return self.error(request, 404, f"no endpoint {request.method} {request.path}")
        key, refused = self.authorized(request)
        if refused is not None or key is None:
            return refused or self.error(request, 401, "Authorization not sent or failed.")
        with self.lock:
            response = self._collect(request)
        return self.with_rate_headers(request, key, response)

    def _collect(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("optoutListId"), str):
            return self.error(request, 400, INVALID_PAYLOAD)
        given = [k for k in ("email", "sms") if body.get(k) not in (None, "")]
        if len(given) != 1 or not isinstance(body[given[0]], str):
            return self.error(request, 400, f"{INVALID_PAYLOAD} Send exactly one of email or sms.")
        lst = self.optizmo.lists.get(body["optoutListId"])
        if lst is None or lst.kind == "grouped":
            return self.error(
                request,
                403,
                "The Opt-Out List id is invalid, or the list is "
                "disabled, deleted, grouped or linked.",
            )
        field_name, value = given[0], wire.normalize(body[given[0]])
        if (field_name == "sms") != (lst.kind == "sms"):
            return self.error(
                request, 400, f"{INVALID_PAYLOAD} This list does not take {field_name}."
            )
        valid = wire.is_sms(value) if field_name == "sms" else wire.is_email(value)
        if not valid:
            return self.error(request, 400, f"{INVALID_PAYLOAD} Invalid {field_name}.")
        now = self.clock.now()
        delay = self.switches.collect_delay_seconds
        visible_at = now + timedelta(seconds=delay) if delay else None
        lst.add(row_for(lst.kind, value, now, collected=True, visible_at=visible_at))
        return json_response({"message": COLLECTED_MESSAGE})
