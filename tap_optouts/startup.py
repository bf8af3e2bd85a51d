"""What the tap checks before its first request, and how an error that ends it is logged.

- The state: a file that is not JSON, or a bookmark that is not a date-time, is refused with
  one line naming the stream and the value (the SDK would fail later with a bare traceback).
- The config: a setting out of its range (or both SlickText key sets) is one ERROR line naming
  the settings, the last line of stderr.
- An exception that ends the run is logged by the SDK's own hook (at ERROR, in its structured
  form under Meltano), with every secret masked in its message and in those it was raised from.
"""

from __future__ import annotations

import json
import sys
import typing as t
from datetime import datetime

from singer_sdk.plugin_base import SingerCommand

from optouts_providers.redact import redact

if t.TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

_SHOWN = 80  # characters of a wrong value shown in a message


class StateError(ValueError):
    """The state given to the tap cannot be used."""


def _show(value: t.Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def parse_state(text: str) -> t.Any:
    """The state file's JSON, or a StateError saying where it is broken."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"State: the state file is not valid JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno}): {_show(text.strip())}"
        ) from None


def check_state(state: t.Any, replication_keys: Mapping[str, str]) -> None:
    """Refuse a state the tap could not resume from: not an object, `bookmarks` not an
    object of objects, or a bookmark of one of `replication_keys`' streams (stream name to
    replication key, all date-times) that is not a date-time."""
    if not isinstance(state, dict):
        raise StateError(f"State: the state is not a JSON object: {_show(state)}")
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        raise StateError(f"State: 'bookmarks' is not an object: {_show(bookmarks)}")
    for stream, bookmark in bookmarks.items():
        if not isinstance(bookmark, dict):
            raise StateError(
                f"State: the bookmark of stream '{stream}' is not an object: {_show(bookmark)}"
            )
        if stream not in replication_keys:
            continue
        _check_entry(stream, None, bookmark)
        partitions = bookmark.get("partitions", [])
        if not isinstance(partitions, list):
            raise StateError(
                f"State: 'partitions' of stream '{stream}' is not a list: {_show(partitions)}"
            )
        for entry in partitions:
            if not isinstance(entry, dict) or not isinstance(entry.get("context", {}), dict):
                raise StateError(
                    f"State: a partition of stream '{stream}' is not an object with a "
                    f"context object: {_show(entry)}"
                )
            _check_entry(stream, entry.get("context"), entry)


def _check_entry(stream: str, context: t.Any, entry: Mapping[str, t.Any]) -> None:
    value = entry.get("replication_key_value")
    if value is None:
        return
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        where = f"stream '{stream}'" + (f" partition {_show(context)}" if context else "")
        raise StateError(
            f"State: the bookmark of {where} is not a date-time: "
            f"replication_key_value={_show(value)}"
        ) from None


# -- the exception that ends the run --------------------------------------------------------
def redacted_exception(exc: BaseException, _seen: set[int] | None = None) -> BaseException:
    """`exc` itself when nothing in it or the exceptions it came from holds a secret; else a
    stand-in of the same name and module, its message and chain masked."""
    seen = _seen if _seen is not None else set()
    seen.add(id(exc))
    chain = {}
    for name in ("__cause__", "__context__"):
        linked = getattr(exc, name)
        chain[name] = (
            redacted_exception(linked, seen)
            if linked is not None and id(linked) not in seen
            else linked
        )
    text = str(exc)
    clean = redact(text)
    if clean == text and all(chain[name] is getattr(exc, name) for name in chain):
        return exc
    kind = type(exc)
    stand_in_type = type(
        kind.__name__,
        (Exception,),
        {"__module__": kind.__module__, "__qualname__": kind.__qualname__},
    )
    stand_in = stand_in_type(clean)
    stand_in.__cause__ = chain["__cause__"]
    stand_in.__context__ = chain["__context__"]
    stand_in.__suppress_context__ = exc.__suppress_context__
    return stand_in.with_traceback(exc.__traceback__)


def keep_sdk_excepthook(hook: t.Callable[..., t.Any]) -> None:
    """Put back the SDK command's exception hook (`hook`, taken before the redaction hook
    replaced it), fed the redacted exception: the reason is then logged at ERROR, where the
    SDK logs it, instead of as bare traceback lines a log parser reads as INFO."""
    if not isinstance(getattr(hook, "__self__", None), SingerCommand):
        return

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if exc is None or issubclass(kind, KeyboardInterrupt):
            hook(kind, exc, tb)
            return
        clean = redacted_exception(exc)
        hook(type(clean), clean, tb)

    sys.excepthook = excepthook
