"""`--about`, meltano.yml and the README settings tables say the same thing."""

from __future__ import annotations

import importlib.util
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


def _meltano_plugin(name: str) -> dict:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    for kind in ("extractors", "loaders"):
        for plugin in project["plugins"].get(kind, []):
            if plugin["name"] == name:
                return plugin
    raise AssertionError(f"{name} is not in meltano.yml")


@pytest.mark.parametrize("plugin", settings_tables.PLUGINS)
def test_meltano_yml_declares_every_setting_as_about_does(plugin):
    about = dict(settings_tables.settings(plugin))
    declared = {s["name"]: s for s in _meltano_plugin(plugin)["settings"]}
    assert set(declared) == set(about)
    for name, spec in about.items():
        setting = declared[name]
        assert setting.get("label") and setting.get("description"), name
        assert setting.get("kind"), name
        assert bool(setting.get("sensitive")) == bool(spec.get("secret")), name
        assert setting.get("value") == spec.get("default"), name


@pytest.mark.parametrize("plugin", settings_tables.PLUGINS)
def test_meltano_yml_declares_capabilities_the_plugin_reports(plugin):
    about = settings_tables.about(plugin)
    declared = set(_meltano_plugin(plugin)["capabilities"])
    assert declared <= set(about["capabilities"]), declared - set(about["capabilities"])


def test_readme_settings_tables_are_the_about_output():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/settings_tables.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
