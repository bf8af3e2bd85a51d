"""The hosts an Optizmo client talks to (docs/providers/optizmo.md, 'Hosts'): the SUPPRESS API,
the collect app (both with the credential) and pre-signed storage links (without it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optouts_providers.http import ProviderError, ProviderSession, decode_json
from optouts_providers.optizmo import wire


@dataclass
class Hosts:
    api: ProviderSession
    collect: ProviderSession
    # Pre-signed storage links: no credential, and not paced by the API's rate window.
    storage: ProviderSession
    sleep: Callable[[float], None]  # polls and refetches wait with it

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """An API call whose answer is a JSON object."""
        response = self.api.request(method, path, **kwargs)
        try:
            body = decode_json(response)
        except Exception:
            raise ProviderError(
                wire.PROVIDER, method, "/" + path, response.status_code, "the answer is not JSON"
            ) from None
        if not isinstance(body, dict):
            raise ProviderError(
                wire.PROVIDER,
                method,
                "/" + path,
                response.status_code,
                "the answer is not a JSON object",
            )
        return body
