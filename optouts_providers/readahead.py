"""Pages read one step ahead: the next page is requested while the caller handles this one.

A listing spends as long waiting for each page as it spends turning the page into records; a
worker thread that fetches (and decodes) the next page meanwhile overlaps the two. The pages
come in order, and no request is made that the plain loop would not make, except at most
`depth` pages past the point where the caller stops early. An error in the worker is raised
in the caller, in its place in the sequence.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()
# How often a worker waiting to hand over a page looks whether the caller stopped.
_WAKE_SECONDS = 0.5


def read_ahead(pages: Iterator[T], depth: int = 1, name: str = "read-ahead") -> Iterator[T]:
    """The items of `pages`, each produced by a worker thread while the previous is used."""
    handed: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def hand(item: object, error: BaseException | None = None) -> bool:
        while not stopped.is_set():
            try:
                handed.put((item, error), timeout=_WAKE_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for page in pages:
                if not hand(page):
                    return
            hand(_DONE)
        except BaseException as exc:  # raised in the caller, where the page would have been
            hand(_DONE, exc)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item, error = handed.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        stopped.set()
