"""Meltano conventions the connectors follow, each a real process: the SDK's per-request
`http_request_duration` metric from the shared HTTP layer (tap and target), JSON logs without
internal markers (secrets still masked), the progress interval as a setting, fractional rates
through Meltano, one variable for the sandbox's port, and a `.env.example` safe to copy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from optouts_sandbox import credentials as C
from tests.meltano_support import ROOT, free_port, meltano_executable
from tests.sandbox_support import run_cli, running_sandbox, slicktext_v2_settings, tap_config
from tests.target_support import run_cli as run_target_cli
from tests.target_support import target_config

pytestmark = pytest.mark.timeout(300)

METRIC = re.compile(r"METRIC: (\{.*\})\s*$")
PROGRESS_TICK = re.compile(r"tap-optouts progress: \S+ records=\d+")
# A logging config giving every record to the SDK's JSON formatter (what a structured-logging
# setup, such as Meltano's, does).
JSON_LOGGING = textwrap.dedent(
    """\
    version: 1
    disable_existing_loggers: false
    formatters:
      json:
        (): singer_sdk.logging.StructuredFormatter
    handlers:
      stderr:
        class: logging.StreamHandler
        formatter: json
        stream: ext://sys.stderr
    root:
      level: INFO
      handlers: [stderr]
    """
)


def _request_metrics(stderr: str) -> list[dict]:
    points = [json.loads(m.group(1)) for line in stderr.splitlines() if (m := METRIC.search(line))]
    return [p for p in points if p["metric"] == "http_request_duration"]


def _summary(stderr: str, prefix: str) -> dict:
    found = re.findall(rf"{prefix} summary json: (\{{.*\}})\s*$", stderr, re.M)
    assert found, stderr[-3000:]
    return json.loads(found[-1])


def test_every_tap_request_is_one_http_request_duration_metric(tmp_path):
    with running_sandbox() as server:
        config = tap_config(server, providers=("checkmarket", "slicktext"))
        config["checkmarket"]["page_size"] = 50  # several pages: several requests
        run = run_cli("tap-optouts", config, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    points = _request_metrics(run.stderr)
    summary = _summary(run.stderr, "tap-optouts")
    for stream, provider_points in (
        (
            "checkmarket_optouts",
            [p for p in points if "checkmarket" in p["tags"]["provider"].lower()],
        ),
        ("slicktext_optouts", [p for p in points if "slicktext" in p["tags"]["provider"].lower()]),
    ):
        assert len(provider_points) == summary["streams"][stream]["requests"] > 0, stream
    assert len(points) == sum(s.get("requests", 0) for s in summary["streams"].values())
    for point in points:
        assert point["type"] == "timer" and point["value"] >= 0
        tags = point["tags"]
        assert tags["method"] == "GET" and tags["endpoint"].startswith("/")
        assert tags["http_status_code"] == 200 and tags["status"] == "succeeded"
        assert "?" not in tags["endpoint"]  # no query string: no key in a metric


def test_every_target_request_is_one_http_request_duration_metric(tmp_path):
    with running_sandbox() as server:
        tap = run_cli("tap-optouts", tap_config(server, providers=("checkmarket",)), tmp_path)
        assert tap.returncode == 0, tap.stderr[-3000:]
        run = run_target_cli(target_config(server, ("optizmo",)), tap.messages, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    points = _request_metrics(run.stderr)
    assert points
    assert all("optizmo" in p["tags"]["provider"].lower() for p in points)
    assert all(isinstance(p["tags"]["http_status_code"], int) for p in points)
    assert {p["tags"]["method"] for p in points} <= {"GET", "POST", "PUT"}


def test_json_logs_carry_no_internal_marker_and_metrics_keep_their_point(tmp_path):
    log_config = tmp_path / "logging.yml"
    log_config.write_text(JSON_LOGGING)
    with running_sandbox() as server:
        run = run_cli(
            "tap-optouts",
            tap_config(server, providers=("slicktext",)),
            tmp_path,
            env={"SINGER_SDK_LOG_CONFIG": str(log_config)},
        )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert len(lines) > 5
    assert "_optouts_redacted" not in run.stderr
    metrics = [
        line["metric_info"]
        for line in lines
        if line.get("message") == "METRIC"
        and line["metric_info"]["metric"] == "http_request_duration"
    ]
    assert metrics and all(m["tags"]["http_status_code"] == 200 for m in metrics)
    assert C.SLICKTEXT_PRIVATE_KEY not in run.stderr


def test_json_logs_still_mask_secrets(tmp_path):
    """A secret in a log message, formatted by the SDK's JSON formatter: masked, and the
    record's extra fields hold nothing of the masking."""
    script = textwrap.dedent(
        """\
        import io, logging
        from singer_sdk.logging import StructuredFormatter
        from optouts_providers.redact import install_log_redaction, register_secret
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(StructuredFormatter())
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        install_log_redaction()
        register_secret("sk-live-0123456789")
        logging.getLogger("optouts.test").info("key %s in a message", "sk-live-0123456789")
        print(stream.getvalue(), end="")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    (line,) = result.stdout.splitlines()
    logged = json.loads(line)
    assert logged["message"] == "key *** in a message"
    assert logged["extra"] == {}
    assert "sk-live" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("setting", "env", "ticks"),
    [(0, None, True), (3600, "0", False), (None, "0", True)],
    ids=["setting-0", "setting-wins-over-env", "env-without-setting"],
)
def test_progress_interval_is_a_setting(tmp_path, setting, env, ticks):
    """progress_interval_seconds sets the pace (0: a line at every 1,024 records); with no
    setting, OPTOUTS_PROGRESS_SECONDS does."""
    with running_sandbox(size=3000) as server:
        config = tap_config(server, providers=("checkmarket",))
        if setting is not None:
            config["progress_interval_seconds"] = setting
        # Unset: an empty value is the default (30 s), as if the variable were not there.
        run = run_cli("tap-optouts", config, tmp_path, env={"OPTOUTS_PROGRESS_SECONDS": env or ""})
    assert run.returncode == 0, run.stderr[-3000:]
    assert bool(PROGRESS_TICK.search(run.stderr)) is ticks


@pytest.mark.parametrize("rate", [2.5, "2.5", "8"])
def test_slicktext_rate_takes_fractions_as_numbers_or_strings(tmp_path, rate):
    with running_sandbox() as server:
        config = tap_config(server, providers=())
        config["slicktext"] = {**slicktext_v2_settings(server), "requests_per_second": rate}
        run = run_cli("tap-optouts", config, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.records("slicktext_optouts")


@pytest.mark.parametrize("rate", ["abc", "0", "-1", 0])
def test_slicktext_rate_that_is_not_a_positive_number_is_a_config_error(tmp_path, rate):
    with running_sandbox() as server:
        config = tap_config(server, providers=())
        config["slicktext"] = {**slicktext_v2_settings(server), "requests_per_second": rate}
        run = run_cli("tap-optouts", config, tmp_path)
    assert run.returncode != 0
    assert "requests_per_second" in run.stderr
    assert not run.records()


def _meltano_project(tmp_path, dotenv: str | None = None):
    """meltano.yml alone in a new folder (config print needs no plugin installed)."""
    shutil.copy2(ROOT / "meltano.yml", tmp_path / "meltano.yml")
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MELTANO_", "TAP_OPTOUTS_", "TARGET_OPTOUTS_", "OPTOUTS_"))
    }
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env["MELTANO_DATABASE_URI"] = f"sqlite:///{tmp_path / 'meltano.db'}"
    return env


def _config(tmp_path, env, plugin: str) -> dict:
    result = subprocess.run(
        [meltano_executable(), "--environment=sandbox", "config", "print", plugin],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{") :])


def _base_urls(config: dict) -> list[str]:
    return [
        value
        for provider in ("checkmarket", "slicktext", "optizmo")
        for key, value in config[provider].items()
        if key.endswith("base_url")
    ]


def test_one_variable_moves_the_sandbox_port_of_both_connectors(tmp_path):
    env = _meltano_project(tmp_path, dotenv="OPTOUTS_SANDBOX_PORT=8765\n")
    for plugin, count in (("tap-optouts", 3), ("target-optouts", 4)):
        default = _base_urls(_config(tmp_path, env, plugin))
        assert len(default) == count and all(":8765/" in url for url in default), default
    port = str(free_port())
    for plugin in ("tap-optouts", "target-optouts"):
        moved = _base_urls(_config(tmp_path, {**env, "OPTOUTS_SANDBOX_PORT": port}, plugin))
        assert all(url.startswith(f"http://127.0.0.1:{port}/") for url in moved), moved


def test_a_copied_env_example_keeps_the_sandbox_environment_as_it_was(tmp_path):
    """Every line of .env.example that sets something sets the sandbox's default port; the
    credentials are commented out, so none overrides the sandbox environment's keys."""
    text = (ROOT / ".env.example").read_text()
    active = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert active == ["OPTOUTS_SANDBOX_PORT=8765"]
    before = _config(tmp_path, _meltano_project(tmp_path), "tap-optouts")
    after = _config(tmp_path, _meltano_project(tmp_path, dotenv=text), "tap-optouts")
    assert after["checkmarket"]["master_key"] == before["checkmarket"]["master_key"]
    assert after["checkmarket"]["master_key"]  # the sandbox's, not ''
    assert after["slicktext"] == {**before["slicktext"], "base_url": after["slicktext"]["base_url"]}


def test_fractional_rate_passes_through_meltano(tmp_path):
    """`kind: string`: a fraction set by an environment variable reaches the config as the
    string the connector parses (a `decimal` would be a Decimal Meltano cannot write)."""
    env = _meltano_project(tmp_path, dotenv="OPTOUTS_SANDBOX_PORT=8765\n")
    env["TAP_OPTOUTS_SLICKTEXT_REQUESTS_PER_SECOND"] = "2.5"
    assert _config(tmp_path, env, "tap-optouts")["slicktext"]["requests_per_second"] == "2.5"
