"""`--about`, meltano.yml, the Hub definitions (hub/) and the README settings tables say the
same thing, and meltano.yml's plugin definitions are complete enough for Meltano Hub (no Hub
look-up is needed or possible)."""

from __future__ import annotations

import functools
import importlib.util
import re
import subprocess
import sys

import pytest
import yaml

from tests.meltano_support import ROOT

spec = importlib.util.spec_from_file_location(
    "settings_tables", ROOT / "scripts/settings_tables.py"
)
settings_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(settings_tables)
# One `--about` process per plugin for the whole module (each costs seconds).
settings_tables.about = functools.cache(settings_tables.about)
hub_spec = importlib.util.spec_from_file_location(
    "hub_definitions", ROOT / "scripts/hub_definitions.py"
)
hub_definitions = importlib.util.module_from_spec(hub_spec)
hub_spec.loader.exec_module(hub_definitions)

PROJECT = yaml.safe_load((ROOT / "meltano.yml").read_text())
PLUGIN_TYPES = ("extractors", "loaders", "mappers", "utilities")
# The Meltano kind of each JSON type (why numbers are `integer`: scripts/hub_definitions.py).
KINDS = hub_definitions.KINDS
SECRET_NAME = re.compile(
    r"(password|sqlalchemy_url|api_key|private_key|master_key|public_key|\.key)$"
)


def _meltano_plugin(name: str) -> dict:
    for kind in PLUGIN_TYPES:
        for plugin in PROJECT["plugins"].get(kind, []):
            if plugin["name"] == name:
                return plugin
    raise AssertionError(f"{name} is not in meltano.yml")


def _all_plugins() -> list[dict]:
    return [p for kind in PLUGIN_TYPES for p in PROJECT["plugins"].get(kind, [])]


def _about_settings(plugin: str) -> dict[str, dict]:
    """Every setting `--about` lists: the connector's (nested ones dotted, as Meltano names
    them) and the SDK's own (stream maps, flattening, batching, ...)."""
    properties = settings_tables.about(plugin)["settings"]["properties"]
    sdk = {name: spec for name, spec in properties.items() if name in settings_tables.SDK_SETTINGS}
    return {**dict(settings_tables.settings(plugin)), **sdk}


def _expected_kind(spec: dict) -> str:
    if spec.get("enum"):
        return "options"
    if spec.get("format") == "date-time":
        return "date_iso8601"
    types = spec.get("type") or []
    types = [types] if isinstance(types, str) else types
    if "string" in types:
        return "string"
    return KINDS[next(t for t in types if t != "null")]


@pytest.mark.parametrize("plugin", settings_tables.PLUGINS)
def test_meltano_yml_declares_every_setting_as_about_does(plugin):
    about = _about_settings(plugin)
    declared = {s["name"]: s for s in _meltano_plugin(plugin)["settings"]}
    assert set(declared) == set(about)
    for name, spec in about.items():
        setting = declared[name]
        assert setting.get("label") and setting.get("description"), name
        assert setting.get("kind") == _expected_kind(spec), name
        assert bool(setting.get("sensitive")) == bool(spec.get("secret")), name
        assert setting.get("value") == spec.get("default"), name
        if spec.get("enum"):
            assert [o["value"] for o in setting["options"]] == spec["enum"], name


@pytest.mark.parametrize("plugin", settings_tables.PLUGINS)
def test_meltano_yml_declares_capabilities_the_plugin_reports(plugin):
    about = settings_tables.about(plugin)
    declared = set(_meltano_plugin(plugin)["capabilities"])
    assert declared == set(about["capabilities"])
    assert {"about", "stream-maps", "schema-flattening"} <= declared
    if plugin.startswith("tap-"):
        assert {"catalog", "discover", "state"} <= declared


@pytest.mark.parametrize("plugin", settings_tables.PLUGINS)
def test_settings_groups_name_each_providers_credentials(plugin):
    """Each credential set is a group: configuring any one provider is a valid config, and
    every provider secret belongs to one."""
    definition = _meltano_plugin(plugin)
    declared = {s["name"] for s in definition["settings"]}
    groups = [set(group) for group in definition["settings_group_validation"]]
    assert all(group <= declared for group in groups)
    secrets = {s["name"] for s in definition["settings"] if s.get("sensitive")}
    # Provider credentials; the ledger's optional hash key and the webhook receiver's secrets
    # (webhooks.*) are no credentials of a provider.
    provider_secrets = {n for n in secrets if "." in n and not n.startswith("webhooks.")}
    assert provider_secrets <= set().union(*groups)
    for provider in ("checkmarket", "slicktext", "optizmo"):
        assert any(all(n.startswith(provider + ".") for n in g) for g in groups), provider


