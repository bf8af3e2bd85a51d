"""The Hub definitions (hub/*.yml) as a Meltano user takes them: `meltano add --from-ref` into
a new Meltano project, no Hub and no credentials. Each pip_url is the definition's own, with
the repository's git URL replaced by this checkout's folders (what pip gets from the git URL's
subdirectory); each plugin's venv then holds its distribution and the providers', nothing
else of the project's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.meltano_support import ROOT, free_port, meltano_executable

pytestmark = pytest.mark.timeout(900)

GIT_PREFIX = "git+https://github.com/optouts-connectors/optouts-connectors.git#subdirectory="
# plugin -> (plugin type for `meltano add`, Meltano's folder of that type)
PLUGINS = {
    "tap-optouts": ("extractor", "extractors"),
    "target-optouts": ("loader", "loaders"),
    "optouts-sandbox": ("utility", "utilities"),
    "optouts-webhooks": ("utility", "utilities"),
    "optouts-ledger": ("utility", "utilities"),
}
PACKAGES = {
    "optouts_providers",
    "tap_optouts",
    "target_optouts",
    "optouts_sandbox",
    "optouts_webhooks",
}
IGNORED = shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache")
# What each plugin's venv holds of the project's packages.
HOLDS = {
    "tap-optouts": {"optouts_providers", "tap_optouts"},
    "target-optouts": {"optouts_providers", "target_optouts"},
    "optouts-sandbox": {"optouts_providers", "optouts_sandbox"},
    "optouts-webhooks": {"optouts_providers", "target_optouts", "optouts_webhooks"},
    "optouts-ledger": {"optouts_providers", "target_optouts"},
}


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600):
    return subprocess.run(
        [meltano_executable(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A new Meltano project with every plugin added from its Hub definition."""
    base = tmp_path_factory.mktemp("hub")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MELTANO_", "TAP_OPTOUTS_", "TARGET_OPTOUTS_", "OPTOUTS_"))
        and key != "VIRTUAL_ENV"
    }
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    init = _run(["init", "new-project", "--no-usage-stats"], base, env)
    assert init.returncode == 0, init.stderr[-3000:]
    root = base / "new-project"
    # The folders a clone holds (packages/ and the packages they link to), outside this
    # checkout's uv workspace: pip's view of a git URL's subdirectory.
    checkout = base / "checkout"
    shutil.copytree(ROOT / "packages", checkout / "packages", symlinks=True)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, checkout / package, ignore=IGNORED)
    for plugin, (plugin_type, _folder) in PLUGINS.items():
        text = (ROOT / "hub" / f"{plugin}.yml").read_text()
        assert GIT_PREFIX in text
        local = base / f"{plugin}.yml"
        local.write_text(text.replace(GIT_PREFIX, f"{checkout}/"))
        added = _run(
            ["add", "--plugin-type", plugin_type, plugin, "--from-ref", str(local)], root, env
        )
        assert added.returncode == 0, added.stdout + added.stderr[-3000:]
    return root, env


def _importable(root: Path, plugin: str) -> set[str]:
    """The project's packages the plugin's venv can import (from a neutral folder)."""
    python = root / ".meltano" / PLUGINS[plugin][1] / plugin / "venv" / "bin" / "python"
    script = (
        "import importlib.util, json, sys; "
        "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m)]))"
    )
    result = subprocess.run(
        [str(python), "-c", script, *sorted(PACKAGES)],
        cwd=root.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout))


def test_the_project_declares_each_plugin_as_its_hub_definition(project):
    root, _env = project
    declared = yaml.safe_load((root / "meltano.yml").read_text())["plugins"]
    for plugin, (_type, folder) in PLUGINS.items():
        (entry,) = [p for p in declared[folder] if p["name"] == plugin]
        hub = yaml.safe_load((ROOT / "hub" / f"{plugin}.yml").read_text())
        assert entry["variant"] == hub["variant"]
        assert entry["executable"] == hub["executable"]
        assert entry.get("capabilities") == hub.get("capabilities")
        assert [s["name"] for s in entry.get("settings", [])] == [
            s["name"] for s in hub.get("settings", [])
        ]


@pytest.mark.parametrize("plugin", PLUGINS)
def test_each_plugin_installs_what_it_needs_and_nothing_it_does_not(project, plugin):
    root, _env = project
    assert _importable(root, plugin) == HOLDS[plugin]


def test_select_lists_every_stream_before_any_provider_is_configured(project):
    root, env = project
    result = _run(["select", "tap-optouts", "--list", "--all"], root, env)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    for stream in ("checkmarket_optouts", "slicktext_optouts", "optizmo_optouts"):
        assert f"{stream}." in result.stdout, stream


def test_the_installed_connectors_report_their_distribution(project):
    root, env = project
    for plugin in ("tap-optouts", "target-optouts"):
        result = _run(["invoke", plugin, "--about", "--format=json"], root, env)
        assert result.returncode == 0, result.stderr[-3000:]
        about = json.loads(result.stdout[result.stdout.index("{") :])
        assert about["name"] == plugin
        assert about["version"] == "0.1.0"
        assert "3.11" in about["supported_python_versions"]


def test_the_sandbox_utility_starts_on_the_port_it_is_given(project, tmp_path):
    root, env = project
    port = free_port()
    env = {**env, "OPTOUTS_SANDBOX_PORT": str(port), "OPTOUTS_SANDBOX_DIR": str(tmp_path)}
    started = _run(["invoke", "optouts-sandbox:start"], root, env, timeout=120)
    try:
        assert started.returncode == 0, started.stdout + started.stderr[-3000:]
        inspected = _run(["invoke", "optouts-sandbox:inspect"], root, env, timeout=120)
        assert inspected.returncode == 0, inspected.stderr[-3000:]
        assert "checkmarket" in inspected.stdout.lower()
    finally:
        stopped = _run(["invoke", "optouts-sandbox:stop"], root, env, timeout=120)
    assert stopped.returncode == 0, stopped.stderr[-3000:]


def test_discovery_needs_no_credentials_but_a_sync_does(tmp_path):
    """The schemas are static: `--discover` with an empty config lists every stream; a sync
    with it is one ERROR line and exit 1, with no output."""
    tap = str(Path(sys.executable).parent / "tap-optouts")
    config = tmp_path / "config.json"
    config.write_text("{}")
    discovered = subprocess.run(
        [tap, "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert discovered.returncode == 0, discovered.stderr[-2000:]
    streams = {s["tap_stream_id"] for s in json.loads(discovered.stdout)["streams"]}
    assert {"checkmarket_optouts", "slicktext_optouts", "optizmo_optouts"} <= streams
    synced = subprocess.run(
        [tap, "--config", str(config)], capture_output=True, text=True, timeout=120, check=False
    )
    assert synced.returncode == 1
    assert synced.stdout == ""
    errors = [line for line in synced.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "No provider is configured" in errors[0], synced.stderr
