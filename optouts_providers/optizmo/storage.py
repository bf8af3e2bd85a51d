"""Files behind pre-signed storage links (docs/providers/optizmo.md, 'The download link',
'Pre-signed links'): polled until ready, and fetched again when cut short."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from optouts_providers.http import ProviderError, RetryableProviderError
from optouts_providers.optizmo import wire
from optouts_providers.optizmo.hosts import Hosts
from optouts_providers.progress import Transfer

logger = logging.getLogger("optouts.optizmo")

POLL_GROWTH = 1.5
MAX_POLL_WAIT = 60.0
# A download cut short is fetched again from the (still valid) link this many times in all.
DOWNLOAD_ATTEMPTS = 3


def wait_for_file(
    hosts: Hosts, link: str, interval: float, timeout: float, progress: Transfer | None = None
) -> requests.Response:
    """'The download link': it answers 404 until the file is ready. Poll with growing waits."""
    deadline = time.monotonic() + timeout
    wait = max(interval, 0.01)
    polls = 0
    while True:
        response = hosts.storage.request_unauthenticated("GET", link, ok=(404,), stream=True)
        polls += 1
        if response.status_code != 404:
            if progress is not None:
                progress.status("ready", polls=polls, seconds=progress.elapsed())
            return response
        response.close()
        remaining = deadline - time.monotonic()
        if progress is not None and remaining > 0:
            progress.poll("waiting", next_poll_seconds=min(wait, remaining))
        if remaining <= 0:
            raise ProviderError(
                wire.PROVIDER,
                "GET",
                link,
                404,
                f"the download was still not ready after {timeout:g}s "
                f"(download_timeout_seconds; {polls} polls)",
            )
        hosts.sleep(min(wait, remaining))
        wait = min(wait * POLL_GROWTH, MAX_POLL_WAIT)


def read_refetching(
    hosts: Hosts,
    fetch: Callable[[], requests.Response],
    read: Callable[[requests.Response], Iterator[dict[str, Any]]],
    what: str,
) -> Iterator[dict[str, Any]]:
    """What `read` yields of the file `fetch` gets; a file cut short is fetched again (at
    most DOWNLOAD_ATTEMPTS times, after a short random wait), and `read` skips what an
    earlier try yielded."""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        response = fetch()
        try:
            yield from read(response)
            return
        except RetryableProviderError as exc:
            if attempt == DOWNLOAD_ATTEMPTS:
                raise
            logger.warning("Optizmo: %s; fetching the %s again (try %d)", exc, what, attempt + 1)
            hosts.sleep(random.uniform(0, min(5.0, 0.25 * 2**attempt)))
        finally:
            response.close()
