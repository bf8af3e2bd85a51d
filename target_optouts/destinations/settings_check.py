"""What every destination's settings must hold together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def refuse_half_pair(name: str, settings: Mapping[str, Any], first: str, second: str) -> None:
    """Only one of two settings that go together is an error (a half-configured destination)."""
    has_first, has_second = bool(settings.get(first)), bool(settings.get(second))
    if has_first != has_second:
        missing = second if has_first else first
        raise ValueError(f"{name}: {missing} is not set (both {first} and {second} are needed)")
