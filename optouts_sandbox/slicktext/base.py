"""What both SlickText emulators share: the 400 they answer bad input with, phone numbers and
times as given, integer arguments, exact filters, and the base class (rate-limit headers,
JSON errors, routing, cached listings)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import phonenumbers

from optouts_providers.slicktext import wire
from optouts_providers.timeutil import pacific_to_utc, parse_timestamp, utc_to_pacific
from optouts_sandbox.core import Emulator, RateLimit, Request, Response

E164 = re.compile(r"\+[1-9]\d{7,14}")
PAGING_PARAMS = frozenset({"limit", "offset", "page", "pageSize"})


class BadRequest(Exception):
    """A 400 with a message (or another status)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def normalize_number(value: str, *, strict: bool) -> str:
    """E.164 of a valid number; `strict` demands E.164 input (new API), else US national
    numbers are accepted too (legacy example `number=5556567777`)."""
    text = (value or "").strip()
    if strict and not text.startswith("+"):
        raise BadRequest("mobile_number must be in E.164 format, e.g. +15555550117")
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else "US")
    except phonenumbers.NumberParseException:
        raise BadRequest(f"Invalid phone number: {text!r}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise BadRequest(f"Invalid phone number: {text!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def admin_number(value: Any) -> str:
    """A number given to `admin_add` (trusted test input): E.164 taken as is, which keeps bulk
    loads fast; anything else goes through full validation."""
    text = str(value or "").strip()
    return text if E164.fullmatch(text) else normalize_number(text, strict=False)


def wall_and_instant(value: Any, default: datetime) -> tuple[str, datetime]:
    """A Pacific wall time and its instant from a naive Pacific string (earlier instant when
    ambiguous), an RFC 3339 string (exact), or `default` (UTC)."""
    if not value:
        instant = default
    else:
        text = str(value).strip()
        try:
            wire.parse_pacific_wall(text)
        except ValueError:
            instant = parse_timestamp(text)
        else:
            return text, pacific_to_utc(text)
    instant = instant.astimezone(UTC).replace(microsecond=0)
    return utc_to_pacific(instant), instant


def email_md5(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def int_arg(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.arg(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if value < low:
        raise BadRequest(f"{name} must be at least {low}")
    if high is not None and value > high:
        raise BadRequest(f"{name} may be at most {high}")
    return value


def exact_test(field: str, value: str) -> Callable[[dict[str, Any]], bool]:
    def test(item: dict[str, Any]) -> bool:
        current = item.get(field)
        return ("" if current is None else str(current)) == value

    return test


class SlickTextBase(Emulator):
    """What both APIs share: rate-limit headers, JSON errors, routing with 400s."""

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        self._listings: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}

    def rate_limit_headers(self, limit: RateLimit, remaining: int, reset: float) -> dict[str, str]:
        headers = wire.RATE_HEADERS
        ceiling = limit.per_window or limit.per_second or 0
        return {
            headers.limit: str(int(ceiling)),
            headers.remaining: str(remaining),
            headers.reset: str(max(0, int(-(-reset // 1)))),
        }

    def handle(self, request: Request) -> Response:
        if not self.authorized(request):
            return self.error(request, 401, "Unauthenticated: invalid API credentials")
        try:
            with self.lock:
                try:
                    return self.route(request, [s for s in request.path.split("/") if s])
                finally:
                    if request.method != "GET":
                        self.changed()
        except BadRequest as exc:
            return self.error(request, exc.status, str(exc))

    def changed(self) -> None:
        """The stored contacts or opt-outs may have changed: forget the cached listings."""
        self._listings.clear()

    def matching(
        self, request: Request, rows: Callable[[], Iterable[dict[str, Any]]], tests: list[Any]
    ) -> list[dict[str, Any]]:
        """The rows a listing's filters select, computed once per distinct filter set while
        nothing changes (a client pages through the same listing many times)."""
        key = tuple(
            sorted(
                (name, values[0])
                for name, values in request.query.items()
                if name not in PAGING_PARAMS
            )
        )
        cached = self._listings.get(key)
        if cached is None:
            if len(self._listings) >= 16:
                self._listings.clear()
            cached = self._listings[key] = [r for r in rows() if all(t(r) for t in tests)]
        return cached

    def authorized(self, request: Request) -> bool:
        raise NotImplementedError

    def route(self, request: Request, parts: list[str]) -> Response:
        raise NotImplementedError

    def now_wall(self) -> tuple[str, datetime]:
        instant = self.clock.now().replace(microsecond=0)
        return utc_to_pacific(instant), instant
