"""singer-sdk's standard tap tests on the sandbox, plus the checks those tests leave hollow."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from optouts_sandbox.server import SandboxHTTPServer
from tap_optouts.tap import TapOptouts
from tests.sandbox_support import PendingServer, repoint, run_cli, running_sandbox, tap_config

# The standard suite takes its config when the class is built: it is built for a pending
# sandbox, which `server` starts for this module and points the config at.
_CONFIG = tap_config(PendingServer())


@pytest.fixture(scope="module", autouse=True)
def server() -> Iterator[SandboxHTTPServer]:
    with running_sandbox(size=300) as running:
        repoint(_CONFIG, running.url)
        yield running


def _every_stream_selected(config: dict) -> dict:
    """The discovered catalog with every stream selected: the suite checks each stream's
    records against its selected schema, and optizmo_download_activity is not selected by
    default (its schema would be empty)."""
    catalog = TapOptouts(config=config, validate_config=False).catalog_dict
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if not item["breadcrumb"]:
                item["metadata"]["selected"] = True
    return catalog


TestTapOptouts = get_tap_test_class(
    tap_class=TapOptouts,
    config=_CONFIG,
    suite_config=SuiteConfig(max_records_limit=500),
    catalog=_every_stream_selected(_CONFIG),
)

PRIMARY_KEYS = {
    "checkmarket_optouts": ("ContactId", "SurveyId"),
    "slicktext_optouts": ("id",),
    "optizmo_optouts": ("optout_list_id", "hashed"),
}


def test_full_sync_primary_keys_unique_and_state_per_partition(server, tmp_path):
    config = tap_config(server, checkmarket={"survey_ids": [1001, 1002]})
    run = run_cli("tap-optouts", config, tmp_path)
    assert run.returncode == 0, run.stderr
    for stream, keys in PRIMARY_KEYS.items():
        records = run.records(stream)
        assert records, f"{stream} sent no records"
        counts = Counter(tuple(r[k] for k in keys) for r in records)
        duplicates = {k: n for k, n in counts.items() if n > 1}
        assert not duplicates, f"{stream}: duplicate primary keys {list(duplicates)[:5]}"
    bookmarks = run.last_state["bookmarks"]
    cm_partitions = bookmarks["checkmarket_optouts"]["partitions"]
    assert sorted(p["context"]["SurveyId"] for p in cm_partitions) == [1001, 1002]
    assert all(p.get("replication_key_value") for p in cm_partitions)
    oz_partitions = bookmarks["optizmo_optouts"]["partitions"]
    assert len(oz_partitions) == len(config["optizmo"]["list_ids"])
    assert all(p.get("replication_key_value") for p in oz_partitions)
    assert bookmarks["slicktext_optouts"].get("replication_key_value")


def test_bookmark_is_the_largest_value_seen_and_not_past_sync_start(server, tmp_path):
    run = run_cli("tap-optouts", tap_config(server, providers=("slicktext",)), tmp_path)
    assert run.returncode == 0, run.stderr
    values = [r["optOutDate"] for r in run.records("slicktext_optouts")]
    bookmark = run.last_state["bookmarks"]["slicktext_optouts"]["replication_key_value"]
    assert bookmark == max(values)


def test_no_provider_configured_is_a_clear_error(tmp_path):
    run = run_cli("tap-optouts", {"start_date": "2025-01-01T00:00:00Z"}, tmp_path)
    assert run.returncode != 0
    assert "No provider is configured" in run.stderr


def test_plain_http_to_a_remote_host_is_refused(server, tmp_path):
    config = tap_config(
        server, providers=("checkmarket",), checkmarket={"base_url": "http://example.com"}
    )
    run = run_cli("tap-optouts", config, tmp_path)
    assert run.returncode != 0
    assert "only https" in run.stderr
