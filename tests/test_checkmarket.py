"""CheckMarket: wire grammar, the emulator, the client and the tap, against the sandbox."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from optouts_providers.checkmarket import wire
from optouts_providers.checkmarket.client import CheckMarketClient, record_timestamp
from optouts_providers.http import ProviderError, RetryPolicy
from optouts_providers.timeutil import to_rfc3339
from optouts_sandbox import credentials as C
from optouts_sandbox.checkmarket import CheckMarketEmulator
from optouts_sandbox.checkmarket_query import parse_filter
from optouts_sandbox.server import SandboxHTTPServer
from tests.sandbox_support import TAP_BIN, control, running_sandbox, tap_config

TAP = str(TAP_BIN)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
HEADERS = {wire.MASTER_KEY_HEADER: C.CHECKMARKET_MASTER_KEY, wire.KEY_HEADER: C.CHECKMARKET_KEY}
FAST_RETRY = RetryPolicy(max_tries=12, base_seconds=0.01, cap_seconds=0.05, max_wait_seconds=60)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def emulator(server: SandboxHTTPServer) -> CheckMarketEmulator:
    em = server.sandbox.emulators["checkmarket"]
    assert isinstance(em, CheckMarketEmulator)
    return em


def client(server: SandboxHTTPServer, key: str = C.CHECKMARKET_KEY, **kw: Any) -> CheckMarketClient:
    base = server.base_urls()["checkmarket"]
    return CheckMarketClient(base, C.CHECKMARKET_MASTER_KEY, key, **kw)


def rows_by_id(server: SandboxHTTPServer, survey_id: int | None = None) -> dict[int, datetime]:
    """ContactId -> DateOptOut of what the emulator holds (one survey's list or all)."""
    with emulator(server).lock:
        return {
            r.contact_id: r.date_optout
            for r in emulator(server).rows
            if survey_id is None or survey_id in r.surveys
        }


def gets(server: SandboxHTTPServer) -> int:
    return control(server, "stats").get("checkmarket GET", 0)


def posts(server: SandboxHTTPServer) -> int:
    return control(server, "stats").get("checkmarket POST", 0)


def api_get(server: SandboxHTTPServer, path: str, params: Any = None, **kw: Any) -> Any:
    url = f"{server.base_urls()['checkmarket']}/{path.lstrip('/')}"
    return requests.get(url, params=params, headers=kw.pop("headers", HEADERS), timeout=30)


def walk(server: SandboxHTTPServer, params: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """All pages of the account list, following Links.Next as returned."""
    pages = []
    response = api_get(server, wire.ACCOUNT_OPTOUTS_PATH, params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["Data"])
        href = wire.next_href(body)
        if href is None:
            return pages
        response = requests.get(href, headers=HEADERS, timeout=30)


def run_tap(
    tmp_path: Path, config: dict[str, Any], state: dict[str, Any] | None = None, tag: str = "run"
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, subprocess.CompletedProcess[bytes]]:
    """The tap as a real process: (records, last STATE value, the finished process)."""
    config_file = tmp_path / f"{tag}-config.json"
    config_file.write_text(json.dumps(config))
    args = [TAP, "--config", str(config_file)]
    if state is not None:
        state_file = tmp_path / f"{tag}-state.json"
        state_file.write_text(json.dumps(state))
        args += ["--state", str(state_file)]
    proc = subprocess.run(args, capture_output=True, timeout=120, check=False)
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    return records, (states[-1] if states else None), proc


def checkmarket_only(server: SandboxHTTPServer, **settings: Any) -> dict[str, Any]:
    return tap_config(server, providers=("checkmarket",), checkmarket=settings)


# -- filters (the client builds, the sandbox parses) and wire formats -----------------------
@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("DateOptOut ge DateTime'2019-01-01'", [[("DateOptOut", "ge", utc(2019, 1, 1))]]),
        (
            "DateOptOut ge DateTime'2019-01-01T10:11:12' and DateOptOut lt DateTime'2020-02-29'",
            [
                [
                    ("DateOptOut", "ge", utc(2019, 1, 1, 10, 11, 12)),
                    ("DateOptOut", "lt", utc(2020, 2, 29)),
                ]
            ],
        ),
        (
            "Email eq 'o''brien@example.com' or ContactId ne -5 and LangCode le 'nl'",
            [
                [("Email", "eq", "o'brien@example.com")],
                [("ContactId", "ne", -5), ("LangCode", "le", "nl")],
            ],
        ),
        ("  ContactId gt 50000010   ", [[("ContactId", "gt", 50000010)]]),
        ("Email eq 'a and b or c'", [[("Email", "eq", "a and b or c")]]),
    ],
)
def test_filter_parses(text: str, groups: list[list[tuple[str, str, Any]]]) -> None:
    parsed = parse_filter(text)
    assert [[(c.field, c.op, c.value) for c in g] for g in parsed.groups] == groups
    # build and parse are inverse: the canonical text parses back to the same filter
    assert parse_filter(str(parsed)) == parsed
    assert wire.build_filter(*groups) == str(parsed)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "DateOptOut",
        "DateOptOut ge",
        "DateOptOut gte 3",
        "DateOptOut ge DateTime'2019-13-01'",
        "DateOptOut ge DateTime'2019-01-01 10:00:00'",
        "DateOptOut ge DateTime'2019-01-01T10:00'",
        "ContactId eq 1 and",
        "ContactId eq 1 xor ContactId eq 2",
        "(ContactId eq 1)",
        "Email eq 'unterminated",
        "Email eq LastName",
        "and eq 1",
        "ContactId eq 1.5",
    ],
)
def test_filter_rejects(text: str) -> None:
    with pytest.raises(wire.FilterError):
        parse_filter(text)


