"""The receiver's configuration: target-optouts' own config (the destinations, `ledger_url`,
`skip_origin`, `default_phone_region`...) with its `webhooks` object.

From `--config FILE`; or, under `meltano invoke optouts-webhooks`, target-optouts' config as
Meltano resolves it (`meltano invoke --dump=config target-optouts`: the same environment,
`.env` and secrets), so that the two can never disagree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optouts_providers.redact import register_secret

TOKEN = re.compile(r"[A-Za-z0-9_-]{24,}")


class ConfigError(ValueError):
    """The receiver cannot run as configured."""


@dataclass(frozen=True)
class WebhookSettings:
    path_token: str
    slicktext_secret: str | None


def load(path: str | None) -> dict[str, Any]:
    if path:
        try:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--config {path}: {exc}") from None
    elif os.environ.get("MELTANO_PROJECT_ROOT"):
        config = _from_meltano(Path(os.environ["MELTANO_PROJECT_ROOT"]))
    else:
        raise ConfigError("--config FILE is required (target-optouts' config, with webhooks)")
    if not isinstance(config, dict):
        raise ConfigError("the config is not a JSON object")
    return config


def _from_meltano(root: Path) -> dict[str, Any]:
    meltano = os.environ.get("MELTANO_BIN") or shutil.which("meltano")
    if not meltano:
        raise ConfigError(
            "under Meltano, target-optouts' config is read with `meltano invoke --dump=config "
            "target-optouts`, but meltano is not on PATH: put it there, or pass --config FILE"
        )
    done = subprocess.run(
        [meltano, "invoke", "--dump=config", "target-optouts"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ConfigError(f"meltano could not give target-optouts' config: {last[:300]}")
    return json.loads(done.stdout)


def webhook_settings(config: Mapping[str, Any]) -> WebhookSettings:
    """`webhooks.path_token` (required) and `webhooks.slicktext_secret`, registered as
    secrets so that no log line holds them."""
    hooks = config.get("webhooks") or {}
    if not isinstance(hooks, dict):
        raise ConfigError("webhooks must be an object (path_token, slicktext_secret)")
    token = hooks.get("path_token")
    secret = hooks.get("slicktext_secret") or None
    register_secret(token if isinstance(token, str) else None)
    register_secret(secret if isinstance(secret, str) else None)
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        raise ConfigError(
            "webhooks.path_token must be set: 24 or more letters, digits, '-' or '_' "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if secret is not None and not isinstance(secret, str):
        raise ConfigError("webhooks.slicktext_secret must be a string")
    for provider in ("checkmarket", "slicktext", "optizmo"):
        for key, value in (config.get(provider) or {}).items():
            if key.endswith("key") and isinstance(value, str):
                register_secret(value)
    register_secret(config.get("ledger_hash_key"))
    return WebhookSettings(token, secret)
