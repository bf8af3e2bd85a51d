"""Reading Singer messages so that bad input is rejected, never a crash.

The input is read as bytes where it has them (stdin, `--input`): a line that is not UTF-8, not
JSON, not an object or has no `type` goes to `on_invalid` with its line number and a reason,
and the next line is read. Valid lines cost what msgspec costs (no text decoding step).

`busy` is true while a message is handled (a batch may be in flight); a termination signal
that arrives then sets `stop_signal`, and reading stops after that message (see target.py).
"""

from __future__ import annotations

import logging
import sys
import typing as t
from collections import Counter

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder

logger = logging.getLogger("target-optouts")


class StopReading(Exception):
    """Raised by the signal handler to stop waiting for input."""


def _log_only(number: int, reasons: list[str], text: str) -> None:
    logger.warning("input line %d rejected: %s", number, "; ".join(reasons))


class OptoutsReader(MsgSpecReader):
    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0
        self.busy = False
        self.stop_signal: int | None = None
        self.on_invalid: t.Callable[[int, list[str], str], None] = _log_only
        self._raw: bytes | str = b""
        self._line_rejected = False

    @property
    def default_input(self) -> t.IO[bytes]:  # type: ignore[override]
        return sys.stdin.buffer

    def current_text(self) -> str:
        """The line being handled, as text (undecodable bytes shown as escapes)."""
        raw = self._raw
        text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
        return text.rstrip("\r\n")

    def reject_current(self, reason: str) -> None:
        self._line_rejected = True
        self.on_invalid(self.line_number, [reason], self.current_text())

    def deserialize_json(self, line: bytes | str) -> dict:  # type: ignore[override]
        message = self.parse(line)
        if message is None:
            raise ValueError(f"line {self.line_number} is not a Singer message")
        return message

    def parse(self, raw: bytes | str) -> dict[str, t.Any] | None:
        """The message of one line, or None (blank, or rejected with its reason)."""
        self._raw = raw
        try:
            message = decoder.decode(raw)
        except UnicodeDecodeError:
            position = _first_bad_byte(raw)
            self.reject_current(f"not valid UTF-8 (byte {position} of the line)")
            return None
        except msgspec.DecodeError as exc:
            if not raw.strip():
                return None
            self.reject_current(f"not JSON ({exc})")
            return None
        if not isinstance(message, dict):
            self.reject_current(f"not a JSON object ({type(message).__name__})")
            return None
        if not isinstance(message.get("type"), str):
            self.reject_current("a message without a type")
            return None
        return message

    def process_lines(
        self,
        file_input: t.IO[t.Any] | None,
        callbacks: dict[str, t.Callable[[dict], None]],
    ) -> t.Counter[str]:
        counts: Counter[str] = Counter()
        source = file_input if file_input is not None else self.default_input
        source = getattr(source, "buffer", source)
        try:
            for raw in source:
                self.line_number += 1
                message = self.parse(raw)
                if message is None:
                    continue
                kind = message["type"]
                callback = callbacks.get(kind)
                if callback is None:
                    self.reject_current(f"unknown message type {kind!r}")
                    continue
                self.busy = True
                self._line_rejected = False
                try:
                    callback(message)
                finally:
                    self.busy = False
                if not self._line_rejected:  # counted once: as a message or as a reject
                    counts[kind] += 1
                if self.stop_signal is not None:
                    break
        except StopReading:
            pass
        return counts


def _first_bad_byte(raw: bytes | str) -> int:
    if isinstance(raw, str):
        return 0
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return 0
