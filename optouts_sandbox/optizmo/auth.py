"""What the SUPPRESS and collect apps share: the API key, the rate-limit headers, bad payloads."""

from __future__ import annotations

import math
import time

from optouts_providers.optizmo import wire
from optouts_sandbox import credentials as C
from optouts_sandbox.core import Emulator, RateLimit, Request, Response, json_response

API_KEYS = frozenset({C.OPTIZMO_API_KEY, C.OPTIZMO_OTHER_API_KEY})
INVALID_PAYLOAD = "Invalid request payload sent. Further details will be available in the payload."
# Headers are sent on every answer ('Rate limits'); with no limit configured they describe this one.
NOMINAL_LIMIT = RateLimit(per_window=100_000, window_seconds=60.0)


def api_key(request: Request) -> str | None:
    """'Authentication': `Authorization: Bearer <key>` (prose) or `api_key: <key>` (security
    scheme)."""
    auth = request.header("authorization") or ""
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.header("api_key")


class OptizmoApp(Emulator):
    """Credential and rate-limit behaviour shared by the SUPPRESS and collect apps."""

    def credential(self, request: Request) -> str | None:
        if request.path.startswith("/storage/"):
            return None  # pre-signed storage is not the API
        return api_key(request)

    def rate_limit_headers(self, limit: RateLimit, remaining: int, reset: float) -> dict[str, str]:
        if self.switches.optizmo_reset == "epoch":
            reset_value = str(math.ceil(time.time() + reset))
        else:
            reset_value = str(math.ceil(reset))
        return {
            wire.RATE_LIMIT: str(limit.per_window or int(limit.per_second or 0)),
            wire.RATE_REMAINING: str(remaining),
            wire.RATE_RESET: reset_value,
        }

    def rate_limited(self, request: Request, retry_after: float) -> Response:
        # No Retry-After: the x-rate-limit-* headers (added by the server) say when.
        return json_response({"message": "Too many requests"}, 429)

    def authorized(self, request: Request) -> tuple[str | None, Response | None]:
        key = api_key(request)
        if key not in API_KEYS:
            return None, self.error(request, 401, "Authorization not sent or failed.")
        return key, None

    def with_rate_headers(self, request: Request, key: str, response: Response) -> Response:
        """Headers on every answer: when no limit is configured, a nominal one."""
        if self.switches.rate_limit(self.rate_limit_key or self.prefix) is None:
            _, remaining, reset = self.sandbox.limiter.check(
                f"{self.prefix}:nominal", key, NOMINAL_LIMIT
            )
            response.headers.update(self.rate_limit_headers(NOMINAL_LIMIT, remaining, reset))
        return response
