"""SlickText (legacy API and new API): wire rules, the emulators, the clients and the tap,
against the sandbox as a real HTTP server."""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from optouts_providers.http import ProviderError, RetryPolicy
from optouts_providers.slicktext import client_from_config, wire
from optouts_providers.slicktext.client import SlickTextLegacyClient, SlickTextV2Client
from optouts_providers.timeutil import (
    PACIFIC,
    is_ambiguous_pacific,
    pacific_to_utc,
    to_rfc3339,
    utc_to_pacific,
)
from optouts_sandbox import credentials as C
from optouts_sandbox import seed
from optouts_sandbox.server import SandboxHTTPServer
from optouts_sandbox.slicktext import SlickTextLegacyEmulator, SlickTextV2Emulator
from tests.sandbox_support import (
    control,
    run_cli,
    slicktext_v2_settings,
    tap_config,
)

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
FAST_RETRY = RetryPolicy(max_tries=8, base_seconds=0.01, cap_seconds=0.05, max_wait_seconds=60)
APIS = ("slicktext", "slicktext-v2")
STREAM = "slicktext_optouts"
# 2026-11-01: 01:00-02:00 Pacific happens twice, 08:00-09:00Z (PDT) then 09:00-10:00Z (PST).
REPEAT = datetime(2026, 11, 1, 8, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def legacy(server: SandboxHTTPServer, **kw: Any) -> SlickTextLegacyClient:
    keys = {"public_key": C.SLICKTEXT_PUBLIC_KEY, "private_key": C.SLICKTEXT_PRIVATE_KEY}
    keys.update({k: kw.pop(k) for k in list(kw) if k in keys})
    return SlickTextLegacyClient(
        server.base_urls()["slicktext"], **keys, **{"retry": FAST_RETRY, **kw}
    )


def v2(server: SandboxHTTPServer, **kw: Any) -> SlickTextV2Client:
    kw = {"retry": FAST_RETRY, "requests_per_second": 1000, **kw}
    api_key = kw.pop("api_key", C.SLICKTEXT_V2_API_KEY)
    brand_id = kw.pop("brand_id", C.SLICKTEXT_V2_BRAND_ID)
    return SlickTextV2Client(server.base_urls()["slicktext-v2"], api_key, brand_id, **kw)


def client_for(server: SandboxHTTPServer, api: str, **kw: Any) -> Any:
    return legacy(server, **kw) if api == "slicktext" else v2(server, **kw)


def legacy_em(server: SandboxHTTPServer) -> SlickTextLegacyEmulator:
    em = server.sandbox.emulators["slicktext"]
    assert isinstance(em, SlickTextLegacyEmulator)
    return em


def v2_em(server: SandboxHTTPServer) -> SlickTextV2Emulator:
    em = server.sandbox.emulators["slicktext-v2"]
    assert isinstance(em, SlickTextV2Emulator)
    return em


def true_instants(server: SandboxHTTPServer, api: str) -> dict[str, datetime]:
    """Record id -> the instant the opt-out really happened, for every opt-out held."""
    if api == "slicktext":
        em = legacy_em(server)
        with em.lock:
            return {i: em.instants[i] for i in em.optouts}
    em2 = v2_em(server)
    with em2.lock:
        return {
            str(cid): em2.instants[cid]
            for cid, c in em2.contacts.items()
            if c["opt_in_status"] in wire.OPTED_OUT_STATUSES
        }


def inspect(server: SandboxHTTPServer, api: str) -> dict[str, Any]:
    return control(server, "inspect")[api]


def stats(server: SandboxHTTPServer) -> dict[str, int]:
    return control(server, "stats")


def fresh_numbers(server: SandboxHTTPServer, count: int, exchange: int = 777) -> list[str]:
    """Valid E.164 numbers that neither SlickText emulator knows."""
    known = set(legacy_em(server).by_number) | set(legacy_em(server).contacts)
    known |= set(v2_em(server).by_number)
    numbers = [f"+1415{exchange}{i:04d}" for i in range(count * 2)]
    return [n for n in numbers if n not in known][:count]


def second_pass(instant: datetime) -> bool:
    """In the repeated hour's second (PST) pass."""
    return is_ambiguous_pacific(instant) and instant.astimezone(PACIFIC).utcoffset() == timedelta(
        hours=-8
    )


def run_tap(config: dict[str, Any], state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The tap in-process; its Singer messages."""
    from tap_optouts.tap import TapOptouts

    buffer = io.BytesIO()
    out = io.TextIOWrapper(buffer, encoding="utf-8")
    with contextlib.redirect_stdout(out):
        tap = TapOptouts(config=config, state=state, parse_env_config=False)
        tap.sync_all()
        out.flush()
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def records_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == STREAM]


def bookmark_state(value: str) -> dict[str, Any]:
    return {
        "bookmarks": {STREAM: {"replication_key": "optOutDate", "replication_key_value": value}}
    }


def config_for(server: SandboxHTTPServer, api: str, **settings: Any) -> dict[str, Any]:
    config = tap_config(server, providers=("slicktext",), slicktext=settings)
    if api == "slicktext-v2":  # the new API's settings alone: both key sets are refused
        config["slicktext"] = {**slicktext_v2_settings(server), **settings}
    return config


# -- wire: Pacific bounds and the repeated hour --------------------------------------------
@pytest.mark.parametrize(
    ("start", "sent"),
    [
        (datetime(2026, 7, 4, 19, 0, 0, 999999, tzinfo=UTC), "2026-07-04 12:00:00"),
        (datetime(2026, 1, 15, 20, 0, 0, tzinfo=UTC), "2026-01-15 12:00:00"),
        # 01:30 PDT and 01:30 PST (first and second pass): one hour earlier, 00:30.
        (datetime(2026, 11, 1, 8, 30, tzinfo=UTC), "2026-11-01 00:30:00"),
        (datetime(2026, 11, 1, 9, 30, tzinfo=UTC), "2026-11-01 00:30:00"),
        (datetime(2026, 11, 1, 7, 59, 59, tzinfo=UTC), "2026-11-01 00:59:59"),
        (datetime(2026, 11, 1, 10, 0, tzinfo=UTC), "2026-11-01 02:00:00"),
    ],
)
def test_lower_bound_is_floored_and_moved_back_in_the_repeated_hour(start, sent):
    assert wire.lower_bound(start) == sent


@pytest.mark.parametrize(
    ("end", "sent"),
    [
        (datetime(2026, 7, 4, 19, 0, 0, 1, tzinfo=UTC), "2026-07-04 12:00:01"),
        (datetime(2026, 7, 4, 19, 0, 0, tzinfo=UTC), "2026-07-04 12:00:00"),
        # 01:10 PST: rows of 01:10-01:59 PDT are older; the bound must reach 02:10.
        (datetime(2026, 11, 1, 9, 10, tzinfo=UTC), "2026-11-01 02:10:00"),
    ],
)
def test_upper_bound_is_ceiled_and_covers_the_first_pass(end, sent):
    assert wire.upper_bound(end) == sent


def test_ambiguous_wall_time_maps_to_first_pass_unless_only_second_is_in_window():
    wall = "2026-11-01 01:20:00"
    first, second = REPEAT + timedelta(minutes=20), REPEAT + timedelta(minutes=80)
    assert wire.pacific_instants(wall) == (first, second)
    assert wire.pacific_in_window(wall, EPOCH, utcnow()) == first
    assert wire.pacific_in_window(wall, REPEAT + timedelta(minutes=30), utcnow()) == second
    assert wire.pacific_in_window("2026-07-04 12:00:00", EPOCH, utcnow()) == datetime(
        2026, 7, 4, 19, tzinfo=UTC
    )


def test_client_from_config_picks_the_api_and_caps_the_page_size():
    legacy_settings = {"public_key": "pub_x1234", "private_key": "priv_x1234", "page_size": 50000}
    client = client_from_config(legacy_settings, {})
    assert isinstance(client, SlickTextLegacyClient)
    assert client.page_size == wire.MAX_PAGE_SIZE
    assert client.session.base_url == "https://api.slicktext.com/v1/"
    assert client.optout_action == "OPTOUT"
    new = client_from_config({"api_key": "key_abcd1234", "requests_per_second": 4}, {})
    assert isinstance(new, SlickTextV2Client)
    assert new.session.base_url == "https://dev.slicktext.com/v1/"
    assert new.session.pacer.windows == [(4, 1.0)]  # 4 a second, counted from the answers
    assert client_from_config({"api_key": "key_abcd1234"}, {}).page_size == 10000
    with pytest.raises(ValueError, match="private_key"):
        client_from_config({"public_key": "pub_x1234"}, {})
    with pytest.raises(ValueError, match="api_key"):
        client_from_config({}, {})


# -- the legacy emulator ---------------------------------------------------------------
def test_legacy_emulator_contract(sandbox):
    base = sandbox.base_urls()["slicktext"]
    auth = (C.SLICKTEXT_PUBLIC_KEY, C.SLICKTEXT_PRIVATE_KEY)
    body = requests.get(f"{base}/optouts", auth=auth, timeout=10).json()
    assert body["meta"] == {
        "limit": 20,
        "offset": 0,
        "total": inspect(sandbox, "slicktext")["count"],
    }
    assert len(body["optOuts"]) == 20 and body["links"]["self"].startswith(base)
    item = body["optOuts"][0]
    assert item["id"].isdigit() and item["textword"].isdigit()
    assert isinstance(item["zipCode"], int)
    keys = [(i["optOutDate"], int(i["id"])) for i in body["optOuts"]]
    assert keys == sorted(keys)
    # exact, case-sensitive field filters
    city = item["city"]
    found = requests.get(
        f"{base}/optouts", params={"city": city, "limit": 10000}, auth=auth, timeout=10
    ).json()
    expected = sum(1 for i in legacy_em(sandbox).optouts.values() if i["city"] == city)
    assert found["meta"]["total"] == expected > 0
    lower = requests.get(f"{base}/optouts", params={"city": city.lower()}, auth=auth, timeout=10)
    assert lower.json()["meta"]["total"] == 0
    # inclusive Pacific wall-time bounds
    wall = item["optOutDate"]
    both = requests.get(
        f"{base}/optouts",
        params={"optedOutAfter": wall, "optedOutBefore": wall},
        auth=auth,
        timeout=10,
    ).json()
    assert {i["id"] for i in both["optOuts"]} == {
        i["id"] for i in legacy_em(sandbox).optouts.values() if i["optOutDate"] == wall
    }
    for bad in ({"optedOutAfter": "2026-11-01T01:00:00Z"}, {"limit": 10001}, {"nope": "1"}):
        answer = requests.get(f"{base}/optouts", params=bad, auth=auth, timeout=10)
        assert answer.status_code == 400, bad
        assert answer.json()["message"]
    assert (
        "10000"
        in requests.get(f"{base}/optouts", params={"limit": 10001}, auth=auth, timeout=10).json()[
            "message"
        ]
    )
    one = requests.get(f"{base}/optouts/{item['id']}", auth=auth, timeout=10).json()
    assert one["optOuts"] == [item]
    assert requests.get(f"{base}/optouts/1", auth=auth, timeout=10).status_code == 404
    # credentials in the URL are not recognised; JSON bodies are refused
    keyed = requests.get(
        f"{base}/optouts",
        params={"public_key": C.SLICKTEXT_PUBLIC_KEY, "private_key": C.SLICKTEXT_PRIVATE_KEY},
        timeout=10,
    )
    assert keyed.status_code == 401 and keyed.json()["message"]
    as_json = requests.post(
        f"{base}/contacts",
        json={"action": "OPTOUT", "number": "+14157770001"},
        auth=auth,
        timeout=10,
    )
    assert as_json.status_code == 400 and "form" in as_json.json()["message"]


# -- legacy reads ----------------------------------------------------------------------
def test_legacy_read_pages_to_the_last_row(sandbox):
    expected = inspect(sandbox, "slicktext")
    people = [p for p in seed.at_provider(seed.generate(300), "slicktext") if p.has_phone]
    assert expected["phones"] == sorted(p.phone for p in people)
    client = legacy(sandbox, page_size=20)
    records = list(client.iter_optouts(EPOCH, utcnow()))
    assert len(records) == expected["count"] == len({r["id"] for r in records})
    assert sorted(r["number"] for r in records) == expected["phones"]
    assert sorted({r["email"] for r in records if r["email"]}) == expected["emails"]
    # no empty trailing request: paging stops at offset >= meta.total
    assert client.stats.requests == math.ceil(expected["count"] / 20)
    assert all(len(r["optOutDate"]) == 27 and r["optOutDate"].endswith("Z") for r in records)
    exact = legacy(sandbox, page_size=expected["count"])
    assert len(list(exact.iter_optouts(EPOCH, utcnow()))) == expected["count"]
    assert exact.stats.requests == 1


def test_legacy_read_past_the_10000_page_cap(sandbox):
    bulk = [
        {
            "number": f"+1919{200 + i // 10000:03d}{i % 10000:04d}",
            "optOutDate": f"2026-0{1 + i % 9}-1{i % 10} 10:{i % 60:02d}:00",
        }
        for i in range(10_000)
    ]
    assert control(sandbox, "optouts", {"provider": "slicktext", "records": bulk})["added"] > 9900
    count = inspect(sandbox, "slicktext")["count"]
    assert count > wire.MAX_PAGE_SIZE
    client = legacy(sandbox, page_size=50000)  # capped at 10,000
    records = list(client.iter_optouts(EPOCH, utcnow()))
    assert len({r["id"] for r in records}) == len(records) == count
    assert {r["number"] for r in records} == set(inspect(sandbox, "slicktext")["phones"])
    assert client.stats.requests == math.ceil(count / wire.MAX_PAGE_SIZE) == 2
    assert stats(sandbox)["slicktext GET"] == 2


def test_legacy_window_is_half_open_although_the_api_is_inclusive(sandbox):
    truth = true_instants(sandbox, "slicktext")
    walls = {i: legacy_em(sandbox).optouts[i]["optOutDate"] for i in truth}
    mapped = {i: pacific_to_utc(w) for i, w in walls.items()}
    ordered = sorted(set(mapped.values()))
    start = ordered[20] + timedelta(milliseconds=500)  # the row at ordered[20] is too old
    end = ordered[90]  # exclusive: rows at exactly `end` belong to the next run
    records = list(legacy(sandbox, page_size=7).iter_optouts(start, end))
    assert {r["id"] for r in records} == {i for i, t in mapped.items() if start <= t < end}
    assert not any(r["optOutDate"] == to_rfc3339(end) for r in records)


@pytest.mark.parametrize("api", APIS)
def test_full_read_converts_pacific_and_puts_the_repeated_hour_in_its_first_pass(sandbox, api):
    summer, winter = fresh_numbers(sandbox, 2)
    key = "number" if api == "slicktext" else "mobile_number"
    control(
        sandbox,
        "optouts",
        {
            "provider": api,
            "records": [
                {key: summer, "optOutDate": "2026-07-04 12:00:00"},
                {key: winter, "optOutDate": "2026-01-15 12:00:00"},
            ],
        },
    )
    records = list(client_for(sandbox, api, page_size=30).iter_optouts(EPOCH, utcnow()))
    by_number = {r["number"]: r["optOutDate"] for r in records}
    assert by_number[summer] == "2026-07-04T19:00:00.000000Z"  # PDT, UTC-7
    assert by_number[winter] == "2026-01-15T20:00:00.000000Z"  # PST, UTC-8
    truth = true_instants(sandbox, api)
    assert {r["id"] for r in records} == set(truth)
    passes = {"first": 0, "second": 0}
    for record in records:
        actual = truth[record["id"]].replace(microsecond=0)
        if second_pass(actual):
            # Only a naive wall time reaches the client: slicktext.md, 'Repeated hour', takes the
            # first pass.
            passes["second"] += 1
            assert record["optOutDate"] == to_rfc3339(actual - timedelta(hours=1))
        else:
            passes["first"] += is_ambiguous_pacific(actual)
            assert record["optOutDate"] == to_rfc3339(actual)
    assert passes["first"] >= 2 and passes["second"] >= 2


@pytest.mark.parametrize("api", APIS)
def test_incremental_run_with_bookmark_inside_the_repeated_hour_misses_nothing(sandbox, api):
    bookmark = REPEAT + timedelta(minutes=30)  # 01:30 PDT, first pass
    messages = run_tap(config_for(sandbox, api), bookmark_state(to_rfc3339(bookmark)))
    records = records_of(messages)
    truth = {i: t.replace(microsecond=0) for i, t in true_instants(sandbox, api).items()}
    got = {r["id"]: r["optOutDate"] for r in records}
    due = {i for i, t in truth.items() if t >= bookmark}
    assert due <= set(got), f"missed {sorted(due - set(got))}"
    # Anything more can only be a repeated-hour row read again.
    assert all(is_ambiguous_pacific(truth[i]) for i in set(got) - due)
    # Second-pass rows whose wall time reads as before the bookmark take their real instant;
    # the others read as the first pass (slicktext.md, 'Repeated hour').
    later = {i: t for i, t in truth.items() if t >= bookmark and second_pass(t)}
    real = {i for i, t in later.items() if t - timedelta(hours=1) < bookmark}
    assert real and set(later) - real
    for i, t in later.items():
        assert got[i] == to_rfc3339(t if i in real else t - timedelta(hours=1))


def test_incremental_runs_of_the_tap_process(sandbox, tmp_path):
    config = config_for(sandbox, "slicktext", page_size=40)
    first = run_cli("tap-optouts", config, tmp_path)
    assert first.returncode == 0, first.stderr
    ids = {r["id"] for r in first.records(STREAM)}
    assert ids == set(legacy_em(sandbox).optouts)
    bookmark = first.last_state["bookmarks"][STREAM]["replication_key_value"]
    assert bookmark == max(r["optOutDate"] for r in first.records(STREAM))
    new_now = fresh_numbers(sandbox, 3)
    late, future, mid = fresh_numbers(sandbox, 3, exchange=778)
    between = utc_to_pacific(datetime.fromisoformat(bookmark) + timedelta(days=2))
    control(
        sandbox,
        "optouts",
        {
            "provider": "slicktext",
            "records": [
                *({"number": n} for n in new_now),
                {"number": mid, "optOutDate": between},
                {"number": late, "optOutDate": "2026-01-02 03:04:05"},  # older than the bookmark
            ],
        },
    )
    control(sandbox, "clock", {"advance_seconds": 86400})
    control(sandbox, "optouts", {"provider": "slicktext", "records": [{"number": future}]})
    second = run_cli("tap-optouts", config, tmp_path, state=first.last_state)
    assert second.returncode == 0, second.stderr
    got = {r["number"]: r for r in second.records(STREAM)}
    new = {*new_now, mid}
    assert new <= set(got)
    boundary = {r["number"] for r in first.records(STREAM) if r["optOutDate"] == bookmark}
    assert set(got) - new <= boundary
    assert future not in got and late not in got
    assert second.last_state["bookmarks"][STREAM]["replication_key_value"] == max(
        r["optOutDate"] for r in got.values()
    )


@pytest.mark.parametrize("api", APIS)
def test_rows_added_while_paging_are_not_lost(sandbox, api):
    key = "number" if api == "slicktext" else "mobile_number"
    end = utcnow()
    before = set(true_instants(sandbox, api))
    client = client_for(sandbox, api, page_size=15)
    rows = client.iter_optouts(EPOCH, end)
    seen = [next(rows)["id"] for _ in range(15)]
    if api == "slicktext":  # opt-outs dated in the middle of the sort order
        middle = fresh_numbers(sandbox, 5)
        records = [{key: n, "optOutDate": "2026-03-01 10:00:00"} for n in middle]
    else:  # subscribed contacts in the middle of the contact order opt out now
        middle = sorted(
            c["mobile_number"]
            for c in v2_em(sandbox).contacts.values()
            if c["opt_in_status"] == "subscribed"
        )[5:10]
        records = [{key: n} for n in middle]
    assert control(sandbox, "optouts", {"provider": api, "records": records})["added"] == 5
    seen += [r["id"] for r in rows]
    assert before <= set(seen), f"lost {sorted(before - set(seen))}"
    assert client.stats.requests > 2


# -- new API reads ---------------------------------------------------------------------
def test_v2_emulator_contract(sandbox):
    base = sandbox.base_urls()["slicktext-v2"]
    control(
        sandbox, "config", {"rate_limits": {"slicktext-v2": {"per_second": 100, "per_window": 480}}}
    )
    auth = {"Authorization": f"Bearer {C.SLICKTEXT_V2_API_KEY}"}
    brand = requests.get(f"{base}/brands", headers=auth, timeout=10)
    assert brand.json()["brand_id"] == C.SLICKTEXT_V2_BRAND_ID
    assert brand.headers["x-RateLimit"] == "480"
    assert int(brand.headers["x-RateLimit-Remaining"]) == 479
    assert 0 < int(brand.headers["x-RateLimit-Reset"]) <= 60
    unauth = requests.get(f"{base}/brands", timeout=10)
    assert unauth.status_code == 401 and "x-RateLimit" not in unauth.headers
    contacts = f"{base}/brands/{C.SLICKTEXT_V2_BRAND_ID}/contacts"
    other = requests.get(f"{base}/brands/1/contacts", headers=auth, timeout=10)
    assert other.status_code == 404
    first = requests.get(contacts, headers=auth, timeout=10).json()
    assert len(first["data"]) == 50 and first["pagingData"]["hasMore"] is True
    assert first["pagingData"]["currentPage"] == 1 and first["pagingData"]["prevPage"] is None
    paged = requests.get(
        contacts, params={"page": 2, "pageSize": 50}, headers=auth, timeout=10
    ).json()
    offset = requests.get(
        contacts, params={"limit": 50, "offset": 50}, headers=auth, timeout=10
    ).json()
    assert paged["data"] == offset["data"] and paged["pagingData"]["currentPage"] == 2
    assert (
        requests.get(contacts, params={"limit": 10001}, headers=auth, timeout=10).status_code == 400
    )
    target = next(c for c in first["data"] if c["opt_in_status"] == "subscribed")
    one = requests.get(
        contacts, params={"mobile_number": target["mobile_number"]}, headers=auth, timeout=10
    ).json()
    assert one["data"] == [target] and one["pagingData"]["hasMore"] is False
    url = f"{contacts}/{target['contact_id']}"
    bad = requests.put(url, json={"opt_in_status": "gone"}, headers=auth, timeout=10)
    assert bad.status_code == 400 and "opt_in_status" in bad.json()["message"]
    control(sandbox, "clock", {"advance_seconds": 3600})
    changed = requests.put(url, json={"opt_in_status": "blocked"}, headers=auth, timeout=10).json()
    assert changed["opt_in_status"] == "blocked" and changed["first_name"] == target["first_name"]
    now_wall = utc_to_pacific(sandbox.sandbox.clock.now())
    assert abs(
        pacific_to_utc(changed["last_opt_in_status_change"]) - pacific_to_utc(now_wall)
    ) <= timedelta(seconds=5)
    assert requests.get(url, headers=auth, timeout=10).json() == changed
    for body, status in (
        ({"first_name": "x"}, 400),
        ({"mobile_number": "4157770001"}, 400),
        ({"mobile_number": "+1415"}, 400),
        ({"mobile_number": target["mobile_number"]}, 409),
    ):
        answer = requests.post(contacts, json=body, headers=auth, timeout=10)
        assert answer.status_code == status, body
        assert answer.json()["message"]
    created = requests.post(
        contacts, json={"mobile_number": "+14157770001"}, headers=auth, timeout=10
    )
    assert created.status_code == 201 and created.json()["opt_in_status"] == "not subscribed"


def test_v2_reads_unsubscribed_and_blocked_only(sandbox):
    view = inspect(sandbox, "slicktext-v2")
    contacts = list(v2_em(sandbox).contacts.values())
    assert view["subscribed_count"] > 20
    assert view["phones"] == inspect(sandbox, "slicktext")["phones"]
    client = v2(sandbox, brand_id=None, page_size=25)
    records = list(client.iter_optouts(EPOCH, utcnow()))
    assert sorted(r["number"] for r in records) == view["phones"]
    assert len(records) == view["count"] == len({r["id"] for r in records})
    statuses = {r["optInStatus"] for r in records}
    assert statuses == {"unsubscribed", "blocked"}
    assert sum(r["optInStatus"] == "blocked" for r in records) == view["blocked_count"]
    others = {
        c["mobile_number"] for c in contacts if c["opt_in_status"] not in wire.OPTED_OUT_STATUSES
    }
    assert {"subscribed", "not subscribed"} <= {c["opt_in_status"] for c in contacts}
    assert not others & {r["number"] for r in records}
    blocked = view["blocked_count"]
    unsubscribed = view["count"] - blocked
    # GET brands once (no brand_id set), then each status until a short page
    pages = max(1, math.ceil(unsubscribed / 25)) + max(1, math.ceil(blocked / 25))
    assert client.stats.requests == 1 + pages
    assert stats(sandbox)["slicktext-v2 GET"] == 1 + pages


# -- failures --------------------------------------------------------------------------
def test_auth_failure_names_the_call_but_never_the_secret(sandbox, tmp_path):
    secret = "wrong-private-key-5b7c9e"
    with pytest.raises(ProviderError) as caught:
        list(legacy(sandbox, private_key=secret).iter_optouts(EPOCH, utcnow()))
    message = str(caught.value)
    assert caught.value.status == 401
    assert "SlickText GET" in message and "/optouts" in message and "401" in message
    assert secret not in message and C.SLICKTEXT_PUBLIC_KEY not in message
    api_key = "wrong-v2-api-key-77aa"
    with pytest.raises(ProviderError) as caught_v2:
        list(v2(sandbox, api_key=api_key).iter_optouts(EPOCH, utcnow()))
    assert caught_v2.value.status == 401 and "SlickText (new API)" in str(caught_v2.value)
    assert api_key not in str(caught_v2.value)
    run = run_cli("tap-optouts", config_for(sandbox, "slicktext", private_key=secret), tmp_path)
    assert run.returncode != 0
    assert "401" in run.stderr and "SlickText" in run.stderr
    assert secret not in run.stderr and secret not in json.dumps(run.messages)
    assert C.SLICKTEXT_PUBLIC_KEY not in run.stderr


def test_429_with_retry_after_is_waited_out_and_retried(sandbox):
    control(sandbox, "config", {"rate_limits": {"slicktext": {"per_second": 3}}})
    client = legacy(sandbox, page_size=30, retry=RetryPolicy(max_tries=10, max_wait_seconds=60))
    started = time.monotonic()
    records = list(client.iter_optouts(EPOCH, utcnow()))
    assert len(records) == inspect(sandbox, "slicktext")["count"]
    throttled = stats(sandbox).get("slicktext 429", 0)
    assert throttled >= 1 and client.stats.rate_limited == throttled
    # Retry-After is at least one second: each 429 cost at least that
    assert time.monotonic() - started >= 1.0
    assert client.stats.throttled_seconds >= throttled * 1.0


# -- writes ----------------------------------------------------------------------------
def test_legacy_write_posts_one_form_action_per_number(sandbox):
    em = legacy_em(sandbox)
    subscribed = sorted(em.contacts)[:3]
    already = sorted(em.by_number)[:2]
    new = fresh_numbers(sandbox, 2)
    before = inspect(sandbox, "slicktext")
    result = legacy(sandbox).optout_numbers([*subscribed, *already, *new, new[0]])
    assert (result.written, result.already_present, result.rejected) == (5, 3, [])
    assert stats(sandbox)["slicktext POST"] == 7  # one per distinct number
    after = inspect(sandbox, "slicktext")
    assert after["count"] == before["count"] + 5
    assert set(after["phones"]) == set(before["phones"]) | {*subscribed, *new}
    assert after["subscribed_count"] == before["subscribed_count"] - 3
    moved = em.optouts[em.by_number[subscribed[0]]]
    assert moved["firstName"] and moved["textword"].isdigit()  # the contact moved, kept fields
    when = pacific_to_utc(moved["optOutDate"])
    assert abs(when - sandbox.sandbox.clock.now()) < timedelta(seconds=10)


def test_v2_write_updates_known_contacts_creates_the_rest_within_budget(sandbox):
    em = v2_em(sandbox)
    subscribed = [
        c["mobile_number"]
        for c in em.contacts.values()
        if c["opt_in_status"] in ("subscribed", "not subscribed")
    ]
    opted_out = inspect(sandbox, "slicktext-v2")["phones"][:5]
    new = fresh_numbers(sandbox, 500 - len(subscribed) - len(opted_out))
    numbers = [*subscribed, *opted_out, *new]
    assert len(numbers) == 500
    client = v2(sandbox, brand_id=None)
    result = client.optout_numbers(numbers)
    assert (result.written, result.already_present) == (len(subscribed) + len(new), 5)
    assert result.rejected == []
    counts = stats(sandbox)
    assert counts["slicktext-v2 PUT"] == len(subscribed)
    assert counts["slicktext-v2 POST"] == len(new)
    assert counts["slicktext-v2 GET"] == 2  # GET brands, one page of contacts
    assert client.stats.requests / len(numbers) <= 1.01
    view = inspect(sandbox, "slicktext-v2")
    assert set(numbers) <= set(view["phones"]) and view["subscribed_count"] == 0


@pytest.mark.parametrize("api", APIS)
def test_invalid_numbers_are_rejected_and_the_rest_written(sandbox, api):
    good = fresh_numbers(sandbox, 3)
    numbers = [good[0], "+1000", good[1], "+1415", good[2]]
    result = client_for(sandbox, api).optout_numbers(numbers)
    assert result.written == 3 and result.already_present == 0
    assert [n for n, _ in result.rejected] == ["+1000", "+1415"]
    assert all("Invalid phone number" in reason for _, reason in result.rejected)
    assert set(good) <= set(inspect(sandbox, api)["phones"])


def test_v2_paces_itself_under_the_rate_limit(sandbox):
    limit = {"per_second": 8, "per_window": 480, "window_seconds": 60}
    control(sandbox, "config", {"rate_limits": {"slicktext-v2": limit}})
    client = v2(sandbox, requests_per_second=None)  # default: 8 a second, less a margin
    numbers = fresh_numbers(sandbox, 59)
    started = time.monotonic()
    result = client.optout_numbers(numbers)  # 1 listing + 59 creates = 60 requests
    elapsed = time.monotonic() - started
    assert result.written == 59
    assert client.stats.requests == 60
    assert stats(sandbox).get("slicktext-v2 429", 0) == 0
    assert (60 - 8) / 8 <= elapsed < 20  # 8 in any second: request 60 goes after 6.5 s