def test_every_plugin_is_defined_in_full_and_pinned():
    """No Hub look-up: namespace, executable and a pinned pip_url (or the project itself);
    every declared setting labelled, described and of a kind."""
    assert re.match(r">=\d", PROJECT["requires_meltano"])
    for plugin in _all_plugins():
        name = plugin["name"]
        assert "variant" not in plugin, name
        if "inherit_from" in plugin:
            _meltano_plugin(plugin["inherit_from"])
            continue
        assert plugin.get("namespace") and plugin.get("executable"), name
        pip_url = plugin["pip_url"]
        if pip_url.startswith("-e ./packages/"):
            # The repository's own: the plugin's distribution and the providers' it needs (the
            # webhook receiver also the target's: its destinations and ledger).
            members = re.findall(r"-e \./packages/([\w-]+)", pip_url)
            assert members[0] == "optouts-providers" and len(members) >= 2, (name, pip_url)
            if len(members) > 2:
                assert members == ["optouts-providers", "target-optouts", name], pip_url
            for member in members[1:]:
                assert (ROOT / "packages" / member / "pyproject.toml").exists(), name
        else:
            assert re.match(r"^[\w.-]+==[\w.]+", pip_url), (name, pip_url)
        for setting in plugin.get("settings", []):
            assert setting.get("label") and setting.get("description"), (name, setting["name"])
            assert setting.get("kind"), (name, setting["name"])
            if SECRET_NAME.search(setting["name"]):
                assert setting.get("sensitive") is True, (name, setting["name"])


def test_start_date_takes_a_relative_date():
    """`kind: date_iso8601` lets Meltano read "90 days ago" (its date parser)."""
    setting = next(
        s for s in _meltano_plugin("tap-optouts")["settings"] if s["name"] == "start_date"
    )
    assert setting["kind"] == "date_iso8601"
    assert "days ago" in setting["placeholder"] + setting["description"]


def test_readme_settings_tables_are_the_about_output():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/settings_tables.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _hub(plugin: str) -> dict:
    return yaml.safe_load((ROOT / "hub" / f"{plugin}.yml").read_text())


def test_hub_definitions_are_generated_from_about_and_meltano_yml():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/hub_definitions.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p.stem for p in (ROOT / "hub").glob("*.yml")} == set(hub_definitions.PLUGINS)


@pytest.mark.parametrize("plugin", settings_tables.PLUGINS)
def test_hub_definition_declares_every_setting_as_about_does(plugin):
    about = _about_settings(plugin)
    hub = _hub(plugin)
    declared = {s["name"]: s for s in hub["settings"]}
    assert set(declared) == set(about)
    for name, spec in about.items():
        setting = declared[name]
        assert setting["label"] and setting["description"], name
        assert setting["kind"] == _expected_kind(spec), name
        assert setting["sensitive"] is bool(spec.get("secret")), name
        assert setting.get("value") == spec.get("default"), name
    assert set(hub["capabilities"]) == set(settings_tables.about(plugin)["capabilities"])
    meltano = _meltano_plugin(plugin)
    assert hub["settings_group_validation"] == meltano["settings_group_validation"]
    for key in ("namespace", "executable", "label", "description"):
        assert hub[key] == meltano[key], key


@pytest.mark.parametrize("plugin", sorted(hub_definitions.PLUGINS))
def test_hub_pip_url_installs_the_plugin_and_the_providers_from_the_repository(plugin):
    """Neither distribution is on PyPI: both come from the repository, each from its folder
    under packages/, whose pyproject.toml names the plugin's executable."""
    hub = _hub(plugin)
    assert {"name", "namespace", "variant", "pip_url", "executable"} <= set(hub)
    urls = hub["pip_url"].split()
    folders = [url.split("#subdirectory=packages/", 1)[1] for url in urls]
    assert all(url.startswith(f"git+{hub_definitions.REPOSITORY}.git#") for url in urls)
    needs = list(hub_definitions.NEEDS.get(plugin, ()))
    assert folders == ["optouts-providers", *needs, hub_definitions.PLUGINS[plugin][1]]
    pyproject = (ROOT / "packages" / folders[-1] / "pyproject.toml").read_text()
    assert f'\n{hub["executable"]} = "' in pyproject
