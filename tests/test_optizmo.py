"""Optizmo against the sandbox as a real HTTP server: downloads, collect, bulk upload, tap."""

from __future__ import annotations

import hashlib
import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from optouts_providers.http import ProviderError, RetryableProviderError
from optouts_providers.optizmo import wire
from optouts_providers.optizmo.bulk import OptizmoImportError
from optouts_providers.optizmo.files import file_timestamp
from optouts_providers.optizmo.storage import DOWNLOAD_ATTEMPTS
from optouts_providers.timeutil import to_rfc3339
from optouts_sandbox import credentials as C
from optouts_sandbox.seed import Person, at_provider, generate
from tests.optizmo_support import EPOCH, KEY, client_for, emulator, read
from tests.sandbox_support import control, run_cli, running_sandbox, tap_config

EMAIL_LIST = C.OPTIZMO_EMAIL_LIST_ID
SMS_LIST = C.OPTIZMO_SMS_LIST_ID


def held(server, list_id: str) -> dict:
    return control(server, "inspect")["optizmo"]["lists"][list_id]


def seeded() -> list[Person]:
    return at_provider(generate(300, 7), "optizmo")


def md5(value: str) -> str:
    return hashlib.md5(value.encode()).hexdigest()


def stamp(person: Person) -> str:
    return to_rfc3339(person.opted_out_at.replace(microsecond=0))


# -- download -------------------------------------------------------------------------------
@pytest.mark.parametrize("download_format", ["csv", "zip"])
def test_full_download_equals_the_seeded_lists(download_format):
    with running_sandbox(download_format=download_format) as server:
        client = client_for(server)
        emails = read(client, EMAIL_LIST)
        phones = read(client, SMS_LIST)
        people = seeded()
        expected_emails = {p.email: p for p in people if p.has_email}
        expected_phones = {p.phone.lstrip("+"): p for p in people if p.has_phone}

        assert len(emails) == len(expected_emails)
        assert {r["plain"] for r in emails} == set(expected_emails)
        assert {r["hashed"] for r in emails} == {md5(e) for e in expected_emails}
        assert sorted(r["hashed"] for r in emails) == held(server, EMAIL_LIST)["hashes"]
        assert sorted(r["plain"] for r in emails) == held(server, EMAIL_LIST)["emails"]
        for record in emails:
            assert record["timestamp"] == stamp(expected_emails[record["plain"]])
            assert record["optout_list_id"] == EMAIL_LIST
            assert record["campaign"] is None  # not requested
        assert {r["plain"] for r in phones} == set(expected_phones)
        assert sorted("+" + r["plain"] for r in phones) == held(server, SMS_LIST)["phones"]
        assert all(r["optout_list_id"] == SMS_LIST for r in phones)
        assert len(emulator(server).prepare_download_bodies) == 2


