"""The sandbox: one loopback HTTP server, every provider under its own path prefix
(docs/providers/README.md, 'The sandbox').

    http://127.0.0.1:<port>/checkmarket       CheckMarket API v3
    http://127.0.0.1:<port>/slicktext         SlickText legacy API (v1)
    http://127.0.0.1:<port>/slicktext-v2      SlickText new API
    http://127.0.0.1:<port>/optizmo           Optizmo SUPPRESS API (+ /optizmo/storage/... links)
    http://127.0.0.1:<port>/optizmo-collect   Optizmo collect API
    http://127.0.0.1:<port>/_sandbox/...      inspection and control (not a provider)

Control endpoints: GET /_sandbox/health, GET /_sandbox/inspect, GET /_sandbox/stats,
GET|POST /_sandbox/config (switches), POST /_sandbox/clock {"advance_seconds": n},
POST /_sandbox/optouts {"provider": ..., "records": [...]}, POST /_sandbox/reset,
GET|POST /_sandbox/webhooks (the webhooks emitted, and the writes recorded: webhooks.py).
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from optouts_sandbox import seed as seeding
from optouts_sandbox.core import (
    Clock,
    Emulator,
    RateLimiter,
    Request,
    Response,
    Switches,
    json_response,
)

logger = logging.getLogger("optouts.sandbox")

# What a proxy or maintenance page answers in place of the API (the `malformed_kind` "html").
HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>\n"
)
# A well-formed JSON answer that is not the shape any endpoint answers (`wrong_json`).
WRONG_SHAPE = {"status": "ok", "result": {"items": "unavailable"}}


class Sandbox:
    """All emulators, their switches and clock, and request statistics."""

    def __init__(
        self,
        size: int = 300,
        seed: int = 7,
        switches: Switches | None = None,
        only: Collection[str] | None = None,
    ) -> None:
        from optouts_sandbox.checkmarket import CheckMarketEmulator
        from optouts_sandbox.optizmo import OptizmoCollectEmulator, OptizmoEmulator
        from optouts_sandbox.slicktext import SlickTextLegacyEmulator, SlickTextV2Emulator
        from optouts_sandbox.webhooks import WebhookEmitter

        self.size = size
        self.seed_value = seed
        # The benchmark's population (seed.py): only these providers hold opt-outs.
        self.only = tuple(only) if only else None
        self.switches = switches or Switches()
        self.clock = Clock()
        self.limiter = RateLimiter()
        self.stats: Counter[str] = Counter()
        self.stats_lock = threading.Lock()
        self.rng = random.Random(seed)
        self.webhooks = WebhookEmitter(self)
        optizmo = OptizmoEmulator(self)
        self.emulators: dict[str, Emulator] = {
            "checkmarket": CheckMarketEmulator(self),
            "slicktext": SlickTextLegacyEmulator(self),
            "slicktext-v2": SlickTextV2Emulator(self),
            "optizmo": optizmo,
            "optizmo-collect": OptizmoCollectEmulator(self, optizmo),
        }
        self.reseed()

    # Called after each (re)seeding; the `serve` command settles the collector there.
    after_reseed: Callable[[], None] | None = None

    def reseed(self) -> None:
        # A new world: data seeded anew. A ledger kept against the last one would claim what
        # this one does not hold (`optouts-sandbox start` clears the sandbox's own).
        self.world = uuid.uuid4().hex
        if self.only is None:
            population = seeding.generate(self.size, self.seed_value)
            for emulator in self.emulators.values():
                emulator.seed(population)
        else:
            # One pass of a generator each: a big list is never held as people too.
            for emulator in self.emulators.values():
                family = emulator.prefix.split("-")[0]
                emulator.seed(
                    seeding.iter_people(self.size, self.seed_value, self.only)
                    if family in self.only
                    else []
                )
        self.limiter.reset()
        if self.after_reseed is not None:
            self.after_reseed()
        with self.stats_lock:
            self.stats.clear()

    def count(self, key: str) -> None:
        with self.stats_lock:
            self.stats[key] += 1

    def inspect(self) -> dict[str, Any]:
        return {name: emulator.inspect() for name, emulator in self.emulators.items()}

    # -- dispatch -------------------------------------------------------------------------
    def dispatch(self, request: Request, prefix: str) -> Response | None:
        """Answer a provider request, applying faults and rate limits. None = drop the
        connection (a reset fault)."""
        emulator = self.emulators.get(prefix)
        if emulator is None:
            return json_response({"message": f"no provider at /{prefix}"}, 404)
        sw = self.switches
        self.count(f"{prefix} {request.method}")
        if sw.latency_ms:
            time.sleep(sw.latency_ms / 1000.0)
        if sw.reset_rate and self.rng.random() < sw.reset_rate:
            self.count(f"{prefix} fault:reset")
            return None
        if sw.stall_rate and self.rng.random() < sw.stall_rate:
            self.count(f"{prefix} fault:stall")
            time.sleep(sw.stall_seconds)
        if sw.error_rate and self.rng.random() < sw.error_rate:
            self.count(f"{prefix} fault:{sw.error_status}")
            response = emulator.error(request, sw.error_status, "Service temporarily unavailable")
            if sw.retry_after is not None:
                response.headers["Retry-After"] = str(sw.retry_after)
            return self._retry_after_form(response)
        limit_headers: dict[str, str] = {}
        credential = emulator.credential(request)
        limit = sw.rate_limit(emulator.rate_limit_key or prefix)
        if limit is not None and credential is not None:
            allowed, remaining, reset = self.limiter.check(prefix, credential, limit)
            limit_headers = emulator.rate_limit_headers(limit, remaining, reset)
            if not allowed:
                self.count(f"{prefix} 429")
                response = emulator.rate_limited(request, reset)
                response.headers.update(limit_headers)
                return self._retry_after_form(response)
        malformed = bool(sw.malformed_rate) and self.rng.random() < sw.malformed_rate
        if malformed and sw.malformed_kind == "html":
            self.count(f"{prefix} fault:html")
            return Response(200, HTML_ERROR_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        response = emulator.handle(request)
        if sw.record_writes and request.method in ("POST", "PUT") and response.status < 300:
            self.webhooks.record_write(prefix, request.body)
        if malformed and response.status < 300:
            self.count(f"{prefix} fault:wrong_json")
            response = json_response(WRONG_SHAPE)
        if credential is not None and response.status not in (401, 403):
            response.headers.update(limit_headers)
        return response

    def _retry_after_form(self, response: Response) -> Response:
        """Retry-After as an HTTP date when the `retry_after_format` switch says so."""
        value = response.headers.get("Retry-After")
        if value is not None and self.switches.retry_after_format == "date":
            when = math.ceil(time.time() + float(value))
            response.headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
        return response

    def control(self, request: Request, action: str) -> Response:
        if action == "health":
            return json_response({"ok": True, "world": self.world})
        if action == "inspect":
            return json_response(self.inspect())
        if action == "stats":
            with self.stats_lock:
                return json_response(dict(self.stats))
        if action == "config":
            if request.method == "POST":
                try:
                    self.switches.update(request.json() or {})
                except (ValueError, TypeError) as exc:
                    return json_response({"message": str(exc)}, 400)
                self.limiter.reset()
            return json_response(self.switches.as_dict())
        if action == "clock" and request.method == "POST":
            self.clock.advance(float((request.json() or {}).get("advance_seconds", 0)))
            return json_response({"now": self.clock.now().isoformat()})
        if action == "optouts" and request.method == "POST":
            payload = request.json() or {}
            emulator = self.emulators.get(payload.get("provider", ""))
            if emulator is None:
                return json_response({"message": "unknown provider"}, 400)
            added = emulator.admin_add(payload.get("records", []))
            return json_response({"added": added})
        if action == "webhooks":
            return self.webhooks.control(request)
        if action == "reset" and request.method == "POST":
            payload = request.json() or {}
            self.size = int(payload.get("size", self.size))
            self.seed_value = int(payload.get("seed", self.seed_value))
            self.switches.update({})
            self.reseed()
            return json_response({"ok": True})
        return json_response({"message": f"unknown control {action}"}, 404)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SandboxHTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus the
        # client's delayed ACK stall every keep-alive request by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        segments = path.lstrip("/").split("/", 1)
        prefix = segments[0]
        rest = "/" + (segments[1] if len(segments) > 1 else "")
        sandbox = self.server.sandbox
        host = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
        request = Request(
            self.command,
            rest,
            query,
            dict(self.headers.items()),
            body,
            f"{host}/{prefix}",
            host,
        )
        try:
            if prefix == "_sandbox":
                response: Response | None = sandbox.control(request, rest.strip("/"))
            else:
                response = sandbox.dispatch(request, prefix)
        except Exception as exc:  # an emulator bug must show, not hang the client
            logger.exception("sandbox error on %s %s", self.command, path)
            response = json_response({"message": f"sandbox error: {exc}"}, 500)
        if response is None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(response)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        if isinstance(response.body, bytes | bytearray):
            length = response.content_length
            if length is None:
                length = len(response.body)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body[:length])
            if length > len(response.body):
                # A truncated body: announce more than is sent, then drop the connection.
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        for key, value in response.headers.items():
            self.send_header(key, value)
        if response.content_length is not None:
            self.send_header("Content-Length", str(response.content_length))
            self.end_headers()
            written = 0
            for chunk in response.chunks():
                self.wfile.write(chunk)
                written += len(chunk)
            if written != response.content_length:
                # A truncated body: announce more than is sent, then drop the connection.
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in response.chunks():
            if chunk:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_DELETE = _serve
    do_HEAD = _serve


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.sandbox = sandbox

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            # A client that went away (killed, or gave up on a stalled answer) is no error.
            logger.debug("client %s went away", client_address)
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def base_urls(self) -> dict[str, str]:
        return {name: f"{self.url}/{name}" for name in self.sandbox.emulators}

    def start_in_thread(self) -> threading.Thread:
        # A short poll interval: shutdown() returns within 50 ms instead of 500 ms (test speed).
        thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="optouts-sandbox", daemon=True
        )
        thread.start()
        return thread