def test_filter_evaluates_with_and_binding_tighter_than_or() -> None:
    f = parse_filter("ContactId eq 1 or ContactId ge 5 and Email ne 'x@y.z'")
    assert f.matches({"ContactId": 1, "Email": "x@y.z"})
    assert f.matches({"ContactId": 6, "Email": None})  # null is "ne" anything
    assert not f.matches({"ContactId": 6, "Email": "x@y.z"})
    assert not f.matches({"ContactId": 3, "Email": "a@b.c"})
    with pytest.raises(wire.FilterError, match="Unknown field"):
        f.check_fields({"ContactId": int})
    with pytest.raises(wire.FilterError, match="cannot be compared"):
        parse_filter("ContactId eq 'x'").check_fields({"ContactId": int})


def test_time_formats_and_window_filter() -> None:
    at = datetime(2025, 1, 22, 10, 46, 17, 659309, tzinfo=UTC)
    assert wire.format_meta_timestamp(at) == "2025-01-22T10:46:17.6593090Z"
    assert wire.format_date_optout(at) == "2025-01-22T10:46:17.659Z"
    cet = at.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Brussels"))
    assert wire.format_datetime_literal(cet) == "2025-01-22T10:46:17"
    assert wire.parse_datetime("2025-01-22T07:56:03.5378078Z") == utc(
        2025, 1, 22, 7, 56, 3
    ) + timedelta(microseconds=537807)
    assert wire.parse_datetime("2025-01-22T08:56:03+01:00") == utc(2025, 1, 22, 7, 56, 3)
    assert wire.window_filter(at, at + timedelta(days=1)) == (
        "DateOptOut ge DateTime'2025-01-22T10:46:17' "
        "and DateOptOut lt DateTime'2025-01-23T10:46:17'"
    )


@pytest.mark.parametrize(
    ("value", "record"),
    [
        ("2019-01-13T08:31:01.033Z", "2019-01-13T08:31:01.033000Z"),
        ("2019-01-13T08:31:01Z", "2019-01-13T08:31:01.000000Z"),
        ("2019-01-13T09:31:01.0331234+01:00", "2019-01-13T08:31:01.033123Z"),
        ("2019-01-13T08:31:01.5Z", "2019-01-13T08:31:01.500000Z"),
    ],
)
def test_record_timestamps_are_fixed_width_utc(value: str, record: str) -> None:
    assert record_timestamp(value) == record == to_rfc3339(wire.parse_datetime(value))


@pytest.mark.parametrize(
    ("href", "path"),
    [
        (
            "https://api-eu.checkmarket.com/3/contacts/optouts?$top=25&$skip=25",
            "3/contacts/optouts?$top=25&$skip=25",
        ),
        (
            "http://127.0.0.1:9/checkmarket/3/surveys/7/contacts/optouts?$skip=2",
            "3/surveys/7/contacts/optouts?$skip=2",
        ),
        ("/3/contacts/optouts", "3/contacts/optouts"),
    ],
)
def test_link_path_keeps_only_the_api_path_and_query(href: str, path: str) -> None:
    assert wire.link_path(href) == path


