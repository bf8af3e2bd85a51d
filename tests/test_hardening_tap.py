"""The tap's failure modes that lost opt-outs quietly, stopped a sync for good or never ended:
empty windows, rows without a date, broken state, paging loops, both SlickText key sets,
settings out of range, and the reason of a failure logged at ERROR."""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.logging import StructuredFormatter

from optouts_providers.checkmarket.client import CheckMarketClient
from optouts_providers.http import ProviderError
from optouts_providers.pageguard import PagingLoopError
from optouts_providers.redact import register_secret
from optouts_providers.slicktext import BOTH_APIS_MESSAGE
from optouts_providers.slicktext.client import SlickTextLegacyClient, SlickTextV2Client
from optouts_sandbox import credentials as C
from tap_optouts.startup import redacted_exception
from tap_optouts.tap import TapOptouts
from target_optouts.destinations import build_destinations
from target_optouts.rejects import Rejects
from tests.hardening_fakes import checkmarket_page, checkmarket_row, fake_server
from tests.sandbox_support import (
    TAP_BIN,
    TARGET_BIN,
    control,
    run_cli,
    slicktext_v2_settings,
    tap_config,
)

START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 1, tzinfo=UTC)
# A paging loop must end well before this (seconds).
LOOP_TIMEOUT = 20


def future(days: int = 2) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def provider_requests(stats: dict[str, int]) -> dict[str, int]:
    return {key: n for key, n in stats.items() if not key.startswith("_")}


