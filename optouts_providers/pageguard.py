"""A bound on every paged read: a listing that comes back to a page it has already given, or
runs past the pages its own row count allows, fails instead of running for ever.

A provider that hands out next links or offsets can loop (links that alternate or cycle, an
offset it ignores, a total it overstates). Each listing (one partition, one endpoint) gets a
`PageGuard`: a link already followed, a page whose rows are those of an earlier page, or more
pages than the provider's reported total allows (one page of slack, for rows that arrive while
it is paged) is a `PagingLoopError` naming the provider and the endpoint.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import msgspec

from optouts_providers.http import ProviderError

_encode = msgspec.json.Encoder().encode


class PagingLoopError(ProviderError):
    """A listing that repeats itself or runs past its reported size."""


class PageGuard:
    def __init__(self, provider: str, method: str, endpoint: str) -> None:
        self.provider = provider
        self.method = method
        self.endpoint = endpoint
        self.pages = 0
        self._page_rows = 0  # rows of the first non-empty page: the server's real page size
        self._links: set[str] = set()
        self._digests: set[bytes] = set()

    def _fail(self, detail: str) -> PagingLoopError:
        return PagingLoopError(self.provider, self.method, self.endpoint, None, detail)

    def follow(self, link: str) -> None:
        """Before a next link is requested: a link already followed is a loop."""
        if link in self._links:
            raise self._fail(
                f"paging loops: the next link {link!r} was already followed in this listing "
                f"(page {self.pages + 1})"
            )
        self._links.add(link)

    def page(self, rows: Sequence[Any], total: int | None = None) -> None:
        """After a page is read: its rows, and the row count the provider reports (if any)."""
        self.pages += 1
        if not rows:
            return
        digest = hashlib.blake2b(_encode(rows), digest_size=16).digest()
        if digest in self._digests:
            raise self._fail(
                f"paging loops: page {self.pages} holds the same {len(rows)} rows as an "
                "earlier page of this listing"
            )
        self._digests.add(digest)
        if not self._page_rows:
            self._page_rows = len(rows)
        if total is not None and total >= 0:
            allowed = math.ceil(total / self._page_rows) + 1
            if self.pages > allowed:
                raise self._fail(
                    f"paging runs past its size: page {self.pages}, but the provider "
                    f"reports {total} rows (at most {allowed} pages of {self._page_rows})"
                )
