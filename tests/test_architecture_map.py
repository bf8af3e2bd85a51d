"""docs/ARCHITECTURE.md's layout block names every module of the packages, and nothing that is
not there: a file added, moved or renamed without the map fails here."""

from __future__ import annotations

import re
from collections import Counter

from tests.meltano_support import ROOT

PACKAGES = (
    "optouts_providers",
    "optouts_sandbox",
    "optouts_webhooks",
    "tap_optouts",
    "target_optouts",
)
# A layout line: indentation, a name ending in `/` or `.py`, two or more spaces, what it is.
ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[\w<>./-]+?)(?P<slash>/?)(?:\s{2,}.*)?$")


def layout_block() -> list[str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = text.split("```", 2)[1]
    return [line for line in block.splitlines() if line.strip()]


def mapped_paths() -> set[str]:
    """The module paths the block names, folders expanded from their indentation."""
    paths: set[str] = set()
    stack: list[tuple[int, str]] = []
    for line in layout_block():
        match = ENTRY.match(line)
        if match is None:
            continue
        indent, name = len(match["indent"]), match["name"]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        prefix = "".join(part for _, part in stack)
        if match["slash"]:
            stack.append((indent, f"{name}/"))
        elif name.endswith(".py"):
            paths.add(prefix + name)
    return paths


def package_modules() -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    }


def test_the_map_names_every_module_and_only_modules_that_exist():
    modules = package_modules()
    mapped = set()
    for path in mapped_paths():
        if path.split("/")[0] not in PACKAGES or path.endswith("__init__.py"):
            continue
        if "<provider>" in path:  # one line for every provider's module of that name
            pattern = re.compile(re.escape(path).replace(re.escape("<provider>"), r"\w+"))
            mapped |= {module for module in modules if pattern.fullmatch(module)}
        else:
            mapped.add(path)
    assert sorted(modules - mapped) == [], "modules the map does not name"
    assert sorted(mapped - modules) == [], "names in the map that are not modules"


def test_no_two_modules_share_a_name():
    # One name, one meaning: `client.py` is a provider's API client, never a stream base too.
    names = Counter(path.rsplit("/", 1)[-1] for path in package_modules())
    shared = {
        name: count for name, count in names.items() if count > 1 and name not in ALLOWED_REPEATS
    }
    assert shared == {}


# Names that mean one thing wherever they are: a provider's part in each package (its API
# client, wire format, webhook shapes, stream, emulator), the same concept on the client and
# the emulator side (pre-signed storage, the download activity, collect), a package's base
# class, its singer-sdk adapter, a command's entry point.
ALLOWED_REPEATS = {
    "client.py",
    "wire.py",
    "webhooks.py",
    "checkmarket.py",
    "slicktext.py",
    "optizmo.py",
    "storage.py",
    "activity.py",
    "collect.py",
    "base.py",
    "sdk.py",
    "main.py",
}
