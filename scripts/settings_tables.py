"""The README's settings tables, generated from `--about --format=json`.

    .venv/bin/python scripts/settings_tables.py          # rewrite the tables in README.md
    .venv/bin/python scripts/settings_tables.py --check  # exit 1 when README.md is stale

The SDK's own settings (stream maps, flattening, batching, ...) are listed by `--about` too;
the tables keep to the connectors' settings.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ("tap-optouts", "target-optouts")
SDK_SETTINGS = {
    "stream_maps",
    "stream_map_config",
    "faker_config",
    "flattening_enabled",
    "flattening_max_depth",
    "flattening_max_key_length",
    "flattening_separator",
    "batch_config",
    "add_record_metadata",
    "load_method",
    "batch_size_rows",
    "validate_records",
    "activate_version",
    "hard_delete",
}


def about(plugin: str) -> dict[str, Any]:
    executable = Path(sys.executable).parent / plugin
    output = subprocess.run(
        [str(executable), "--about", "--format=json"], capture_output=True, check=True
    ).stdout
    return json.loads(output)


def flatten(properties: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Settings as Meltano names them: nested objects become dotted names."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, spec in properties.items():
        if not prefix and name in SDK_SETTINGS:
            continue
        types = spec.get("type") or []
        types = [types] if isinstance(types, str) else types
        if "object" in types and spec.get("properties"):
            rows += flatten(spec["properties"], f"{prefix}{name}.")
        else:
            rows.append((f"{prefix}{name}", spec))
    return rows


def settings(plugin: str) -> list[tuple[str, dict[str, Any]]]:
    return flatten(about(plugin)["settings"]["properties"])


def _type(spec: dict[str, Any]) -> str:
    types = spec.get("type") or []
    types = [types] if isinstance(types, str) else types
    if {"number", "string"} <= set(types):
        return "number (or a numeric string)"
    kind = next((t for t in types if t != "null"), "any")
    if kind == "array":
        items = spec.get("items", {}).get("type", "any")
        items = [items] if isinstance(items, str) else items
        kind = f"array of {next((t for t in items if t != 'null'), 'any')}"
    if spec.get("format") == "date-time":
        kind = "date-time"
    return kind


def table(plugin: str) -> str:
    lines = ["| setting | type | default | secret | description |", "|---|---|---|---|---|"]
    for name, spec in settings(plugin):
        default = spec.get("default")
        shown = "" if default is None else f"`{json.dumps(default)}`"
        secret = "yes" if spec.get("secret") else ""
        description = (spec.get("description") or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_type(spec)} | {shown} | {secret} | {description} |")
    return "\n".join(lines)


def render(readme: str) -> str:
    for plugin in PLUGINS:
        start, end = f"<!-- settings:{plugin}:start -->", f"<!-- settings:{plugin}:end -->"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no {start} ... {end} block")
        readme = pattern.sub(lambda _m, p=plugin, s=start, e=end: f"{s}\n{table(p)}\n{e}", readme)
    return readme


def main() -> int:
    path = ROOT / "README.md"
    current = path.read_text()
    fresh = render(current)
    if "--check" in sys.argv:
        if fresh != current:
            print("README.md settings tables are stale: run scripts/settings_tables.py")
            return 1
        return 0
    path.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