# -- the emulator on the wire ----------------------------------------------------------------
def test_envelope_meta_links_and_errors(sandbox: SandboxHTTPServer) -> None:
    total = control(sandbox, "inspect")["checkmarket"]["count"]
    body = api_get(sandbox, wire.ACCOUNT_OPTOUTS_PATH).json()
    assert len(body["Data"]) == wire.DEFAULT_TOP
    meta = body["Meta"]
    assert list(meta) == [
        "Status", "TotalRowCount", "Limit", "Offset", "TotalPageCount", "StartRec", "StopRec",
        "Timestamp", "IsFiltered",
    ]  # fmt: skip
    assert (meta["Status"], meta["TotalRowCount"], meta["Limit"], meta["Offset"]) == (
        200,
        total,
        25,
        0,
    )
    assert (meta["TotalPageCount"], meta["StartRec"], meta["StopRec"]) == (
        math.ceil(total / 25),
        1,
        25,
    )
    assert meta["IsFiltered"] is False
    assert len(meta["Timestamp"]) == len("2025-01-22T10:46:17.6593098Z")
    assert "Previous" not in body["Links"]
    assert body["Links"]["Next"] == {
        "Href": f"{sandbox.base_urls()['checkmarket']}/3/contacts/optouts?$top=25&$skip=25",
        "Method": "GET",
    }
    last = api_get(sandbox, wire.ACCOUNT_OPTOUTS_PATH, {"$top": 25, "$skip": total - 3}).json()
    assert len(last["Data"]) == 3 and "Next" not in last["Links"]
    assert last["Links"]["Previous"]["Href"].endswith(f"$top=25&$skip={total - 28}")
    assert set(last["Data"][0]) >= set(wire.ITEM_FIELDS)

    bad = api_get(sandbox, wire.ACCOUNT_OPTOUTS_PATH, {"filter": "DateOptOut ge 'yesterday'"})
    assert bad.status_code == 400
    assert bad.json()["Meta"]["Status"] == 400
    assert "cannot be compared" in bad.json()["Data"]["ErrorMessage"]
    for params in ({"$filter": "Nope eq 1"}, {"top": "ten"}, {"orderby": "DateOptOut up"}):
        assert api_get(sandbox, wire.ACCOUNT_OPTOUTS_PATH, params).status_code == 400
    missing = api_get(sandbox, wire.optouts_path(999))
    assert missing.status_code == 404 and missing.json()["Data"]["ErrorType"] == "NotFound"


def test_dollar_and_bare_options_are_the_same(sandbox: SandboxHTTPServer) -> None:
    options = {
        "top": 7,
        "skip": 3,
        "filter": "DateOptOut ge DateTime'2026-01-01' and ContactId lt 50000250",
        "orderby": "DateOptOut desc",
        "select": "ContactId,DateOptOut",
    }
    bare = api_get(sandbox, wire.ACCOUNT_OPTOUTS_PATH, options).json()
    dollar = api_get(
        sandbox, wire.ACCOUNT_OPTOUTS_PATH, {f"${k}": v for k, v in options.items()}
    ).json()
    assert bare["Data"] == dollar["Data"]
    assert bare["Links"] == dollar["Links"]
    expected = sorted(
        (at, cid)
        for cid, at in rows_by_id(sandbox).items()
        if at >= utc(2026, 1, 1) and cid < 50000250
    )
    expected.reverse()
    assert bare["Meta"]["TotalRowCount"] == len(expected) and bare["Meta"]["IsFiltered"] is True
    assert [d["ContactId"] for d in bare["Data"]] == [cid for _, cid in expected[3:10]]
    assert all(set(d) == {"ContactId", "DateOptOut"} for d in bare["Data"])
    # the vendor example's `filter==` typo (checkmarket.md, 'Filter syntax') is tolerated
    typo = api_get(sandbox, wire.ACCOUNT_OPTOUTS_PATH, {"filter": "=" + options["filter"]}).json()
    assert typo["Meta"]["TotalRowCount"] == len(expected)


# -- reading: paging, ties, links ----------------------------------------------------------------
def test_client_pages_to_the_last_row_under_the_page_cap() -> None:
    with running_sandbox(size=1200, checkmarket_max_top=100) as server:
        held = control(server, "inspect")["checkmarket"]
        total = held["count"]
        assert total > 5 * 100
        cm = client(server, page_size=1000)
        records = list(cm.iter_optouts(EPOCH, datetime.now(UTC)))
        ids = [r["ContactId"] for r in records]
        assert len(ids) == len(set(ids)) == total
        assert set(ids) == set(rows_by_id(server))
        assert sorted(r["Email"].lower() for r in records if r["Email"]) == held["emails"]
        assert sorted(r["PhoneNumber"] for r in records if r["Email"] is None) == held["phones"]
        assert gets(server) == cm.stats.requests == math.ceil(total / 100)
        assert all(r["SurveyId"] == 0 and r["DateOptOut"].endswith("Z") for r in records)


