"""One factory per provider: each provider package says its default hosts, whether settings
configure it and which client they make, and the tap, the target and the webhook receiver ask
it rather than deciding for themselves."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from optouts_providers import checkmarket, optizmo, slicktext
from optouts_providers.http import http_options
from tap_optouts.streams import STREAM_TYPES
from target_optouts.destinations import NoDestinationError, build_destinations
from target_optouts.rejects import Rejects

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"checkmarket": checkmarket, "slicktext": slicktext, "optizmo": optizmo}
DEFAULT_URLS = {
    "checkmarket": [checkmarket.DEFAULT_BASE_URL],
    "slicktext": [slicktext.LEGACY_DEFAULT_BASE_URL, slicktext.V2_DEFAULT_BASE_URL],
    "optizmo": [optizmo.DEFAULT_BASE_URL, optizmo.DEFAULT_COLLECT_BASE_URL],
}
# Optizmo: the tap needs lists to read and the target a list to write to, beside the key.
LISTS = {"list_ids": ["0123456789abcdef"], "email_list_id": "0123456789abcdef"}
SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("checkmarket", {}),
    ("checkmarket", {"base_url": "https://api-us.agileresearch.medallia.com"}),
    ("checkmarket", {"master_key": "mk-factory-test"}),
    ("checkmarket", {"key": "k-factory-test"}),
    ("checkmarket", {"master_key": "mk-factory-test", "key": "k-factory-test"}),
    ("slicktext", {}),
    ("slicktext", {"optout_action": "OPTOUT"}),
    ("slicktext", {"public_key": "pub_factory_test"}),
    ("slicktext", {"private_key": "priv-factory-test"}),
    ("slicktext", {"public_key": "pub_factory_test", "private_key": "priv-factory-test"}),
    ("slicktext", {"api_key": "key-factory-test"}),
    ("optizmo", {}),
    ("optizmo", LISTS),
    ("optizmo", {"api_key": "optizmo_api_factory_test", **LISTS}),
    ("optizmo", {"api_key": "optizmo_api_factory_test", "list_ids": ["a"], "sms_list_id": "b"}),
]


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_each_provider_package_exports_its_hosts_and_its_factory(name: str):
    package: ModuleType = PACKAGES[name]
    assert callable(package.configured) and callable(package.client_from_config)
    assert all(url.startswith("https://") for url in DEFAULT_URLS[name])


def _tap_offers(name: str, settings: dict[str, Any]) -> bool:
    streams = [cls for cls in STREAM_TYPES if cls.provider_key == name]
    assert streams
    return any(cls.configured({name: settings}) for cls in streams)


def _target_builds(name: str, settings: dict[str, Any]) -> bool:
    """Whether the target builds this provider's destination (a half-configured provider is
    refused: not built either)."""
    config = {name: settings, "ledger_url": ""}
    try:
        destinations = build_destinations(config, Rejects(None))
    except NoDestinationError:
        return False
    except ValueError:
        return False
    try:
        return [d.name for d in destinations.items] == [name]
    finally:
        destinations.close()


@pytest.mark.parametrize(("name", "settings"), SETTINGS)
def test_configured_is_what_the_tap_and_the_target_act_on(name: str, settings: dict[str, Any]):
    configured = PACKAGES[name].configured(settings)
    assert _tap_offers(name, settings) == configured
    assert _target_builds(name, settings) == configured


CM_KEYS = {"master_key": "mk-factory-test", "key": "k-factory-test"}
US = "https://api-us.agileresearch.medallia.com"


@pytest.mark.parametrize(
    ("name", "settings", "hosts"),
    [
        ("checkmarket", CM_KEYS, [checkmarket.DEFAULT_BASE_URL]),
        ("checkmarket", {**CM_KEYS, "base_url": US}, [US]),
        (
            "slicktext",
            {"public_key": "pub_f", "private_key": "p"},
            [slicktext.LEGACY_DEFAULT_BASE_URL],
        ),
        ("slicktext", {"api_key": "key-factory-test"}, [slicktext.V2_DEFAULT_BASE_URL]),
        ("optizmo", {"api_key": "k"}, [optizmo.DEFAULT_BASE_URL, optizmo.DEFAULT_COLLECT_BASE_URL]),
    ],
)
def test_the_factory_builds_the_client_on_its_hosts(
    name: str, settings: dict[str, Any], hosts: list[str]
):
    client = PACKAGES[name].client_from_config(settings, http_options({}))
    try:
        optizmo_hosts = getattr(client, "hosts", None)
        sessions = [optizmo_hosts.api, optizmo_hosts.collect] if optizmo_hosts else [client.session]
        assert [session.base_url for session in sessions] == [host + "/" for host in hosts]
    finally:
        client.close()


def _modules(*packages: str) -> list[Path]:
    return [path for package in packages for path in sorted((ROOT / package).rglob("*.py"))]


def test_no_module_outside_the_providers_writes_a_default_provider_url():
    urls = [url for group in DEFAULT_URLS.values() for url in group]
    found = []
    for path in _modules("tap_optouts", "target_optouts", "optouts_webhooks", "optouts_sandbox"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno}" for url in urls if url in node.value
                ]
    assert found == []


def test_the_target_and_the_receiver_never_import_the_tap():
    found = []
    for path in _modules("target_optouts", "optouts_webhooks"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name == "tap_optouts" or name.startswith("tap_optouts.") for name in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_the_receiver_calls_providers_only_through_their_clients():
    """No raw HTTP in the receiver: a provider call there would skip the client's auth,
    retries and secret redaction."""
    found = []
    for path in _modules("optouts_webhooks"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Name) and node.id == "requests":
                names = ["requests"]
            else:
                continue
            if any(name in ("requests", "httpx", "urllib.request") for name in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