# -- empty windows ----------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["bookmark", "start_date"])
def test_a_window_in_the_future_is_nothing_to_do_for_every_provider(
    sandbox: Any, tmp_path: Path, where: str
) -> None:
    at = future()
    config = tap_config(sandbox)
    state = None
    if where == "start_date":
        config["start_date"] = at
    else:
        bookmark = {"replication_key_value": at}
        state = {
            "bookmarks": {
                "checkmarket_optouts": {"replication_key": "DateOptOut", **bookmark},
                "slicktext_optouts": {"replication_key": "optOutDate", **bookmark},
                "optizmo_optouts": {
                    "partitions": [
                        {"context": {"optout_list_id": list_id}, "replication_key": "timestamp"}
                        | bookmark
                        for list_id in (C.OPTIZMO_EMAIL_LIST_ID, C.OPTIZMO_SMS_LIST_ID)
                    ]
                },
            }
        }
    before = provider_requests(control(sandbox, "stats"))
    run = run_cli("tap-optouts", config, tmp_path, state=state, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.records() == []
    assert provider_requests(control(sandbox, "stats")) == before  # not one request
    warnings = [line for line in run.stderr.splitlines() if "nothing to read" in line]
    assert any("checkmarket_optouts" in line for line in warnings), run.stderr[-2000:]
    assert any("slicktext_optouts" in line for line in warnings)
    for list_id in (C.OPTIZMO_EMAIL_LIST_ID, C.OPTIZMO_SMS_LIST_ID):
        assert any("optizmo_optouts" in line and list_id in line for line in warnings)
    assert all("WARNING" in line for line in warnings)
    if state is not None:  # the bookmarks are kept, not moved back
        kept = run.last_state["bookmarks"]
        assert kept["checkmarket_optouts"]["replication_key_value"] == at
        assert kept["slicktext_optouts"]["replication_key_value"] == at


def test_the_new_slicktext_api_in_the_future_is_nothing_to_do(sandbox: Any, tmp_path: Path) -> None:
    config = tap_config(sandbox, ("slicktext",), start_date=future())
    config["slicktext"] = slicktext_v2_settings(sandbox)
    before = provider_requests(control(sandbox, "stats"))
    run = run_cli("tap-optouts", config, tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert provider_requests(control(sandbox, "stats")) == before
    assert "slicktext_optouts: nothing to read" in run.stderr


# -- CheckMarket rows -------------------------------------------------------------------------
def checkmarket_config(url: str) -> dict[str, Any]:
    return {
        "start_date": "2025-01-01T00:00:00Z",
        "lookback_minutes": 0,
        "checkmarket": {"base_url": url, "master_key": "fake-master-key", "key": "fake-key"},
    }


def test_a_checkmarket_row_without_a_date_is_written_and_moves_no_bookmark(
    tmp_path: Path,
) -> None:
    rows = [
        checkmarket_row(1, "2025-03-01T10:00:00.000Z"),
        checkmarket_row(2, None),  # no DateOptOut at all
        {**checkmarket_row(3, None), "DateOptOut": None},
        checkmarket_row(4, "2025-02-01T10:00:00.000Z"),
    ]
    with fake_server(lambda path, query: (200, checkmarket_page(rows))) as fake:
        run = run_cli("tap-optouts", checkmarket_config(fake.url), tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    records = {r["ContactId"]: r for r in run.records("checkmarket_optouts")}
    assert sorted(records) == [1, 2, 3, 4]
    assert records[2]["DateOptOut"] is None and records[3]["DateOptOut"] is None
    assert records[2]["Email"] == "person2@example.com"
    for contact_id in (2, 3):
        assert any(
            "WARNING" in line and "CheckMarket" in line and f"ContactId {contact_id} " in line
            for line in run.stderr.splitlines()
        ), run.stderr[-2000:]
    bookmark = run.last_state["bookmarks"]["checkmarket_optouts"]
    assert bookmark["replication_key_value"] == "2025-03-01T10:00:00.000000Z"


def test_checkmarket_rows_all_without_a_date_leave_the_bookmark_where_it_was(
    tmp_path: Path,
) -> None:
    rows = [checkmarket_row(7, None)]
    state = {
        "bookmarks": {
            "checkmarket_optouts": {
                "replication_key": "DateOptOut",
                "replication_key_value": "2025-06-01T00:00:00.000000Z",
            }
        }
    }
    with fake_server(lambda path, query: (200, checkmarket_page(rows))) as fake:
        run = run_cli(
            "tap-optouts", checkmarket_config(fake.url), tmp_path, state=state, timeout=60
        )
    assert run.returncode == 0, run.stderr[-2000:]
    assert [r["ContactId"] for r in run.records()] == [7]
    bookmark = run.last_state["bookmarks"]["checkmarket_optouts"]
    assert bookmark["replication_key_value"] == "2025-06-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ("a string", "a row that is not a contact"),
        ({"Email": "x@example.com", "DateOptOut": "2025-03-01T10:00:00.000Z"}, "not a contact"),
        ({"ContactId": 5, "DateOptOut": 42}, "ContactId 5 has a DateOptOut that is not"),
        ({"ContactId": 6, "DateOptOut": "yesterday"}, "ContactId 6 has a DateOptOut that is not"),
    ],
)
def test_a_wrongly_shaped_checkmarket_row_is_an_error_naming_the_endpoint(
    tmp_path: Path, row: Any, says: str
) -> None:
    with fake_server(lambda path, query: (200, checkmarket_page([row]))) as fake:
        run = run_cli("tap-optouts", checkmarket_config(fake.url), tmp_path, timeout=60)
    assert run.returncode != 0
    assert "CheckMarket GET /3/contacts/optouts" in run.stderr, run.stderr[-2000:]
    assert says in run.stderr
    assert "x@example.com" not in run.stderr  # a row's values are not shown, its keys are
    assert "KeyError" not in run.stderr and "TypeError" not in run.stderr
    assert run.records() == [] and run.states == []


def test_a_wrongly_shaped_slicktext_row_is_an_error_naming_the_endpoint() -> None:
    page = {"optOuts": [{"number": "+12065550100"}], "meta": {"total": 1}}  # no id
    with fake_server(lambda path, query: (200, page)) as fake:
        client = SlickTextLegacyClient(fake.url, "pub_fake", "private-fake")
        with pytest.raises(ProviderError) as caught:
            list(client.iter_optouts(START, END))
    assert str(caught.value).startswith("SlickText GET /optouts failed: unexpected row")
    page2 = {"data": ["not a contact"], "pagingData": {"hasMore": False}}
    with fake_server(lambda path, query: (200, page2)) as fake:
        client2 = SlickTextV2Client(fake.url, "fake-api-key", 9)
        with pytest.raises(ProviderError) as caught:
            list(client2.iter_optouts(START, END))
    assert "GET /brands/9/contacts" in str(caught.value)
    assert "not an object" in str(caught.value)


# -- malformed state --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state_text", "says"),
    [
        ('{"bookmarks": {', ["not valid JSON"]),
        ("42", ["not a JSON object", "42"]),
        ('{"bookmarks": "checkmarket_optouts"}', ["'bookmarks' is not an object"]),
        (
            '{"bookmarks": {"checkmarket_optouts": {"replication_key": "DateOptOut", '
            '"replication_key_value": "yesterday"}}}',
            ["checkmarket_optouts", "'yesterday'", "not a date-time"],
        ),
        (
            '{"bookmarks": {"optizmo_optouts": {"partitions": [{"context": {"optout_list_id":'
            ' "abc"}, "replication_key": "timestamp", "replication_key_value": 17}]}}}',
            ["optizmo_optouts", "abc", "replication_key_value=17"],
        ),
        ('{"bookmarks": {"slicktext_optouts": ["x"]}}', ["slicktext_optouts", "not an object"]),
    ],
)
def test_a_broken_state_is_one_clear_line_and_a_failure(
    tmp_path: Path, state_text: str, says: list[str]
) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(checkmarket_config("http://127.0.0.1:9")))
    state_path = tmp_path / "state.json"
    state_path.write_text(state_text)
    done = subprocess.run(
        [str(TAP_BIN), "--config", str(config_path), "--state", str(state_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, done.stderr[-2000:]
    for word in says:
        assert word in errors[0]
    assert done.stdout == ""


# -- paging loops -----------------------------------------------------------------------------
def cm_client(url: str) -> CheckMarketClient:
    return CheckMarketClient(url, "fake-master-key", "fake-key", page_size=2)


def cm_link(url: str, skip: int) -> str:
    return f"{url}/3/contacts/optouts?$top=2&$skip={skip}"


@pytest.mark.timeout(LOOP_TIMEOUT)
@pytest.mark.parametrize("next_skips", [[1, 0], [1000, 2000, 0]], ids=["alternate", "cycle"])
def test_checkmarket_next_links_that_loop_fail(next_skips: list[int]) -> None:
    base: list[str] = []

    def answer(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        skip = int(query.get("$skip", ["0"])[0])
        position = next_skips.index(skip) + 1 if skip in next_skips else 0
        following = next_skips[position % len(next_skips)]
        rows = [checkmarket_row(skip * 10 + 1), checkmarket_row(skip * 10 + 2)]
        return 200, checkmarket_page(rows, cm_link(base[0], following), total=10_000)

    with fake_server(answer) as fake:
        base.append(fake.url)
        with pytest.raises(PagingLoopError) as caught:
            list(cm_client(fake.url).iter_optouts(START, END))
        assert len(fake.requests) <= len(next_skips) + 2
    message = str(caught.value)
    assert message.startswith("CheckMarket GET /3/contacts/optouts failed: paging loops")


@pytest.mark.timeout(LOOP_TIMEOUT)
def test_checkmarket_pages_past_the_reported_count_fail() -> None:
    base: list[str] = []

    def answer(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        skip = int(query.get("$skip", ["0"])[0])
        rows = [checkmarket_row(skip + 1), checkmarket_row(skip + 2)]  # new rows every time
        return 200, checkmarket_page(rows, cm_link(base[0], skip + 2), total=4)

    with fake_server(answer) as fake:
        base.append(fake.url)
        with pytest.raises(PagingLoopError) as caught:
            list(cm_client(fake.url).iter_optouts(START, END))
        assert len(fake.requests) == 4  # 2 pages reported, one of slack, then the stop
    assert "reports 4 rows" in str(caught.value)


@pytest.mark.timeout(LOOP_TIMEOUT)
def test_slicktext_legacy_same_page_for_every_offset_fails() -> None:
    rows = [
        {"id": n, "number": f"+1206555010{n}", "optOutDate": "2025-03-01 10:00:00"}
        for n in range(3)
    ]

    def answer(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        offset = int(query["offset"][0])
        return 200, {"optOuts": rows, "meta": {"limit": 3, "offset": offset, "total": 10**9}}

    with fake_server(answer) as fake:
        client = SlickTextLegacyClient(fake.url, "pub_fake", "private-fake", page_size=3)
        with pytest.raises(PagingLoopError) as caught:
            list(client.iter_optouts(START, END))
        assert len(fake.requests) == 2
    assert str(caught.value).startswith("SlickText GET /optouts failed: paging loops")


@pytest.mark.timeout(LOOP_TIMEOUT)
def test_slicktext_v2_same_page_with_has_more_for_ever_fails() -> None:
    rows = [
        {
            "contact_id": n,
            "mobile_number": f"+1206555010{n}",
            "opt_in_status": "unsubscribed",
            "last_opt_in_status_change": "2025-03-01 10:00:00",
        }
        for n in range(2)
    ]

    def answer(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        return 200, {"data": rows, "pagingData": {"hasMore": True}}

    with fake_server(answer) as fake:
        client = SlickTextV2Client(fake.url, "fake-api-key", 9, page_size=2)
        with pytest.raises(PagingLoopError) as caught:
            list(client.iter_optouts(START, END))
    assert "SlickText" in str(caught.value) and "/brands/9/contacts" in str(caught.value)


@pytest.mark.timeout(LOOP_TIMEOUT)
def test_slicktext_v2_pages_past_the_reported_count_fail() -> None:
    def answer(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        offset = int(query["offset"][0])
        rows = [
            {
                "contact_id": offset + n,
                "opt_in_status": "unsubscribed",
                "created": "2025-03-01 10:00:00",
            }
            for n in range(2)
        ]
        paging = {"hasMore": True, "currentPageString": f"{offset + 1}-{offset + 2} of 4"}
        return 200, {"data": rows, "pagingData": paging}

    with fake_server(answer) as fake:
        client = SlickTextV2Client(fake.url, "fake-api-key", 9, page_size=2)
        with pytest.raises(PagingLoopError) as caught:
            list(client.iter_optouts(START, END))
        assert len(fake.requests) == 4
    assert "reports 4 rows" in str(caught.value)


# -- SlickText: both key sets -----------------------------------------------------------------
def test_both_slicktext_key_sets_are_refused_by_tap_and_target_alike(
    sandbox: Any, tmp_path: Path
) -> None:
    both = {**tap_config(sandbox)["slicktext"], **slicktext_v2_settings(sandbox)}
    config = {**tap_config(sandbox, ("slicktext",)), "slicktext": both}
    before = provider_requests(control(sandbox, "stats"))
    tap = run_cli("tap-optouts", config, tmp_path, timeout=60)
    assert tap.returncode != 0
    assert BOTH_APIS_MESSAGE in tap.stderr.strip().splitlines()[-1], tap.stderr[-2000:]
    assert "Traceback" not in tap.stderr
    assert tap.messages == []
    assert provider_requests(control(sandbox, "stats")) == before
    with pytest.raises(ValueError, match="not both") as caught:
        build_destinations({"slicktext": both}, Rejects())
    assert str(caught.value) == BOTH_APIS_MESSAGE
    half = {"api_key": both["api_key"], "public_key": both["public_key"]}
    with pytest.raises(ValueError) as caught:
        build_destinations({"slicktext": half}, Rejects())
    assert str(caught.value) == BOTH_APIS_MESSAGE


# -- settings out of range --------------------------------------------------------------------
TAP_OUT_OF_RANGE = [
    ({"lookback_minutes": -30}, "['lookback_minutes']"),
    ({"request_timeout_seconds": 0}, "['request_timeout_seconds']"),
    ({"max_retry_wait_seconds": -1}, "['max_retry_wait_seconds']"),
    ({"max_total_wait_seconds": -1}, "['max_total_wait_seconds']"),
    ({"checkmarket": {"page_size": 0}}, "['checkmarket']['page_size']"),
    ({"checkmarket": {"survey_ids": [-3]}}, "['checkmarket']['survey_ids'][0]"),
    ({"slicktext": {"page_size": 10_001}}, "['slicktext']['page_size']"),
    ({"slicktext": {"requests_per_second": 0}}, "['slicktext']['requests_per_second']"),
    ({"slicktext": {"brand_id": 0}}, "['slicktext']['brand_id']"),
    ({"optizmo": {"poll_interval_seconds": 0}}, "['optizmo']['poll_interval_seconds']"),
    ({"optizmo": {"download_timeout_seconds": -5}}, "['optizmo']['download_timeout_seconds']"),
]


@pytest.mark.parametrize(("setting", "named"), TAP_OUT_OF_RANGE)
def test_a_tap_setting_out_of_range_is_refused_by_name(setting: dict, named: str) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        TapOptouts(config=setting, validate_config=True, setup_mapper=False)
    assert any(error.endswith(f"in config{named}") for error in caught.value.errors), (
        caught.value.errors
    )


TARGET_OUT_OF_RANGE = [
    ({"checkmarket": {"batch_size": 0}}, "['checkmarket']['batch_size']"),
    ({"optizmo": {"bulk_threshold": -1}}, "['optizmo']['bulk_threshold']"),
    ({"optizmo": {"upload_timeout_seconds": 0}}, "['optizmo']['upload_timeout_seconds']"),
    ({"optizmo": {"poll_interval_seconds": -1}}, "['optizmo']['poll_interval_seconds']"),
    ({"slicktext": {"requests_per_second": -2}}, "['slicktext']['requests_per_second']"),
    ({"request_timeout_seconds": -1}, "['request_timeout_seconds']"),
]


@pytest.mark.parametrize(("setting", "named"), TARGET_OUT_OF_RANGE)
def test_a_target_setting_out_of_range_is_refused_by_name(setting: dict, named: str) -> None:
    from target_optouts.target import TargetOptouts

    with pytest.raises(ConfigValidationError) as caught:
        TargetOptouts(config=setting, validate_config=True, setup_mapper=False)
    assert any(error.endswith(f"in config{named}") for error in caught.value.errors), (
        caught.value.errors
    )


@pytest.mark.parametrize("executable", [TAP_BIN, TARGET_BIN], ids=["tap", "target"])
def test_the_cli_refuses_a_setting_out_of_range_with_its_name(
    tmp_path: Path, executable: Path
) -> None:
    config = {"request_timeout_seconds": -1}
    if executable == TAP_BIN:
        config = {**checkmarket_config("http://127.0.0.1:9"), "lookback_minutes": -30}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [str(executable), "--config", str(path)],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    named = "lookback_minutes" if executable == TAP_BIN else "request_timeout_seconds"
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, done.stderr[-2000:]
    # The last line is what `meltano config test` shows of a failed plugin.
    assert errors[0] == done.stderr.strip().splitlines()[-1]
    assert f"in config['{named}']" in errors[0]


# -- the reason of a failure at ERROR ---------------------------------------------------------
def structured_logging(tmp_path: Path, level: str) -> Path:
    """A logging config as Meltano writes it for a singer-sdk plugin (structured JSON)."""
    path = tmp_path / "logging.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"f": {"()": "singer_sdk.logging.StructuredFormatter"}},
                "handlers": {
                    "console": {
                        "class": "logging.StreamHandler",
                        "formatter": "f",
                        "stream": "ext://sys.stderr",
                    }
                },
                "root": {"handlers": ["console"], "level": level},
            }
        )
    )
    return path


def test_a_failing_tap_logs_its_reason_at_error_in_structured_form(
    sandbox: Any, tmp_path: Path
) -> None:
    wrong_key = "wrong-checkmarket-key-7f3a9c"
    config = tap_config(sandbox, ("checkmarket",), checkmarket={"key": wrong_key})
    env = {"SINGER_SDK_LOG_CONFIG": str(structured_logging(tmp_path, "WARNING"))}
    run = run_cli("tap-optouts", config, tmp_path, env=env, timeout=60)
    assert run.returncode != 0
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert len(lines) == len(run.stderr.strip().splitlines())  # every line structured
    errors = [line for line in lines if line["level"] == "error"]
    reasons = [line for line in errors if "exception" in line]
    assert len(reasons) == 1, run.stderr[-3000:]
    reason = reasons[0]
    assert reason["message"].startswith("CheckMarket GET /3/contacts/optouts answered HTTP 401")
    assert reason["exception"]["type"] == "ProviderError"
    assert reason["exception"]["module"] == "optouts_providers.http"
    assert wrong_key not in run.stderr
    assert C.CHECKMARKET_MASTER_KEY not in run.stderr


def test_the_exception_logged_structured_has_its_secrets_masked() -> None:
    secret = "sk-live-5b1f0e7d9a"
    register_secret(secret)
    try:
        try:
            raise ConnectionError(f"GET https://api.example.com/x?apikey={secret} reset")
        except ConnectionError as cause:
            raise ProviderError("Example", "GET", "/x", 500, "boom") from cause
    except ProviderError as exc:
        clean = redacted_exception(exc)
        record = logging.LogRecord(
            "tap-optouts", logging.ERROR, __file__, 1, "%s", (str(clean),), None
        )
        record.exc_info = (type(clean), clean, clean.__traceback__)
        text = StructuredFormatter().format(record)
    data = json.loads(text)
    assert secret not in text
    assert data["exception"]["type"] == "ProviderError"
    assert data["exception"]["cause"]["type"] == "ConnectionError"
    assert "apikey=***" in data["exception"]["cause"]["message"]


def test_an_exception_without_secrets_is_logged_as_itself() -> None:
    exc = ProviderError("Example", "GET", "/x", 403, "forbidden")
    assert redacted_exception(exc) is exc