def test_ties_straddle_page_borders_and_nothing_is_lost_or_repeated() -> None:
    with running_sandbox(size=2200) as server:
        held = rows_by_id(server)
        assert len(held) > 1000
        for top in (25, 1000):
            pages = walk(server, {"$top": top, "$orderby": "DateOptOut asc"})
            assert len(pages) == math.ceil(len(held) / top)
            flat = [row for page in pages for row in page]
            assert Counter(r["ContactId"] for r in flat) == Counter(held.keys())
            stamps = [r["DateOptOut"] for r in flat]
            assert stamps == sorted(stamps)
            # every page border cuts through a run of equal timestamps
            for before, after in itertools.pairwise(pages):
                assert before[-1]["DateOptOut"] == after[0]["DateOptOut"]
            # and the client, which sends no orderby, still gets every row exactly once
            cm = client(server, page_size=top)
            ids = [r["ContactId"] for r in cm.iter_optouts(EPOCH, datetime.now(UTC))]
            assert Counter(ids) == Counter(held.keys())


def test_window_is_exact_although_the_filter_has_whole_seconds(sandbox: SandboxHTTPServer) -> None:
    held = rows_by_id(sandbox)
    ordered = sorted(set(held.values()))
    start = ordered[40] + timedelta(microseconds=1000)  # mid-second, between two rows
    end = ordered[90]
    assert start.microsecond and end.microsecond
    records = list(client(sandbox).iter_optouts(start, end))
    assert {r["ContactId"] for r in records} == {
        cid for cid, at in held.items() if start <= at < end
    }


def test_next_link_on_another_host_is_resolved_against_the_configured_base(
    sandbox: SandboxHTTPServer,
) -> None:
    emulator(sandbox).link_base = "https://api-eu.checkmarket.com"
    first = api_get(sandbox, wire.ACCOUNT_OPTOUTS_PATH, {"top": 10}).json()
    assert first["Links"]["Next"]["Href"].startswith(
        "https://api-eu.checkmarket.com/3/contacts/optouts?$top=10&$skip=10"
    )
    cm = client(sandbox, page_size=10)
    before = gets(sandbox)
    ids = [r["ContactId"] for r in cm.iter_optouts(EPOCH, datetime.now(UTC))]
    assert Counter(ids) == Counter(rows_by_id(sandbox).keys())
    assert gets(sandbox) - before == cm.stats.requests == math.ceil(len(ids) / 10)


def test_survey_partitions_each_get_a_bookmark(sandbox: SandboxHTTPServer, tmp_path: Path) -> None:
    config = checkmarket_only(sandbox, survey_ids=[1001, 1002])
    records, state, proc = run_tap(tmp_path, config)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    for survey in (1001, 1002):
        held = rows_by_id(sandbox, survey)
        got = [r for r in records if r["SurveyId"] == survey]
        assert Counter(r["ContactId"] for r in got) == Counter(held.keys())
    assert len(records) == len(rows_by_id(sandbox, 1001)) + len(rows_by_id(sandbox, 1002))
    assert state is not None
    partitions = state["bookmarks"]["checkmarket_optouts"]["partitions"]
    bookmarks = {p["context"]["SurveyId"]: p["replication_key_value"] for p in partitions}
    assert bookmarks == {
        s: max(rows_by_id(sandbox, s).values()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for s in (1001, 1002)
    }


# -- incremental runs of the tap -------------------------------------------------------------
def test_incremental_run_reads_only_new_rows_and_the_bookmark_row(
    sandbox: SandboxHTTPServer, tmp_path: Path
) -> None:
    config = checkmarket_only(sandbox)
    first, state, proc = run_tap(tmp_path, config, tag="first")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    held = rows_by_id(sandbox)
    assert Counter(r["ContactId"] for r in first) == Counter(held.keys())
    bookmark = state["bookmarks"]["checkmarket_optouts"]["replication_key_value"]
    latest = max(held.values())
    assert bookmark == latest.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    # New opt-outs: one tied with the bookmark, one just after it, and three stamped by the
    # sandbox clock (set back, so that they are older than the next run's whole-second bound).
    def add(records: list[dict[str, Any]]) -> int:
        return control(sandbox, "optouts", {"provider": "checkmarket", "records": records})["added"]

    just_after = (latest + timedelta(milliseconds=1)).isoformat()
    control(sandbox, "clock", {"advance_seconds": -120})
    assert add([
        {"Email": "tied@example.com", "DateOptOut": latest.isoformat()},
        {"Email": "after@example.com", "DateOptOut": just_after},
        {"Email": "now-ish@example.com"},
        {"PhoneNumber": "+14155550199"},
    ]) == 4  # fmt: skip
    control(sandbox, "clock", {"advance_seconds": 118})
    assert add([{"Email": "now@example.com"}]) == 1
    control(sandbox, "clock", {"advance_seconds": 2})
    after = rows_by_id(sandbox)
    added_ids = set(after) - set(held)
    at_bookmark = {cid for cid, at in after.items() if at == latest}
    assert len(added_ids) == 5 and len(at_bookmark) >= 2

    second, state2, proc = run_tap(tmp_path, config, state, tag="second")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    ids = [r["ContactId"] for r in second]
    assert len(ids) == len(set(ids))
    assert set(ids) == added_ids | at_bookmark
    emails = {r["Email"] for r in second}
    assert {
        "tied@example.com",
        "after@example.com",
        "now-ish@example.com",
        "now@example.com",
    } <= emails
    assert {r["PhoneNumber"] for r in second if r["Email"] is None} == {"+14155550199"}
    newest = max(after[cid] for cid in added_ids)
    assert state2["bookmarks"]["checkmarket_optouts"]["replication_key_value"] == newest.strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )


