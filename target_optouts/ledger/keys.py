"""Address keys: what the ledger stores instead of an address.

An address is kept as the HMAC-SHA-256 of `<kind>:<normalised value>` (kind: email, phone in
E.164, md5), truncated to 128 bits and stored as two signed 64-bit integers: `hi` is the row's
primary key (an integer key is SQLite's fastest), `lo` is checked on every read. Two
addresses whose `hi` collide (about one pair in 10^19 for a billion addresses) are told apart by
`lo`; the second is then never recorded, so it is written again each run: a request lost,
never an opt-out. The same normalised address always maps to the same key, so the trail of an
address typed by a person is found by normalising and hashing it again.

The key is the `ledger_hash_key` setting, or a key generated once and kept in a file beside the
ledger (mode 0600). Without the key the hashes cannot be tested against a guessed address.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
from pathlib import Path

Key = tuple[int, int]  # (hi, lo)
FINGERPRINT_TEXT = b"optouts-ledger key fingerprint"
_PAIR = struct.Struct(">qq").unpack_from  # the first 128 bits as (hi, lo)
_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class AddressKeys:
    """Hashes addresses with one key: HMAC-SHA-256 (RFC 2104) from two prepared SHA-256
    states, the inner and the outer, copied per address (a third less time than copying an
    `hmac` object, which wraps the same states in Python)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("ledger_hash_key: at least 16 characters")
        block = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
        block = block.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(block.translate(_IPAD))
        self._outer = hashlib.sha256(block.translate(_OPAD))
        self.fingerprint = hmac.new(key, FINGERPRINT_TEXT, hashlib.sha256).hexdigest()[:32]

    def of(self, kind: str, value: str) -> Key:
        return self.many(kind, [value])[0]

    def many(self, kind: str, values: list[str]) -> list[Key]:
        prefix = kind + ":"
        inner, outer, pair = self._inner.copy, self._outer.copy, _PAIR
        out: list[Key] = []
        append = out.append
        for value in values:
            h = inner()
            h.update((prefix + value).encode())
            o = outer()
            o.update(h.digest())
            append(pair(o.digest()))  # type: ignore[arg-type]
        return out


def read_key_file(path: Path) -> bytes | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text.encode() if text else None


def new_key_file(path: Path) -> bytes:
    """A new random key, written to `path` readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return text.encode()
