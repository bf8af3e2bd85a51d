"""Rejected records and addresses: counted, and written to `rejects_path` as JSON lines.

A line is `{"rejected_at", "stream", "reasons", "record"}` for a record that could not be
normalised, `{"rejected_at", "stream", "destination", "value", "reasons"}` for an address a
provider refused, or `{"rejected_at", "line", "reasons", "input"}` for an input line that is
not a usable Singer message (not UTF-8, not JSON, no type, a SCHEMA without properties...).
The file is appended to, so that earlier runs' rejects are kept; one that cannot be written is
refused when the target starts (`check_writable`), not at the first reject. Log lines carry
counts and reasons only, never the addresses.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import IO, Any

from optouts_providers.timeutil import to_rfc3339, utc_now
from target_optouts.errors import ConfigurationError

# An unusable input line is kept up to this many characters in the rejects file.
MAX_INPUT_CHARS = 2000


class Rejects:
    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.count = 0
        self.partial = 0  # records with one bad value whose other addresses were still used
        self.refused_count = 0  # addresses a provider refused (also counted per destination)
        self.invalid_lines = 0  # input lines that are not a usable Singer message
        self.by_reason: Counter[str] = Counter()
        self._file: IO[str] | None = None
        self._lock = threading.Lock()

    def check_writable(self) -> None:
        """Refuse a `rejects_path` that cannot be appended to (`ConfigurationError`)."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            with self.path.open("a", encoding="utf-8"):
                pass
            if not existed:
                self.path.unlink()  # made again at the first reject
        except OSError as exc:
            raise ConfigurationError(
                f"target-optouts: rejects_path {str(self.path)!r} cannot be written "
                f"({exc.strerror or exc}): set rejects_path to a file the target may append to"
            ) from None

    def record(
        self, stream: str, reasons: list[str], record: Any, *, partial: bool = False
    ) -> None:
        """A record (or one value of it, when `partial`) that could not be normalised."""
        line = {"stream": stream, "reasons": reasons, "record": record}
        if partial:
            line["partial"] = True
        self._add(line, reasons, kind="partial" if partial else "record")

    def refused(self, stream: str, destination: str, value: str, reason: str) -> None:
        """An address a provider refused."""
        line = {"stream": stream, "destination": destination, "value": value, "reasons": [reason]}
        self._add(line, [], kind="refused")

    def invalid_line(self, number: int, reasons: list[str], text: str) -> None:
        """An input line that is not a usable Singer message (the run goes on)."""
        line = {"line": number, "reasons": reasons, "input": text[:MAX_INPUT_CHARS]}
        self._add(line, reasons, kind="line")

    def _add(self, line: dict[str, Any], reasons: list[str], *, kind: str) -> None:
        with self._lock:
            if kind == "partial":
                self.partial += 1
            elif kind == "refused":
                self.refused_count += 1
            elif kind == "line":
                self.invalid_lines += 1
            else:
                self.count += 1
            for reason in reasons:
                self.by_reason[reason] += 1
            if self.path is None:
                return
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            payload = {"rejected_at": to_rfc3339(utc_now()), **line}
            self._file.write(json.dumps(payload, default=str, sort_keys=True) + "\n")
            self._file.flush()

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rejected": self.count,
                "partially_rejected": self.partial,
                "refused_by_providers": self.refused_count,
                "invalid_lines": self.invalid_lines,
                "reasons": dict(self.by_reason.most_common()),
            }

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
