"""The receiver: an ASGI application (Starlette) taking the providers' webhook deliveries.

    POST /webhooks/checkmarket/{path_token}     CheckMarket Panelist.Optout (JSON)
    POST /webhooks/slicktext/{path_token}       SlickText legacy OptOut (form, signed)
    POST /webhooks/slicktext-v2/{path_token}    SlickText new API contact events (JSON)
    GET  /healthz                               the inbox and the workers, in counts

An opt-out is answered 200 only once it is committed to the inbox; the workers write it from
there (`propagate`). A wrong token is 404, a bad SlickText signature 401, a body that is not
the event 400, a body over `MAX_BODY_BYTES` 413: none of them stores anything, and no answer
or log line holds the token, the secret or an address. The inbox is SQLite or PostgreSQL and
its driver blocking, so each store runs in Starlette's thread pool.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from optouts_providers.slicktext import webhooks as st_hooks
from optouts_webhooks import events
from optouts_webhooks.events import Event, NotTheEvent
from target_optouts.ledger.inbox import Inbox
from target_optouts.normalize import normalize_record

logger = logging.getLogger("optouts-webhooks")

MAX_BODY_BYTES = 64 * 1024  # a delivery is a few kilobytes


class TooLarge(Exception):
    pass


class Receiver:
    """What the endpoints do with an event: normalise it, store it, wake the workers."""

    def __init__(
        self,
        inbox: Inbox,
        destinations: list[str],
        *,
        path_token: str,
        slicktext_secret: str | None,
        region: str = "US",
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.inbox = inbox
        self.destinations = destinations
        self.path_token = path_token
        self.slicktext_secret = slicktext_secret
        self.region = region
        self.wake = wake
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode("utf-8"), self.path_token.encode("utf-8"))

    def accept(self, event: Event) -> str:
        """Store an opt-out (committed when this returns): stored, duplicate, ignored (not an
        opt-out) or rejected (no usable address)."""
        if not event.optout:
            self.count(f"{event.source} ignored")
            return "ignored"
        normalised = normalize_record(event.record, event.stream, self.region)
        optout = normalised.optout
        if optout is None:
            self.count(f"{event.source} rejected")
            logger.warning(
                "optouts-webhooks: a %s event has no usable address (%s)",
                event.source,
                "; ".join(reason.split(":")[0] for reason in normalised.reasons),
            )
            return "rejected"
        optout.at = event.at or _now_text()
        stored = self.inbox.store(
            source=event.source,
            optout=optout,
            event="optout",
            event_id=event.event_id,
            destinations=self.destinations,
        )
        if stored is None:
            self.count(f"{event.source} duplicate")
            return "duplicate"
        self.count(f"{event.source} stored")
        self.wake()
        return "stored"


def _now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, text: str) -> JSONResponse:
    return JSONResponse({"status": text}, status_code=status)


def create_app(receiver: Receiver, health: Callable[[], dict[str, Any]] | None = None) -> Starlette:
    async def endpoint(request: Request, source: str) -> JSONResponse:
        if not receiver.token_ok(request.path_params["token"]):
            receiver.count("wrong token")
            return _answer(404, "not found")
        try:
            raw = await _body(request)
        except TooLarge:
            receiver.count(f"{source} too large")
            return _answer(413, "the body is too large")
        try:
            if source == "checkmarket":
                event = events.checkmarket(raw)
            elif source == "slicktext-v2":
                event = events.slicktext_v2(raw)
            else:
                secret = receiver.slicktext_secret
                if not secret:
                    receiver.count("slicktext not configured")
                    return _answer(404, "not found")
                data = events.slicktext_data(raw)
                signed = [raw] if data is None else [data.encode("utf-8"), raw]
                given = request.headers.get(st_hooks.SIGNATURE_HEADER)
                if not st_hooks.signature_matches(secret, given, signed):
                    receiver.count("slicktext bad signature")
                    return _answer(401, "bad signature")
                if data is None:
                    raise NotTheEvent("the form has no field data")
                event = events.slicktext(data)
        except NotTheEvent as exc:
            receiver.count(f"{source} malformed")
            return _answer(400, str(exc))
        try:
            outcome = await run_in_threadpool(receiver.accept, event)
        except Exception as exc:  # the inbox cannot be written: the provider retries
            receiver.count(f"{source} unavailable")
            logger.error("optouts-webhooks: the inbox cannot be written: %s", type(exc).__name__)
            return _answer(503, "unavailable")
        return _answer(200, outcome)

    async def checkmarket(request: Request) -> JSONResponse:
        return await endpoint(request, "checkmarket")

    async def slicktext(request: Request) -> JSONResponse:
        return await endpoint(request, "slicktext")

    async def slicktext_v2(request: Request) -> JSONResponse:
        return await endpoint(request, "slicktext-v2")

    async def healthz(request: Request) -> JSONResponse:
        payload: dict[str, Any] = {"ok": True, "received": dict(receiver.counts)}
        if health is not None:
            payload.update(await run_in_threadpool(health))
        return JSONResponse(payload)

    return Starlette(
        routes=[
            Route("/webhooks/checkmarket/{token}", checkmarket, methods=["POST"]),
            Route("/webhooks/slicktext/{token}", slicktext, methods=["POST"]),
            Route("/webhooks/slicktext-v2/{token}", slicktext_v2, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
