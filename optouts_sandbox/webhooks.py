"""The webhooks the sandbox emits: on every opt-out it gains (`POST /_sandbox/optouts`, or a
client's write), a delivery to each registered URL, as the vendors send them.

- CheckMarket: `Panelist.Optout` to each hook registered with `POST 3/hooks` (`GET 3/hooks`
  lists them, `DELETE 3/hooks/{id}` removes one).
- SlickText legacy: the form-encoded, signed `OptOut` event to `webhook_slicktext_url`; the new
  API: a `contact_updated` envelope to `webhook_slicktext_v2_url`.

Deliveries go out from a few threads, with the vendors' timeout (`webhook_timeout_seconds`) and
retries (time-compressed), and the fault switches (dropped, repeated, out of order; see
`Switches`). `GET /_sandbox/webhooks` shows every attempt (its answer and answer time) and,
with `record_writes`, every accepted provider write; `POST /_sandbox/webhooks {"clear": true}`
empties both logs.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import requests

from optouts_providers.checkmarket import webhooks as cm_hooks
from optouts_providers.checkmarket import wire as cm_wire
from optouts_providers.slicktext import webhooks as st_hooks
from optouts_providers.timeutil import utc_to_pacific
from optouts_sandbox.core import Request, Response, json_response

logger = logging.getLogger("optouts.sandbox")

SENDERS = 8
LOG_SIZE = 500_000
# A delivery's body and headers for its attempt number (SlickText counts attempts in the body).
Build = Callable[[int], tuple[bytes, dict[str, str]]]


class WebhookEmitter:
    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.hooks: dict[int, str] = {}  # CheckMarket WebhookId -> URL
        self._next_hook = 7001
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self.writes: deque[tuple[float, str, str]] = deque(maxlen=LOG_SIZE)
        self.lock = threading.Lock()
        self.rng = random.Random(sandbox.seed_value)
        self._ready: queue.Queue[tuple[dict[str, Any], int]] = queue.Queue()
        self._later: list[tuple[float, int, dict[str, Any], int]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._local = threading.local()
        self._started = False

    @property
    def switches(self) -> Any:
        return self.sandbox.switches

    # -- CheckMarket's hooks API -----------------------------------------------------------
    def hooks_api(self, request: Request, path: str) -> Response:
        now = self.sandbox.clock.now()
        tail = path[len("/" + cm_hooks.HOOKS_PATH) :].strip("/")
        if not tail and request.method == "POST":
            try:
                body = request.json()
            except ValueError:
                body = None
            url = body.get("TargetUrl") if isinstance(body, dict) else None
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                return _cm_error(400, "TargetUrl is required", now)
            if body.get("EventName") != cm_hooks.OPTOUT_EVENT:
                return _cm_error(400, f"Unsupported EventName {body.get('EventName')!r}", now)
            with self.lock:
                hook_id = self._next_hook
                self._next_hook += 1
                self.hooks[hook_id] = url
            return json_response(cm_wire.envelope(cm_hooks.hook_data(hook_id, url, now), now), 201)
        if not tail and request.method == "GET":
            with self.lock:
                data = [cm_hooks.hook_data(i, u, now) for i, u in self.hooks.items()]
            return json_response(cm_wire.envelope(data, now))
        if tail.isdigit() and request.method == "DELETE":
            with self.lock:
                gone = self.hooks.pop(int(tail), None)
            if gone is None:
                return _cm_error(404, f"Webhook {tail} not found", now)
            return json_response(cm_wire.envelope({"WebhookId": int(tail)}, now))
        return _cm_error(405, "Method not allowed", now)

    # -- what the emulators call on each opt-out gained ------------------------------------
    def checkmarket_optout(self, contact: dict[str, Any], at: float) -> None:
        with self.lock:
            hooks = list(self.hooks.items())
        address = contact.get("Email") or contact.get(cm_wire.PHONE_FIELD)
        headers = {"Content-Type": "application/json"}
        for hook_id, url in hooks:
            body = json.dumps(cm_hooks.delivery(contact, hook_id)).encode()
            self._emit("checkmarket", url, lambda _n, b=body: (b, headers), None, address, at)

    def slicktext_optout(self, subscriber: dict[str, Any], at: float) -> None:
        url = self.switches.webhook_slicktext_url
        if not url:
            return
        secret = self.switches.webhook_slicktext_secret
        sign_body = self.switches.webhook_sign_body
        stamp = utc_to_pacific(self.sandbox.clock.now())

        def build(attempt: int) -> tuple[bytes, dict[str, str]]:
            event = json.dumps(st_hooks.legacy_event(subscriber, stamp, attempt))
            body = st_hooks.legacy_body(event)
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if secret:
                signed = body if sign_body else event.encode()
                headers[st_hooks.SIGNATURE_HEADER] = st_hooks.signature(secret, signed)
            return body, headers

        number = subscriber["Number"]
        self._emit("slicktext", url, build, subscriber.get("SubscriberId"), number, at)

    def slicktext_v2_optout(self, contact: dict[str, Any], at: float) -> None:
        url = self.switches.webhook_slicktext_v2_url
        if not url:
            return
        event_id = uuid.uuid4().hex[:24]
        stamp = utc_to_pacific(self.sandbox.clock.now())

        def build(attempt: int) -> tuple[bytes, dict[str, str]]:
            envelope = {
                "id": event_id,
                "name": "contact_updated",
                "url": url,
                "attempts": attempt,
                "date": stamp,
                "data": contact,
            }
            return json.dumps(envelope).encode(), {"Content-Type": "application/json"}

        self._emit("slicktext-v2", url, build, event_id, contact["mobile_number"], at)

    def record_write(self, prefix: str, body: bytes) -> None:
        """An accepted provider write (when `record_writes` is on)."""
        self.writes.append((time.time(), prefix, unquote_plus(body.decode("utf-8", "replace"))))

    # -- control ---------------------------------------------------------------------------
    def control(self, request: Request) -> Response:
        if request.method == "POST":
            if (request.json() or {}).get("clear"):
                self.deliveries.clear()
                self.writes.clear()
            return json_response({"ok": True})
        with self.lock:
            hooks = dict(self.hooks)
        return json_response(
            {
                "hooks": {str(k): v for k, v in hooks.items()},
                "deliveries": list(self.deliveries),
                "writes": [list(w) for w in self.writes],
                "queued": self._ready.qsize() + len(self._later),
            }
        )

    # -- sending ---------------------------------------------------------------------------
    def _emit(
        self, source: str, url: str, build: Build, event_id: Any, address: Any, at: float
    ) -> None:
        sw = self.switches
        job = {
            "source": source,
            "url": url,
            "build": build,
            "event_id": event_id,
            "address": address,
            "event_at": at,
        }
        rng = self.rng
        if sw.webhook_drop_rate and rng.random() < sw.webhook_drop_rate:
            self._log(job, 1, "dropped", None)
            return
        self._start()
        copies = 2 if sw.webhook_repeat_rate and rng.random() < sw.webhook_repeat_rate else 1
        delay = 0.0
        if sw.webhook_reorder_rate and rng.random() < sw.webhook_reorder_rate:
            delay = sw.webhook_reorder_seconds
        for _copy in range(copies):
            self._schedule(job, 1, delay)

    def _schedule(self, job: dict[str, Any], attempt: int, delay: float) -> None:
        if delay <= 0:
            self._ready.put((job, attempt))
            return
        with self._wake:
            heapq.heappush(self._later, (time.monotonic() + delay, next(self._order), job, attempt))
            self._wake.notify()

    def _start(self) -> None:
        with self.lock:
            if self._started:
                return
            self._started = True
        for index in range(SENDERS):
            name = f"sandbox-webhooks-{index}"
            threading.Thread(target=self._sender, name=name, daemon=True).start()
        threading.Thread(target=self._timer, name="sandbox-webhooks-timer", daemon=True).start()

    def _timer(self) -> None:
        while True:
            with self._wake:
                while not self._later or self._later[0][0] > time.monotonic():
                    timeout = self._later[0][0] - time.monotonic() if self._later else None
                    self._wake.wait(timeout)
                _when, _order, job, attempt = heapq.heappop(self._later)
            self._ready.put((job, attempt))

    def _sender(self) -> None:
        while True:
            job, attempt = self._ready.get()
            try:
                self._send(job, attempt)
            except Exception:  # a sandbox bug must show, not stop the sender
                logger.exception("sandbox webhook delivery failed")

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _send(self, job: dict[str, Any], attempt: int) -> None:
        sw = self.switches
        body, headers = job["build"](attempt)
        started = time.monotonic()
        try:
            response = self._session().post(
                job["url"],
                data=body,
                headers=headers,
                timeout=sw.webhook_timeout_seconds,
                allow_redirects=False,  # SlickText follows none
            )
            status: Any = response.status_code
        except requests.Timeout:
            status = "timeout"
        except requests.RequestException:
            status = "error"
        elapsed = time.monotonic() - started
        self._log(job, attempt, status, elapsed)
        ok = isinstance(status, int) and 200 <= status < 300
        if not ok and attempt <= sw.webhook_retries:
            self._schedule(job, attempt + 1, sw.webhook_retry_seconds * 2 ** (attempt - 1))

    def _log(self, job: dict[str, Any], attempt: int, status: Any, elapsed: float | None) -> None:
        self.deliveries.append(
            {
                "source": job["source"],
                "event_id": job["event_id"],
                "address": job["address"],
                "event_at": job["event_at"],
                "attempt": attempt,
                "status": status,
                "sent_at": time.time(),
                "answer_ms": None if elapsed is None else round(elapsed * 1000, 2),
            }
        )


def _cm_error(status: int, message: str, now: Any) -> Response:
    return json_response(cm_wire.error_envelope(status, message, now), status)