def test_the_zip_download_really_is_a_zip_and_csv_is_not(sandbox):
    url = sandbox.base_urls()["optizmo"]
    body = {"optoutListId": EMAIL_LIST, "columns": ["hashed"], "collectionType": ["imported"]}
    heads = {}
    for download_format in ("csv", "zip"):
        control(sandbox, "config", {"download_format": download_format})
        answer = requests.post(
            f"{url}/optout-list/prepare-download",
            json=body,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
        heads[download_format] = requests.get(answer.json()["downloadUrl"], timeout=10).content
    assert heads["zip"].startswith(wire.ZIP_MAGIC)
    assert heads["csv"].startswith(b"hashed\r\n")


def test_polls_until_ready_and_never_sends_a_credential_to_storage():
    with running_sandbox(download_delay_seconds=0.5) as server:
        started = time.monotonic()
        records = read(client_for(server), EMAIL_LIST, poll_interval_seconds=0.05)
        assert time.monotonic() - started >= 0.5
        assert len(records) == held(server, EMAIL_LIST)["count"]
        (download,) = emulator(server).downloads.values()
        stats = control(server, "stats")
        # 0.05 s growing by 1.5x: at least 3 polls answered 404 within 0.5 s.
        assert download.not_ready >= 3
        assert stats["optizmo download:not-ready"] == download.not_ready
        assert stats["optizmo GET"] == download.not_ready + 1
        assert emulator(server).storage_credential_headers == 0
        # The check itself can fail: a credential sent to storage is recorded.
        link = f"{server.url}/optizmo/storage/downloads/{download.token}"
        requests.get(link, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        assert emulator(server).storage_credential_headers == 1


def test_a_download_that_is_never_ready_times_out_clearly():
    with running_sandbox(download_delay_seconds=600) as server:
        started = time.monotonic()
        with pytest.raises(ProviderError) as caught:
            read(
                client_for(server),
                EMAIL_LIST,
                poll_interval_seconds=0.05,
                download_timeout_seconds=0.4,
            )
        assert 0.4 <= time.monotonic() - started < 5
        (download,) = emulator(server).downloads.values()
        message = str(caught.value)
        assert message.startswith("Optizmo GET ")
        assert f"/optizmo/storage/downloads/{download.token}" in message
        assert "not ready after 0.4s" in message
        assert "Signature" not in message and download.signature not in message
        assert KEY not in message


@pytest.mark.parametrize("download_format", ["csv", "zip"])
def test_a_truncated_download_fails_and_is_not_a_silent_partial_list(download_format):
    with running_sandbox(truncate_downloads=True, download_format=download_format) as server:
        records: list[dict] = []
        with pytest.raises(RetryableProviderError) as caught:
            records.extend(
                client_for(server).iter_optouts(
                    EMAIL_LIST, EPOCH, datetime.now(UTC), poll_interval_seconds=0.02
                )
            )
        assert "cut short" in str(caught.value)
        assert "Signature" not in str(caught.value)
        assert len(records) < held(server, EMAIL_LIST)["count"]
        # Each attempt fetched the whole file again from the same link.
        assert control(server, "stats")["optizmo GET"] == DOWNLOAD_ATTEMPTS


def test_a_download_cut_short_once_is_fetched_again_without_duplicates(sandbox):
    served = {"n": 0}
    original = emulator(sandbox)._storage_download

    def cut_first(request, token):
        served["n"] += 1
        sandbox.sandbox.switches.truncate_downloads = served["n"] == 1
        return original(request, token)

    emulator(sandbox)._storage_download = cut_first
    records = read(client_for(sandbox), EMAIL_LIST)
    assert served["n"] == 2
    hashes = [r["hashed"] for r in records]
    assert len(hashes) == len(set(hashes))
    assert sorted(hashes) == held(sandbox, EMAIL_LIST)["hashes"]


def test_a_file_missing_a_required_column_is_a_clear_error(sandbox):
    emulator(sandbox).file_fault = "drop_column:timestamp"
    with pytest.raises(ProviderError) as caught:
        read(client_for(sandbox), EMAIL_LIST)
    message = str(caught.value)
    assert message.startswith("Optizmo GET ") and "/optizmo/storage/downloads/" in message
    assert "lacks column(s) timestamp" in message


def test_an_empty_zip_is_a_clear_error(sandbox):
    emulator(sandbox).file_fault = "empty_zip"
    with pytest.raises(ProviderError) as caught:
        read(client_for(sandbox), EMAIL_LIST)
    assert "empty ZIP" in str(caught.value)
    assert "/optizmo/storage/downloads/" in str(caught.value)


def test_columns_collection_type_domain_filter_and_window_are_honoured(sandbox):
    people = sorted((p for p in seeded() if p.has_email), key=lambda p: p.opted_out_at)
    # Start mid-day at a seeded opt-out that has an earlier one the same UTC day: the
    # day-granular dateRange brings that one back and the client must drop it.
    start = next(
        b.opted_out_at.replace(microsecond=0)
        for a, b in itertools.pairwise(people)
        if a.opted_out_at.date() == b.opted_out_at.date()
        and a.opted_out_at.replace(microsecond=0) < b.opted_out_at.replace(microsecond=0)
        and b.opted_out_at < datetime(2026, 5, 1, tzinfo=UTC)
    )
    end = datetime(2026, 6, 1, tzinfo=UTC)
    domains = "gmail.com, co.uk"

    def wanted(p: Person, collected: bool) -> bool:
        return (
            (p.index % 4 != 0) == collected
            and p.email.endswith(("@gmail.com", ".co.uk"))
            and start <= p.opted_out_at.replace(microsecond=0) < end
        )

    client = client_for(sandbox)
    collected = read(
        client,
        EMAIL_LIST,
        start,
        end,
        columns=["plain", "campaign", "ip"],
        collection_types=["collected"],
        domain_filter=domains,
    )
    assert {r["plain"] for r in collected} == {p.email for p in people if wanted(p, True)}
    assert all(
        r["campaign"] and r["affiliate"] and r["sub_affiliate"] and r["ip"] for r in collected
    )
    body = emulator(sandbox).prepare_download_bodies[-1]
    assert body["columns"] == ["plain", "campaign", "ip", "hashed", "timestamp"]
    assert body["collectionType"] == ["collected"]
    assert body["dateRange"] == {"from": start.date().isoformat(), "to": "2026-06-01"}
    assert body["domainFilter"] == domains

    imported = read(
        client,
        EMAIL_LIST,
        start,
        end,
        columns=["hashed", "campaign"],
        collection_types=["imported"],
        domain_filter=domains,
    )
    assert {r["hashed"] for r in imported} == {md5(p.email) for p in people if wanted(p, False)}
    assert all(r["plain"] is None and r["campaign"] is None for r in imported)

    # Rows of the start day before `start` came back from the API and were dropped.
    earlier_same_day = [
        p
        for p in people
        if p.opted_out_at.date() == start.date() and p.opted_out_at.replace(microsecond=0) < start
    ]
    assert earlier_same_day
    everything = read(client, EMAIL_LIST, start, end)
    assert {r["plain"] for r in everything} == {
        p.email for p in people if start <= p.opted_out_at.replace(microsecond=0) < end
    }
    assert not {p.email for p in earlier_same_day} & {r["plain"] for r in everything}


def test_bad_download_requests_are_refused(sandbox):
    url = f"{sandbox.base_urls()['optizmo']}/optout-list/prepare-download"
    auth = {"Authorization": f"Bearer {KEY}"}
    good = {"optoutListId": EMAIL_LIST, "columns": ["hashed"], "collectionType": ["collected"]}
    cases = [
        ({**good, "columns": ["email"]}, 400),
        ({**good, "collectionType": []}, 400),
        ({**good, "dateRange": {"from": "2026-02-01", "to": "2026-01-01"}}, 400),
        ({**good, "optoutListId": "0000000000000000"}, 404),
    ]
    for body, status in cases:
        answer = requests.post(url, json=body, headers=auth, timeout=10)
        assert answer.status_code == status, body
        assert "message" in answer.json()
    assert requests.post(url, json=good, timeout=10).status_code == 401
    assert requests.post(url, json=good, headers={"api_key": KEY}, timeout=10).status_code == 200
    with pytest.raises(ProviderError) as caught:
        read(client_for(sandbox, "optizmo_api_wrong_key"), EMAIL_LIST)
    assert caught.value.status == 401
    assert "optizmo_api_wrong_key" not in str(caught.value)


# -- rate limits ----------------------------------------------------------------------------
@pytest.mark.parametrize("reset", ["seconds", "epoch"])
def test_429_with_rate_limit_headers_is_retried(reset):
    limits = {"optizmo": {"per_window": 1, "window_seconds": 1.0}}
    with running_sandbox(rate_limits=limits, optizmo_reset=reset) as server:
        first, second = client_for(server), client_for(server)
        count = held(server, SMS_LIST)["count"]
        started = time.monotonic()
        assert len(read(first, SMS_LIST)) == count
        # A second client (its own pacer) is refused with 429, waits for the reset, retries.
        assert len(read(second, SMS_LIST)) == count
        assert time.monotonic() - started < 5
        assert control(server, "stats")["optizmo 429"] == second.stats.rate_limited >= 1
        assert second.stats.by_status[429] == second.stats.rate_limited
        assert second.stats.by_status[200] == 2


def test_every_api_answer_carries_the_rate_limit_headers(sandbox):
    url = f"{sandbox.base_urls()['optizmo']}/optout-list/upload-status/unknown"
    answer = requests.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert answer.status_code == 404
    for name in (wire.RATE_LIMIT, wire.RATE_REMAINING, wire.RATE_RESET):
        assert answer.headers[name].isdigit()


# -- collect --------------------------------------------------------------------------------
def test_collect_email_and_sms_land_in_their_lists(sandbox):
    client = client_for(sandbox)
    before_email, before_sms = held(sandbox, EMAIL_LIST), held(sandbox, SMS_LIST)
    client.collect(EMAIL_LIST, email="  New.Person@Example.com ")
    client.collect(SMS_LIST, sms="+1 (212) 555-0199")
    after_email, after_sms = held(sandbox, EMAIL_LIST), held(sandbox, SMS_LIST)
    assert set(after_email["emails"]) - set(before_email["emails"]) == {"new.person@example.com"}
    assert set(after_sms["phones"]) - set(before_sms["phones"]) == {"+12125550199"}
    assert after_email["count"] == before_email["count"] + 1


def test_collect_refusals(sandbox):
    client = client_for(sandbox)
    with pytest.raises(ProviderError) as grouped:
        client.collect(C.OPTIZMO_GROUPED_LIST_ID, email="a@example.com")
    assert grouped.value.status == 403
    with pytest.raises(ProviderError) as unknown:
        client.collect("ffffffffffffffff", email="a@example.com")
    assert unknown.value.status == 403
    with pytest.raises(ProviderError) as wrong_type:
        client.collect(SMS_LIST, email="a@example.com")
    assert wrong_type.value.status == 400
    with pytest.raises(ProviderError) as invalid:
        client.collect(EMAIL_LIST, email="not-an-email")
    assert invalid.value.status == 400
    with pytest.raises(ValueError):
        client.collect(EMAIL_LIST, email="a@example.com", sms="12125550199")
    url = f"{sandbox.base_urls()['optizmo-collect']}/client-optout/collect"
    both = {"optoutListId": EMAIL_LIST, "email": "a@example.com", "sms": "12125550199"}
    answer = requests.post(url, json=both, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert answer.status_code == 400


def test_collected_opt_outs_show_after_the_collect_delay():
    with running_sandbox(collect_delay_seconds=120) as server:
        client = client_for(server)
        before = held(server, EMAIL_LIST)["count"]
        client.collect(EMAIL_LIST, email="late@example.com")
        assert held(server, EMAIL_LIST)["count"] == before
        control(server, "clock", {"advance_seconds": 121})
        assert "late@example.com" in held(server, EMAIL_LIST)["emails"]


# -- bulk upload ----------------------------------------------------------------------------
def test_bulk_upload_counts_added_present_and_malformed(sandbox):
    existing = held(sandbox, EMAIL_LIST)["emails"][:3]
    new_emails = [f"bulk.{n}@example.com" for n in range(5)]
    new_hash = md5("hash.only@example.com")
    malformed = ["not an email", "12345"]
    lines = [e.upper() for e in new_emails] + existing + [new_hash] + malformed + ["", "  "]
    result = client_for(sandbox).bulk_upload(EMAIL_LIST, lines, poll_interval_seconds=0.02)

    assert result.written == 6
    assert result.already_present == 3
    assert sorted(a for a, _ in result.rejected) == sorted(malformed)
    after = held(sandbox, EMAIL_LIST)
    assert set(new_emails) <= set(after["emails"])
    assert new_hash in after["hashes"] and "hash.only@example.com" not in after["emails"]
    size = sum(len(v.lower()) + 1 for v in [*new_emails, *existing, new_hash, *malformed])
    (put,) = emulator(sandbox).upload_puts
    assert put["content_length"] == str(size) and put["body_bytes"] == size
    assert put["credential"] is False
    assert emulator(sandbox).storage_credential_headers == 0
    assert list(control(sandbox, "inspect")["optizmo"]["imports"].values()) == ["success"]


def test_bulk_upload_waits_while_the_import_runs():
    with running_sandbox(upload_processing_seconds=0.4) as server:
        started = time.monotonic()
        result = client_for(server).bulk_upload(
            EMAIL_LIST, ["slow@example.com"], poll_interval_seconds=0.05
        )
        assert time.monotonic() - started >= 0.4
        assert (result.written, result.already_present, result.rejected) == (1, 0, [])


@pytest.mark.parametrize("outcome", ["failed", "removed"])
def test_failed_and_removed_imports_raise_naming_the_reference(outcome):
    with running_sandbox(upload_outcome=outcome) as server:
        before = held(server, EMAIL_LIST)
        with pytest.raises(OptizmoImportError) as caught:
            client_for(server).bulk_upload(
                EMAIL_LIST, ["x@example.com"], poll_interval_seconds=0.02
            )
        ((reference, status),) = control(server, "inspect")["optizmo"]["imports"].items()
        assert status == outcome
        assert caught.value.reference == reference
        assert f"import {reference} ended {outcome}" in str(caught.value)
        assert held(server, EMAIL_LIST) == before


def test_an_expired_upload_url_is_prepared_again_once(sandbox):
    emulator(sandbox).expire_next_uploads = 1
    result = client_for(sandbox).bulk_upload(
        EMAIL_LIST, ["retry@example.com"], poll_interval_seconds=0.02
    )
    assert result.written == 1
    imports = control(sandbox, "inspect")["optizmo"]["imports"]
    assert sorted(imports.values()) == ["running", "success"]  # the first was never uploaded
    assert [p["body_bytes"] for p in emulator(sandbox).upload_puts] == [18, 18]


def test_an_upload_url_expired_twice_fails_clearly():
    with running_sandbox(upload_url_ttl_seconds=0) as server:
        with pytest.raises(ProviderError) as caught:
            client_for(server).bulk_upload(EMAIL_LIST, ["a@example.com"])
        message = str(caught.value)
        assert caught.value.status == 403 and "refused twice" in message
        assert "/optizmo/storage/uploads/" in message and "Signature" not in message
        assert len(emulator(server).upload_puts) == 2


def test_upload_limits_and_ownership(sandbox):
    base = sandbox.base_urls()["optizmo"]
    auth = {"Authorization": f"Bearer {KEY}"}
    too_big = {"optoutListId": EMAIL_LIST, "fileContentLength": wire.MAX_UPLOAD_BYTES + 1}
    assert (
        requests.post(
            f"{base}/optout-list/prepare-upload", json=too_big, headers=auth, timeout=10
        ).status_code
        == 400
    )
    answer = requests.post(
        f"{base}/optout-list/prepare-upload",
        headers=auth,
        timeout=10,
        json={"optoutListId": EMAIL_LIST, "fileContentLength": 4},
    ).json()
    # A body whose length differs from fileContentLength is refused.
    assert requests.put(answer["uploadUrl"], data=b"a@b.co\n", timeout=10).status_code == 400
    status_url = f"{base}/optout-list/upload-status/{answer['importReference'].upper()}"
    assert requests.get(status_url, headers=auth, timeout=10).json() == {"status": "running"}
    other = {"Authorization": f"Bearer {C.OPTIZMO_OTHER_API_KEY}"}
    assert requests.get(status_url, headers=other, timeout=10).status_code == 403


# -- write_optouts --------------------------------------------------------------------------
def test_write_optouts_switches_between_collect_and_bulk(sandbox):
    client = client_for(sandbox)
    emails = [f"w{n}@example.com" for n in range(3)]

    def calls() -> tuple[int, int]:
        stats = control(sandbox, "stats")
        imports = control(sandbox, "inspect")["optizmo"]["imports"]
        return stats.get("optizmo-collect POST", 0), len(imports)

    result = client.write_optouts(
        EMAIL_LIST, emails, channel="email", bulk_threshold=3, poll_interval_seconds=0.02
    )
    assert (result.written, calls()) == (3, (3, 0))
    more = [f"v{n}@example.com" for n in range(4)]
    result = client.write_optouts(
        EMAIL_LIST, more, channel="email", bulk_threshold=3, poll_interval_seconds=0.02
    )
    assert (result.written, calls()) == (4, (3, 1))
    # MD5 hashes always go in bulk, even below the threshold; emails still via collect.
    result = client.write_optouts(
        EMAIL_LIST,
        [md5("h@example.com"), "c@example.com"],
        channel="email",
        poll_interval_seconds=0.02,
    )
    assert (result.written, calls()) == (2, (4, 2))
    assert set(emails + more) <= set(held(sandbox, EMAIL_LIST)["emails"])
    # SMS: collect with digits; an invalid number is rejected, the rest written.
    result = client.write_optouts(
        SMS_LIST, ["+1 212 555 0123", "+12125550124", "12"], channel="sms"
    )
    assert result.written == 2 and [a for a, _ in result.rejected] == ["12"]
    assert {"+12125550123", "+12125550124"} <= set(held(sandbox, SMS_LIST)["phones"])


# -- the tap, as a process ------------------------------------------------------------------
def _bookmarks(state: dict) -> dict[str, str]:
    partitions = state["bookmarks"]["optizmo_optouts"]["partitions"]
    return {p["context"]["optout_list_id"]: p["replication_key_value"] for p in partitions}


def test_incremental_tap_runs_return_only_new_and_bookmark_equal_rows(sandbox, tmp_path):
    config = tap_config(sandbox, providers=("optizmo",))
    first = run_cli("tap-optouts", config, tmp_path)
    assert first.returncode == 0, first.stderr
    records = first.records("optizmo_optouts")
    assert len(records) == held(sandbox, EMAIL_LIST)["count"] + held(sandbox, SMS_LIST)["count"]
    bookmarks = _bookmarks(first.last_state)
    assert set(bookmarks) == {EMAIL_LIST, SMS_LIST}
    for list_id, value in bookmarks.items():
        assert value == max(r["timestamp"] for r in records if r["optout_list_id"] == list_id)

    mark = datetime.fromisoformat(bookmarks[EMAIL_LIST])
    recent = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    added = [
        {"list_id": EMAIL_LIST, "email": "tie@example.com", "timestamp": to_rfc3339(mark)},
        {"list_id": EMAIL_LIST, "email": "new1@example.com", "timestamp": to_rfc3339(recent)},
        {"list_id": SMS_LIST, "sms": "12125550177", "timestamp": to_rfc3339(recent)},
        # Arrived late with an earlier time on the bookmark's day: dropped (lookback is 0).
        {
            "list_id": EMAIL_LIST,
            "email": "late@example.com",
            "timestamp": to_rfc3339(mark.replace(hour=0, minute=0, second=1)),
        },
    ]
    assert control(sandbox, "optouts", {"provider": "optizmo", "records": added}) == {"added": 4}
    # Stamped by the sandbox clock 2 minutes ahead: after the next run's sync start.
    control(sandbox, "clock", {"advance_seconds": 120})
    future = control(
        sandbox,
        "optouts",
        {
            "provider": "optizmo",
            "records": [{"list_id": EMAIL_LIST, "email": "future@example.com"}],
        },
    )
    assert future == {"added": 1}

    second = run_cli("tap-optouts", config, tmp_path, state=first.last_state)
    assert second.returncode == 0, second.stderr
    got = second.records("optizmo_optouts")
    expected = {
        (r["optout_list_id"], r["hashed"])
        for r in records
        if r["timestamp"] == bookmarks[r["optout_list_id"]]
    }
    expected |= {
        (EMAIL_LIST, md5("tie@example.com")),
        (EMAIL_LIST, md5("new1@example.com")),
        (SMS_LIST, md5("12125550177")),
    }
    assert {(r["optout_list_id"], r["hashed"]) for r in got} == expected
    assert len(got) == len(expected)
    # The second run asked from the bookmark's UTC date; the server sent the late row.
    body = emulator(sandbox).prepare_download_bodies[-2:]
    assert {b["optoutListId"]: b["dateRange"]["from"] for b in body} == {
        k: v[:10] for k, v in bookmarks.items()
    }
    assert _bookmarks(second.last_state)[EMAIL_LIST] == to_rfc3339(recent)


@pytest.mark.parametrize("field", ["url", "download_link", "result"])
def test_the_download_link_is_found_under_other_answer_fields(field):
    with running_sandbox(optizmo_download_field=field) as server:
        assert len(read(client_for(server), SMS_LIST)) == held(server, SMS_LIST)["count"]


def test_find_download_link_order():
    assert wire.find_download_link({"url": "https://a/1", "downloadUrl": "https://b/2"}) == (
        "https://b/2"
    )
    assert wire.find_download_link({"data": {"file": ["x", "https://c/3"]}}) == "https://c/3"
    assert wire.find_download_link({"downloadUrl": "ftp://nope"}) is None


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)))
def test_file_timestamps_read_exactly_as_to_rfc3339_writes_them(moment):
    moment = moment.replace(microsecond=0)
    expected = to_rfc3339(moment.replace(tzinfo=UTC))
    for raw in (moment.strftime("%Y-%m-%d %H:%M:%S"), expected, moment.isoformat() + "+00:00"):
        assert file_timestamp(raw, "https://storage.example/x") == expected
    with pytest.raises(ProviderError):
        file_timestamp("2025-W43-1T17:15:29x", "https://storage.example/x")
