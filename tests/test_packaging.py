"""The distributions under packages/ as an index would get them: each built (sdist, then the
wheel from that sdist, as `uv build` does) with its metadata, its one package and nothing of
the working tree's local state; the lockfile matches the pyproject files and is what the
project's environment holds."""

from __future__ import annotations

import ast
import email
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.meltano_support import ROOT

pytestmark = pytest.mark.timeout(300)

# distribution -> its top-level package
DISTRIBUTIONS = {
    "optouts-providers": "optouts_providers",
    "tap-optouts": "tap_optouts",
    "target-optouts": "target_optouts",
    "optouts-sandbox": "optouts_sandbox",
    "optouts-webhooks": "optouts_webhooks",
}
OWN = set(DISTRIBUTIONS) | {"optouts-connectors-dev"}
# What each distribution must not pull: the tap neither the target's nor the sandbox's.
NOT_REQUIRED = {
    "tap-optouts": {"target-optouts", "optouts-sandbox", "psycopg", "email-validator"},
    "target-optouts": {"tap-optouts", "optouts-sandbox"},
    "optouts-sandbox": {"tap-optouts", "target-optouts", "psycopg"},
    "optouts-webhooks": {"tap-optouts", "optouts-sandbox"},
    "optouts-providers": {"tap-optouts", "target-optouts", "optouts-sandbox", "backoff"},
}


def _uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local/bin/uv")
    if not Path(found).exists():
        pytest.fail("uv is not installed: run `bash scripts/setup.sh`")
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Every distribution built once, (sdist, wheel), from a copy of the sources holding the
    local state a working tree collects inside a package (with no .gitignore to hide it)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "uv.lock", "LICENSE", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "packages", src / "packages", symlinks=True)
    for package in DISTRIBUTIONS.values():
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
        (src / package / "__pycache__").mkdir()
        (src / package / "__pycache__" / "client.cpython-311.pyc").write_bytes(b"")
        (src / package / ".hypothesis" / "examples").mkdir(parents=True)
        (src / package / ".hypothesis" / "examples" / "1a2b").write_bytes(b"")
        (src / package / ".pytest_cache").mkdir()
    out = tmp_path_factory.mktemp("dist")
    for name in DISTRIBUTIONS:
        result = subprocess.run(
            [_uv(), "build", "--quiet", "--out-dir", str(out), str(src / "packages" / name)],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    found = {}
    for name in DISTRIBUTIONS:
        stem = name.replace("-", "_")
        (sdist,) = out.glob(f"{stem}-*.tar.gz")
        (wheel,) = out.glob(f"{stem}-*.whl")
        found[name] = (sdist, wheel)
    return found


def _wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def _requirement_names(metadata: email.message.Message) -> set[str]:
    names = set()
    for requirement in metadata.get_all("Requires-Dist") or []:
        head = requirement.split(";")[0]
        for stop in "[<>=~! (":
            head = head.split(stop)[0]
        names.add(head.strip().lower())
    return names


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_metadata_names_the_license_python_versions_urls_and_keywords(built, name):
    metadata = _wheel_metadata(built[name][1])
    assert metadata["Name"] == name
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Requires-Python"] == ">=3.11"
    classifiers = set(metadata.get_all("Classifier"))
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert {"meltano", "singer", "meltano_sdk"} <= set(metadata["Keywords"].split(","))
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL"))
    assert {"Homepage", "Repository", "Issues"} <= set(urls)
    assert metadata.get_payload().startswith(f"# {name}")


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_each_distribution_ships_its_package_alone_and_no_local_state(built, name):
    sdist, wheel = built[name]
    package = DISTRIBUTIONS[name]
    with tarfile.open(sdist) as archive:
        members = [m.split("/", 1)[1] for m in archive.getnames() if "/" in m]
    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
    for listing in (members, files):
        assert not [m for m in listing if "__pycache__" in m or m.endswith(".pyc")]
        assert not [m for m in listing if ".hypothesis" in m or ".pytest_cache" in m]
        assert not [m for m in listing if m.startswith("tests/")]
    top = {m.split("/", 1)[0] for m in members}
    assert top == {package, "pyproject.toml", "README.md", "LICENSE", "PKG-INFO"}, top
    wheel_top = {f.split("/", 1)[0] for f in files}
    assert wheel_top == {package, f"{name.replace('-', '_')}-0.1.0.dist-info"}, wheel_top
    assert f"{package}/__init__.py" in files
    assert any(f.endswith("/licenses/LICENSE") for f in files)
    if name == "tap-optouts":
        assert "tap_optouts/schemas/checkmarket_optouts.json" in files


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_each_distribution_requires_what_it_imports_and_nothing_of_the_others(built, name):
    required = _requirement_names(_wheel_metadata(built[name][1]))
    assert not required & NOT_REQUIRED[name], required & NOT_REQUIRED[name]
    if name != "optouts-providers":
        assert "optouts-providers" in required
    if name == "optouts-providers":
        assert {"python-backoff", "tzdata", "singer-sdk", "requests"} <= required
    if name == "target-optouts":
        assert {"email-validator", "psycopg", "fastjsonschema", "phonenumbers"} <= required


def test_each_distribution_carries_the_repository_license():
    # A copy, not a link: an sdist may not hold a link out of its own folder.
    for name in DISTRIBUTIONS:
        license_file = ROOT / "packages" / name / "LICENSE"
        assert not license_file.is_symlink()
        assert license_file.read_bytes() == (ROOT / "LICENSE").read_bytes(), name
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]


