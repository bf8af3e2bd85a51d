"""Private singer-sdk modules (a `_name` anywhere in the module path) are imported by one adapter
per side only, `tap_optouts/sdk.py` and `target_optouts/sdk.py`, so that an SDK upgrade has one
place per side to re-read."""

from __future__ import annotations

import ast

from tests.meltano_support import ROOT

ADAPTERS = {"tap_optouts/sdk.py", "target_optouts/sdk.py"}
PACKAGES = (
    "optouts_providers",
    "optouts_sandbox",
    "optouts_webhooks",
    "tap_optouts",
    "target_optouts",
)


def _private_sdk_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "singer_sdk" and any(p.startswith("_") for p in parts[1:]):
                found.append(name)
    return found


def test_private_sdk_modules_are_imported_by_the_adapters_only():
    offenders = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            found = _private_sdk_imports(path.read_text())
            if found and name not in ADAPTERS:
                offenders[name] = found
    assert offenders == {}
    for adapter in ADAPTERS:  # the check can see a private import
        assert _private_sdk_imports((ROOT / adapter).read_text())
