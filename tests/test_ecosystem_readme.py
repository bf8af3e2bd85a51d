"""The README's commands name things that exist, and it covers what meltano.yml and the sandbox
offer. (Running every command from a fresh copy is `scripts/readme_check.py`, run by .ci/run.)"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shlex
import sys

import yaml

from optouts_sandbox.core import Switches
from tests.meltano_support import ROOT

spec = importlib.util.spec_from_file_location("readme_check", ROOT / "scripts/readme_check.py")
readme_check = importlib.util.module_from_spec(spec)
sys.modules["readme_check"] = readme_check  # its dataclass looks its module up
spec.loader.exec_module(readme_check)

README = (ROOT / "README.md").read_text()
PROJECT = yaml.safe_load((ROOT / "meltano.yml").read_text())
PLUGINS = {
    plugin["name"]: kind for kind, plugins in PROJECT["plugins"].items() for plugin in plugins
}
MAPPINGS = {
    mapping["name"]
    for mapper in PROJECT["plugins"].get("mappers", [])
    for mapping in mapper.get("mappings", [])
}
JOBS = {job["name"] for job in PROJECT["jobs"]}
SCHEDULES = {schedule["name"] for schedule in PROJECT["schedules"]}
ENTRY_POINTS = {
    "tap-optouts",
    "target-optouts",
    "optouts-sandbox",
    "optouts-ledger",
    "optouts-webhooks",
}


def _commands() -> list[list[str]]:
    out = []
    for block in readme_check.blocks(README):
        for line in block.body.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                for part in re.split(r"\s*(?:\||>|&&)\s*", line):
                    if part and not part.startswith(("0 ", "tail")):
                        out.append(shlex.split(part))
    return out


def test_every_shell_block_is_checked():
    """Only ```sh fences (which readme_check runs, or skips with a reason) hold commands."""
    fences = re.findall(r"^```(\w*)$", README, re.M)
    openings = fences[::2]
    assert set(openings) <= {"sh", ""}, openings
    assert len(readme_check.blocks(README)) == openings.count("sh")
    for block in readme_check.blocks(README):
        assert block.skip is None or len(block.skip) > 10, block.line


def test_meltano_commands_name_what_meltano_yml_defines():
    for words in _commands():
        if not words or words[0] != "meltano":
            continue
        args = [w for w in words[1:] if not w.startswith("-")]
        if args[:1] == ["run"]:
            for name in args[1:]:
                assert name in JOBS | MAPPINGS or name.split(":")[0] in PLUGINS, name
        elif args[:2] == ["schedule", "run"]:
            assert args[2] in SCHEDULES, args
        elif args[:1] in (["el"], ["elt"]):
            assert PLUGINS[args[1]] == "extractors" and PLUGINS[args[2]] == "loaders", args
        elif args[:2] in (["config", "test"], ["config", "list"], ["config", "print"]):
            assert args[2] in PLUGINS, args


def test_scripts_and_executables_exist():
    for words in _commands():
        if words[:1] == ["bash"]:
            assert (ROOT / words[1]).is_file(), words
        elif words and words[0].startswith(".venv/bin/"):
            assert words[0].removeprefix(".venv/bin/") in ENTRY_POINTS, words


def test_readme_names_every_job_schedule_plugin_and_sandbox_switch():
    for name in JOBS | SCHEDULES | MAPPINGS | set(PLUGINS):
        assert f"`{name}`" in README, name
    for switch in dataclasses.fields(Switches):
        assert f"`{switch.name}`" in README, switch.name