def test_versions_move_together():
    versions = {
        name: tomllib.loads((ROOT / "packages" / name / "pyproject.toml").read_text())["project"][
            "version"
        ]
        for name in DISTRIBUTIONS
    }
    assert len(set(versions.values())) == 1, versions
    for name in DISTRIBUTIONS:
        text = (ROOT / "packages" / name / "pyproject.toml").read_text()
        if name != "optouts-providers":
            assert f'"optouts-providers=={versions[name]}"' in text, name


def test_the_lockfile_matches_the_pyproject_files():
    result = subprocess.run(
        [_uv(), "lock", "--check", "--offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_environment_holds_what_the_lockfile_pins():
    """scripts/setup.sh installs with `uv sync --locked`: every locked package the project's
    interpreter can install is there, at the locked version, and no `backoff` beside
    python-backoff (it would overwrite the same module)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    pinned = {p["name"]: p["version"] for p in lock["package"] if p["name"] not in OWN}
    installed = {
        d.metadata["Name"].lower().replace("_", "-"): d.version
        for d in importlib.metadata.distributions()
    }
    for name in ("singer-sdk", "requests", "python-backoff", "tzdata", "psycopg", "pytest"):
        assert installed.get(name) == pinned[name], name
    wrong = {
        n: (v, installed[n]) for n, v in pinned.items() if n in installed and installed[n] != v
    }
    assert not wrong
    assert "backoff" not in installed
    setup = (ROOT / "scripts/setup.sh").read_text()
    assert "uv sync --quiet --locked" in setup and "uv pip install" not in setup.split("meltano")[0]


def test_time_zones_come_with_the_package_not_the_system(tmp_path):
    """America/Los_Angeles (SlickText's clock) resolves with no system zoneinfo (tzdata)."""
    tap = Path(sys.executable).parent / "tap-optouts"
    result = subprocess.run(
        [str(tap), "--about", "--format=json"],
        env={**os.environ, "PYTHONTZPATH": str(tmp_path / "no-zoneinfo")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"name": "tap-optouts"' in result.stdout


def test_each_package_imports_only_itself_and_the_providers():
    """What a distribution does not require it must not import (lazily either): the tap,
    the target and the sandbox each see only their own package and optouts_providers."""
    allowed = {
        "optouts_providers": {"optouts_providers"},
        "tap_optouts": {"tap_optouts", "optouts_providers"},
        "target_optouts": {"target_optouts", "optouts_providers"},
        "optouts_sandbox": {"optouts_sandbox", "optouts_providers"},
    }
    found = {}
    for package, permitted in allowed.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in allowed and top not in permitted:
                        found.setdefault(str(path.relative_to(ROOT)), []).append(name)
    assert not found
