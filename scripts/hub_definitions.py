"""The Meltano Hub plugin definitions in hub/, generated from `--about` and meltano.yml.

    .venv/bin/python scripts/hub_definitions.py          # rewrite hub/*.yml
    .venv/bin/python scripts/hub_definitions.py --check  # exit 1 when a file is stale

Each file is what `meltano add --from-ref hub/<plugin>.yml` reads (the Hub's format). From
`--about`: every setting's name (nested ones dotted), kind, secret flag, default and
description, and the capabilities. From meltano.yml: the labels, the settings groups and the
utility's commands. The pip_url installs the plugin's distribution and the shared
optouts-providers straight from the repository (neither is on PyPI).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The SDK's own settings (kept in hub/, left out of the README tables) and `--about`: one copy.
from settings_tables import SDK_SETTINGS, about

ROOT = Path(__file__).resolve().parent.parent
HUB = ROOT / "hub"
REPOSITORY = "https://github.com/optouts-connectors/optouts-connectors"
VARIANT = "optouts-connectors"
# plugin name -> (plugin type in meltano.yml, its distribution's folder under packages/).
PLUGINS = {
    "tap-optouts": ("extractors", "tap-optouts"),
    "target-optouts": ("loaders", "target-optouts"),
    "optouts-sandbox": ("utilities", "optouts-sandbox"),
    "optouts-webhooks": ("utilities", "optouts-webhooks"),
    "optouts-ledger": ("utilities", "target-optouts"),  # target-optouts' own second command
}
# The distributions a plugin needs besides the providers' and its own: the webhook receiver
# writes through target-optouts' destinations.
NEEDS = {"optouts-webhooks": ("target-optouts",)}
SHARED = "optouts-providers"
KEYWORDS = ["meltano", "meltano_sdk", "singer", "opt-out", "checkmarket", "slicktext", "optizmo"]
# Meltano 4.4.1 casts a `decimal` setting given as a string (an environment variable, `.env`)
# to a Decimal, which it then cannot write into the plugin's JSON config (TypeError). Number
# settings are therefore `integer`; a setting that takes a number or a numeric string (a
# fractional rate) is `string`, parsed by the connector.
KINDS = {
    "integer": "integer",
    "number": "integer",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
    "string": "string",
}


def pip_url(folder: str, needs: tuple[str, ...] = ()) -> str:
    """The distributions from the repository: the providers', what else the plugin needs, and
    the plugin's own."""
    return " ".join(
        f"git+{REPOSITORY}.git#subdirectory=packages/{name}" for name in (SHARED, *needs, folder)
    )


def flatten(properties: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Settings as Meltano names them: nested objects become dotted names."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, spec in properties.items():
        types = _types(spec)
        if (
            not (prefix == "" and name in SDK_SETTINGS)
            and "object" in types
            and spec.get("properties")
        ):
            rows += flatten(spec["properties"], f"{prefix}{name}.")
        else:
            rows.append((f"{prefix}{name}", spec))
    return rows


def _types(spec: dict[str, Any]) -> list[str]:
    types = spec.get("type") or []
    return [types] if isinstance(types, str) else list(types)


def kind(spec: dict[str, Any]) -> str:
    """The Meltano setting kind of a JSON schema (see KINDS for why numbers are integers)."""
    if spec.get("enum"):
        return "options"
    if spec.get("format") == "date-time":
        return "date_iso8601"
    types = [t for t in _types(spec) if t != "null"]
    if "string" in types:
        return "string"
    return KINDS[types[0]]


def _meltano_definitions() -> dict[str, dict[str, Any]]:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    found = {}
    for plugin, (plugin_type, _folder) in PLUGINS.items():
        for definition in project["plugins"].get(plugin_type, []):
            if definition["name"] == plugin:
                found[plugin] = definition
    return found


def _label(name: str) -> str:
    return name.replace(".", " ").replace("_", " ").capitalize()


def setting(name: str, spec: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "kind": kind(spec),
        "label": labels.get(name) or _label(name),
        "description": spec.get("description") or labels.get(name) or _label(name),
        "sensitive": bool(spec.get("secret")),
    }
    if spec.get("default") is not None:
        out["value"] = spec["default"]
    if spec.get("enum"):
        out["options"] = [{"label": _label(str(v)), "value": v} for v in spec["enum"]]
    return out


def definition(plugin: str, meltano: dict[str, Any]) -> dict[str, Any]:
    plugin_type, folder = PLUGINS[plugin]
    out: dict[str, Any] = {
        "name": plugin,
        "variant": VARIANT,
        "label": meltano["label"],
        "description": meltano["description"],
        "namespace": meltano["namespace"],
        "pip_url": pip_url(folder, NEEDS.get(plugin, ())),
        "executable": meltano["executable"],
        "repo": REPOSITORY,
        "docs": f"{REPOSITORY}#readme",
        "keywords": KEYWORDS,
        "maintenance_status": "active",
    }
    if plugin_type == "utilities":
        if meltano.get("settings"):
            out["settings"] = meltano["settings"]
        out["commands"] = meltano["commands"]
        return out
    reported = about(plugin)
    labels = {s["name"]: s.get("label", "") for s in meltano.get("settings", [])}
    out["capabilities"] = sorted(reported["capabilities"])
    out["settings_group_validation"] = meltano["settings_group_validation"]
    out["settings"] = [
        setting(name, spec, labels) for name, spec in flatten(reported["settings"]["properties"])
    ]
    return out


def render(plugin: str, meltano: dict[str, Any]) -> str:
    header = (
        f"# Meltano Hub definition of {plugin}: meltano add --from-ref <this file>\n"
        "# Generated by scripts/hub_definitions.py from --about and meltano.yml; do not edit.\n"
    )
    body = yaml.safe_dump(
        definition(plugin, meltano), sort_keys=False, width=100, allow_unicode=True
    )
    return header + body


def main() -> int:
    definitions = _meltano_definitions()
    stale = []
    for plugin in PLUGINS:
        path = HUB / f"{plugin}.yml"
        fresh = render(plugin, definitions[plugin])
        if "--check" in sys.argv:
            if not path.exists() or path.read_text() != fresh:
                stale.append(path.name)
            continue
        HUB.mkdir(exist_ok=True)
        path.write_text(fresh)
    if stale:
        print(f"hub/ is stale ({', '.join(stale)}): run scripts/hub_definitions.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
