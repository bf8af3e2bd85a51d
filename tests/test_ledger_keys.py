"""The ledger's address keys are HMAC-SHA-256 of `<kind>:<value>`, whatever the key's length
(a ledger made by an earlier version keeps its keys)."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from target_optouts.ledger.keys import AddressKeys


@pytest.mark.parametrize("key", [b"k" * 16, b"0123456789abcdef" * 4, b"a longer key " * 20])
def test_keys_are_the_hmac_of_kind_and_value(key):
    keys = AddressKeys(key)
    values = ["person@example.com", "+15551234567", "d41d8cd98f00b204e9800998ecf8427e", "é@x.fr"]
    expected = [
        struct.unpack_from(">qq", hmac.new(key, f"email:{v}".encode(), hashlib.sha256).digest())
        for v in values
    ]
    assert keys.many("email", values) == expected
    assert keys.of("email", values[0]) == expected[0]
    assert keys.of("phone", values[0]) != expected[0]