def test_rows_added_while_paging_are_not_lost(tmp_path: Path) -> None:
    with running_sandbox(size=600, checkmarket_max_top=20) as server:
        em = emulator(server)
        seeded = rows_by_id(server)
        pages_served: list[int] = []

        def add_during_paging(request: Any) -> None:
            pages_served.append(1)
            if len(pages_served) in (2, 4, 6):  # later pages are still to come
                n = len(pages_served)
                em.admin_add([{"Email": f"paging-{n}-{i}@example.com"} for i in range(3)])

        em.page_hook = add_during_paging
        config = checkmarket_only(server)
        first, state, proc = run_tap(tmp_path, config, tag="first")
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        # The frozen window: the first run saw exactly the rows that existed when it started,
        # each once, although rows were inserted among the pages it was reading.
        assert Counter(r["ContactId"] for r in first) == Counter(seeded.keys())
        assert len(pages_served) == math.ceil(len(seeded) / 20) > 6
        added = set(rows_by_id(server)) - set(seeded)
        assert len(added) == 9

        em.page_hook = None
        # The query's upper bound has whole seconds: start the next run past the newest row.
        newest = max(rows_by_id(server)[cid] for cid in added)
        time.sleep(max(0.0, (newest - datetime.now(UTC)).total_seconds() + 1.1))
        second, _, proc = run_tap(tmp_path, config, state, tag="second")
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        latest = max(seeded.values())
        at_bookmark = {cid for cid, at in seeded.items() if at == latest}
        assert {r["ContactId"] for r in second} == added | at_bookmark


# -- errors ----------------------------------------------------------------------------------
def test_wrong_key_fails_clearly_without_leaking_it(
    sandbox: SandboxHTTPServer, tmp_path: Path
) -> None:
    wrong = "cm-wrong-key-7f3a9c1d"
    config = checkmarket_only(sandbox, key=wrong)
    records, _, proc = run_tap(tmp_path, config)
    assert proc.returncode != 0 and records == []
    stderr = proc.stderr.decode()
    assert "CheckMarket GET /3/contacts/optouts answered HTTP 401" in stderr
    for secret in (wrong, C.CHECKMARKET_MASTER_KEY):
        assert secret not in stderr
        assert secret not in proc.stdout.decode()


def test_key_without_roles_gets_403(sandbox: SandboxHTTPServer) -> None:
    cm = client(sandbox, key=C.CHECKMARKET_KEY_NO_ROLES)
    with pytest.raises(ProviderError) as read_error:
        next(cm.iter_optouts(EPOCH, datetime.now(UTC)))
    with pytest.raises(ProviderError) as write_error:
        cm.add_optouts(["someone@example.com"], [])
    for error in (read_error.value, write_error.value):
        assert error.status == 403 and error.provider == "CheckMarket"
        assert error.endpoint == "/3/contacts/optouts"
        assert "Contacts role" in str(error) and C.CHECKMARKET_KEY_NO_ROLES not in str(error)
    missing = api_get(
        sandbox, wire.ACCOUNT_OPTOUTS_PATH, headers={wire.KEY_HEADER: C.CHECKMARKET_KEY}
    )
    assert missing.status_code == 401 and missing.json()["Meta"]["Status"] == 401


