"""A digest of a singer-sdk function's source: what the tap's and the target's SDK adapters
record for each function they override, copy or call, so that an upgrade that changes one
shows (tests/test_sdk_private_names.py)."""

from __future__ import annotations

import hashlib
import importlib
import inspect


def sdk_source_digest(dotted: str) -> str:
    """The sha256 (16 hex digits) of the source of the SDK function `module.Class.name`."""
    module_name, class_name, name = dotted.rsplit(".", 2)
    function = getattr(getattr(importlib.import_module(module_name), class_name), name)
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]
