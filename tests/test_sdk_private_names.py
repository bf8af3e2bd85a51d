"""The private singer-sdk names the project uses live in one adapter per side only,
`tap_optouts/sdk.py` and `target_optouts/sdk.py`, so that an SDK upgrade has one place per side
to re-read; and the SDK functions those adapters override, copy or call are the ones they were
written against (a digest of their source, recorded for the pinned singer-sdk)."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

import pytest
from singer_sdk import Stream, Tap, Target
from singer_sdk.authenticators import APIKeyAuthenticator, BearerTokenAuthenticator
from singer_sdk.contrib.msgspec import MsgSpecReader, MsgSpecWriter
from singer_sdk.pagination import BaseHATEOASPaginator, OffsetPaginator
from singer_sdk.sinks import BatchSink
from singer_sdk.sinks.core import BaseJSONSchemaValidator

from tap_optouts import sdk as tap_sdk
from target_optouts import sdk as target_sdk
from tests.meltano_support import ROOT

ADAPTERS = {"tap_optouts/sdk.py", "target_optouts/sdk.py"}
PACKAGES = (
    "optouts_providers",
    "optouts_sandbox",
    "optouts_webhooks",
    "tap_optouts",
    "target_optouts",
)
# Every SDK class the project subclasses or calls into.
SDK_CLASSES = (
    Stream,
    Tap,
    Target,
    BatchSink,
    MsgSpecReader,
    MsgSpecWriter,
    APIKeyAuthenticator,
    BearerTokenAuthenticator,
    BaseJSONSchemaValidator,
    OffsetPaginator,
    BaseHATEOASPaginator,
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


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def sdk_private_names() -> set[str]:
    """The private (one underscore) methods and attributes of the SDK classes the project
    uses, their bases included: class members, and `self._x` set in their source."""
    names: set[str] = set()
    for cls in SDK_CLASSES:
        for klass in cls.__mro__:
            if not klass.__module__.startswith("singer_sdk"):
                continue
            names.update(n for n in vars(klass) if _private(n))
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                    and isinstance(node.ctx, ast.Store)
                    and _private(node.attr)
                ):
                    names.add(node.attr)
    return names


def _uses(source: str, names: set[str]) -> list[str]:
    """Where the source reads one of `names` as an attribute or names it in a string (as
    getattr and monkeypatch do), or defines it as a method."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in names:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Constant) and node.value in names:
            found.append(f"{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name in names:
                    found.append(f"{item.lineno}: def {node.name}.{item.name}")
    return found


def _project_modules() -> list[tuple[str, str]]:
    """Every Python file of the packages, the tests, the benchmarks and the scripts (but this
    one, which names the private names it looks for)."""
    here = Path(__file__).resolve()
    return [
        (str(path.relative_to(ROOT)), path.read_text())
        for folder in (*PACKAGES, "tests", "benchmarks", "scripts")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.resolve() != here and "results" not in path.relative_to(ROOT).parts
    ]


def test_private_sdk_modules_are_imported_by_the_adapters_only():
    offenders = {}
    for name, source in _project_modules():
        found = _private_sdk_imports(source)
        if found and name not in ADAPTERS:
            offenders[name] = found
    assert offenders == {}
    for adapter in ADAPTERS:  # the check can see a private import
        assert _private_sdk_imports((ROOT / adapter).read_text())


def test_private_sdk_methods_are_overridden_and_called_by_the_adapters_only():
    names = sdk_private_names()
    assert {"_sync_records", "_process_record_message", "_validator", "_tap"} <= names
    offenders = {}
    for name, source in _project_modules():
        found = _uses(source, names)
        if found and name not in ADAPTERS:
            offenders[name] = found
    assert offenders == {}
    for adapter in ADAPTERS:  # the check can see a private use
        assert _uses((ROOT / adapter).read_text(), names)


@pytest.mark.parametrize("adapter", [tap_sdk, target_sdk], ids=["tap", "target"])
def test_the_sdk_functions_behind_the_hooks_are_those_they_were_written_against(adapter):
    changed = {
        name: (recorded, adapter.sdk_source_digest(name))
        for name, recorded in adapter.SDK_SOURCES.items()
        if adapter.sdk_source_digest(name) != recorded
    }
    assert changed == {}, (
        f"singer-sdk changed these functions since {adapter.__name__} was written against "
        "them: re-read each against its hook, then record the new digest (recorded, now)"
    )


@pytest.mark.parametrize("adapter", [tap_sdk, target_sdk], ids=["tap", "target"])
def test_every_private_sdk_function_the_adapter_overrides_has_a_digest(adapter):
    names = sdk_private_names()
    overridden = set()
    for node in ast.walk(ast.parse(inspect.getsource(adapter))):
        if isinstance(node, ast.FunctionDef) and node.name in names:
            overridden.add(node.name)
    recorded = {dotted.rsplit(".", 1)[-1] for dotted in adapter.SDK_SOURCES}
    assert overridden and overridden <= recorded


def test_a_changed_sdk_function_is_seen():
    name = next(iter(tap_sdk.SDK_SOURCES))
    assert tap_sdk.sdk_source_digest(name) == tap_sdk.SDK_SOURCES[name]
    assert (
        tap_sdk.sdk_source_digest("singer_sdk.streams.core.Stream.sync")
        != (tap_sdk.SDK_SOURCES[name])
    )