# -- writing ---------------------------------------------------------------------------------
def test_write_in_batches_counting_already_present_and_e164_phones(
    sandbox: SandboxHTTPServer,
) -> None:
    before = control(sandbox, "inspect")["checkmarket"]
    existing = before["emails"][:5]
    fresh = [f"fresh-{i}@example.org" for i in range(20)]
    phones = ["+1 (415) 555-0199", "+12125550142", "+44 20 7946 0958", before["phones"][0]]
    cm = client(sandbox, batch_size=10)
    result = cm.add_optouts(existing + fresh, phones)
    assert posts(sandbox) == math.ceil(29 / 10)
    assert (result.written, result.already_present, result.rejected) == (23, 6, [])
    after = control(sandbox, "inspect")["checkmarket"]
    assert after["count"] == before["count"] + 23
    assert set(after["emails"]) == set(before["emails"]) | set(fresh)
    assert set(after["phones"]) == set(before["phones"]) | {
        "+14155550199",
        "+12125550142",
        "+442079460958",
    }
    # writing the same again is a no-op success
    again = cm.add_optouts(fresh, ["+12125550142"])
    assert (again.written, again.already_present) == (0, 21)


def test_write_bisects_a_refused_batch_to_isolate_bad_addresses(sandbox: SandboxHTTPServer) -> None:
    valid = [f"valid-{i}@example.com" for i in range(50)]
    bad = ["not-an-email", "missing@tld", "two@@example.com"]
    emails = [*valid[:10], bad[0], *valid[10:30], bad[1], *valid[30:], bad[2]]
    result = client(sandbox).add_optouts(emails, [])
    assert result.written == 50 and result.already_present == 0
    assert dict(result.rejected) == {b: f"Invalid email address: {b!r}" for b in bad}
    held = set(control(sandbox, "inspect")["checkmarket"]["emails"])
    assert set(valid) <= held and not set(bad) & held
    assert posts(sandbox) > 1
    phone_result = client(sandbox).add_optouts([], ["+19195550100", "12345", "+1999"])
    assert phone_result.written == 1 and [a for a, _ in phone_result.rejected] == ["12345", "+1999"]


# -- retries ---------------------------------------------------------------------------------
def test_429_with_retry_after_is_honoured(sandbox: SandboxHTTPServer) -> None:
    control(sandbox, "config", {"rate_limits": {"checkmarket": {"per_second": 2}}})
    cm = client(sandbox, page_size=30)
    started = time.monotonic()
    ids = [r["ContactId"] for r in cm.iter_optouts(EPOCH, datetime.now(UTC))]
    elapsed = time.monotonic() - started
    assert Counter(ids) == Counter(rows_by_id(sandbox).keys())
    stats = control(sandbox, "stats")
    assert stats["checkmarket 429"] == cm.stats.rate_limited >= 1
    # each 429 said Retry-After: 1 (or more) and the client waited at least that long
    assert cm.stats.throttled_seconds >= cm.stats.rate_limited * 1.0
    assert elapsed >= cm.stats.rate_limited * 1.0
    throttled = api_get(sandbox, wire.ACCOUNT_OPTOUTS_PATH)
    for _ in range(3):
        if throttled.status_code == 429:
            break
        throttled = api_get(sandbox, wire.ACCOUNT_OPTOUTS_PATH)
    assert throttled.status_code == 429
    assert throttled.json()["Meta"]["Status"] == 429 and int(throttled.headers["Retry-After"]) >= 1


def test_503s_are_retried_for_reads_and_writes(sandbox: SandboxHTTPServer) -> None:
    control(sandbox, "config", {"error_rate": 0.4, "error_status": 503})
    cm = client(sandbox, page_size=20, batch_size=5, retry=FAST_RETRY)
    ids = [r["ContactId"] for r in cm.iter_optouts(EPOCH, datetime.now(UTC))]
    assert Counter(ids) == Counter(rows_by_id(sandbox).keys())
    result = cm.add_optouts([f"retry-{i}@example.com" for i in range(12)], [])
    assert (result.written, result.already_present) == (12, 0)
    faults = control(sandbox, "stats").get("checkmarket fault:503", 0)
    assert faults >= 1 and cm.stats.retries == faults
    assert cm.stats.by_status.get(503) == faults
