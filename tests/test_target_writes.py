"""The write path of each provider, through the target, against the sandbox over HTTP."""

from __future__ import annotations

import json
import math

import pytest

from optouts_providers.optizmo import wire as optizmo_wire
from optouts_sandbox import credentials as C
from optouts_sandbox import seed as seeding
from optouts_sandbox.slicktext import subscribed_people
from target_optouts.destinations import DeliveryError, build_destinations
from target_optouts.normalize import OptOut
from target_optouts.rejects import Rejects
from tests.sandbox_support import control, running_sandbox, slicktext_v2_settings
from tests.target_support import (
    new_emails,
    new_phones,
    run_target,
    state,
    stream_messages,
    target_config,
)

POPULATION = seeding.generate(300, 7)


def provider_requests(server, prefix: str) -> dict[str, int]:
    """The sandbox's request counts for one provider prefix, e.g. {"POST": 3}."""
    stats = control(server, "stats")
    out = {}
    for key, count in stats.items():
        name, _, what = key.partition(" ")
        if name == prefix:
            out[what] = count
    return out


# -- CheckMarket ---------------------------------------------------------------------------
def test_checkmarket_writes_in_batches_and_counts_present(sandbox):
    before = control(sandbox, "inspect")["checkmarket"]
    present = before["emails"][:3]
    emails, phones = new_emails(6), new_phones(4)
    records = [{"email": e.upper()} for e in emails + present] + [{"phone": p} for p in phones]
    config = target_config(sandbox, ("checkmarket",), checkmarket={"batch_size": 4})

    run = run_target(config, [*stream_messages("crm_people", records), state({"n": 1})])

    assert run.error is None
    counts = run.counts("checkmarket")
    assert (counts["sent"], counts["written"], counts["already_present"]) == (13, 10, 3)
    assert provider_requests(sandbox, "checkmarket") == {"POST": math.ceil(13 / 4)}
    after = control(sandbox, "inspect")["checkmarket"]
    assert set(after["emails"]) == set(before["emails"]) | set(emails)
    assert set(after["phones"]) == set(before["phones"]) | set(phones)
    assert run.states == [{"n": 1}]


def test_checkmarket_refused_batch_is_split_and_bad_addresses_rejected(sandbox, tmp_path):
    """The normaliser already keeps out what CheckMarket refuses, so the provider-side
    refusal is driven at the destination with addresses that skipped normalisation."""
    config = target_config(sandbox, ("checkmarket",), checkmarket={"batch_size": 5})
    rejects = Rejects(str(tmp_path / "rejects.jsonl"))
    destinations = build_destinations(config, rejects)
    good = new_emails(7)
    optouts = [OptOut("crm", email=e) for e in good[:3]]
    optouts += [OptOut("crm", email="no-at-sign.example.com")]
    optouts += [OptOut("crm", email=e) for e in good[3:]]
    optouts += [OptOut("crm", phone="+10000000000")]
    before = control(sandbox, "inspect")["checkmarket"]

    destinations.deliver("crm", optouts)
    destinations.close()

    counts = destinations.summary()["destinations"]["checkmarket"]
    assert (counts["written"], counts["rejected"]) == (7, 2)
    after = control(sandbox, "inspect")["checkmarket"]
    assert set(after["emails"]) - set(before["emails"]) == set(good)
    assert after["phones"] == before["phones"]
    lines = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert sorted(line["value"] for line in lines) == ["+10000000000", "no-at-sign.example.com"]
    assert {line["destination"] for line in lines} == {"checkmarket"}
    assert all("Invalid" in line["reasons"][0] for line in lines)
    # Two full batches refused, then split down to the two bad addresses.
    assert provider_requests(sandbox, "checkmarket")["POST"] > 2


# -- SlickText -----------------------------------------------------------------------------
def test_slicktext_legacy_optout_action(sandbox):
    before = control(sandbox, "inspect")["slicktext"]
    present = before["phones"][:2]
    subscribed = [p.phone for p in subscribed_people(POPULATION)[:2]]
    fresh = new_phones(3)
    records = [{"number": n} for n in present + subscribed + fresh]
    config = target_config(sandbox, ("slicktext",))

    run = run_target(config, stream_messages("crm_people", records))

    assert run.error is None
    counts = run.counts("slicktext")
    assert (counts["written"], counts["already_present"]) == (5, 2)
    assert provider_requests(sandbox, "slicktext") == {"POST": 7}
    after = control(sandbox, "inspect")["slicktext"]
    assert set(after["phones"]) == set(before["phones"]) | set(subscribed) | set(fresh)
    assert after["subscribed_count"] == before["subscribed_count"] - 2


def test_slicktext_v2_updates_known_contacts_and_creates_new_ones(sandbox):
    before = control(sandbox, "inspect")["slicktext-v2"]
    already = before["phones"][:2]
    subscribed = [p.phone for p in subscribed_people(POPULATION)[:3]]
    fresh = new_phones(2, start=50)
    records = [{"mobile_number": n} for n in already + subscribed + fresh]
    config = target_config(sandbox, ("slicktext",))
    config["slicktext"] = slicktext_v2_settings(sandbox)

    run = run_target(config, stream_messages("crm_people", records))

    assert run.error is None
    counts = run.counts("slicktext")
    assert (counts["written"], counts["already_present"]) == (5, 2)
    calls = provider_requests(sandbox, "slicktext-v2")
    assert calls["PUT"] == 3  # the subscribed contacts, updated
    assert calls["POST"] == 2  # the unknown numbers, created unsubscribed
    after = control(sandbox, "inspect")["slicktext-v2"]
    assert set(after["phones"]) == set(before["phones"]) | set(subscribed) | set(fresh)
    assert after["subscribed_count"] == before["subscribed_count"] - 3


def test_slicktext_v2_writes_are_paced_under_the_announced_limit():
    limits = {"slicktext-v2": {"per_window": 4, "window_seconds": 1.0}}
    with running_sandbox(rate_limits=limits) as server:
        config = target_config(server, ("slicktext",))
        config["slicktext"] = slicktext_v2_settings(server)
        numbers = new_phones(8, start=80)

        run = run_target(config, stream_messages("crm_people", [{"phone": n} for n in numbers]))

        assert run.error is None
        counts = run.counts("slicktext")
        assert counts["written"] == 8
        assert counts["calls"]["throttled_seconds"] > 0.5
        assert "slicktext-v2 429" not in control(server, "stats")
        assert set(numbers) <= set(control(server, "inspect")["slicktext-v2"]["phones"])


# -- Optizmo -------------------------------------------------------------------------------
def optizmo_lists(server) -> dict[str, dict]:
    return control(server, "inspect")["optizmo"]["lists"]


def test_optizmo_collects_below_the_threshold(sandbox):
    before = optizmo_lists(sandbox)
    emails, phones = new_emails(4), new_phones(2)
    records = [{"email": e} for e in emails] + [{"phone": p} for p in phones]
    config = target_config(sandbox, ("optizmo",), optizmo={"bulk_threshold": 4})

    run = run_target(config, stream_messages("crm_people", records))

    assert run.error is None
    assert run.counts("optizmo")["written"] == 6
    assert provider_requests(sandbox, "optizmo-collect") == {"POST": 6}
    assert provider_requests(sandbox, "optizmo") == {}
    after = optizmo_lists(sandbox)
    email_list, sms_list = C.OPTIZMO_EMAIL_LIST_ID, C.OPTIZMO_SMS_LIST_ID
    assert set(after[email_list]["emails"]) - set(before[email_list]["emails"]) == set(emails)
    assert set(after[sms_list]["phones"]) - set(before[sms_list]["phones"]) == set(phones)


def test_optizmo_bulk_uploads_above_the_threshold_and_md5s_always(sandbox):
    before = optizmo_lists(sandbox)[C.OPTIZMO_EMAIL_LIST_ID]
    emails = new_emails(5)
    md5 = optizmo_wire.hash_value("md5.only@target-tests.example.com")
    records = [{"email": e} for e in emails] + [{"hashed": md5.upper()}]
    config = target_config(sandbox, ("optizmo",), optizmo={"bulk_threshold": 3})

    run = run_target(config, stream_messages("crm_people", records))

    assert run.error is None
    assert run.counts("optizmo")["written"] == 6
    calls = provider_requests(sandbox, "optizmo")
    assert calls["POST"] == 1 and calls["PUT"] == 1 and calls["GET"] >= 1
    assert provider_requests(sandbox, "optizmo-collect") == {}
    puts = sandbox.sandbox.emulators["optizmo"].upload_puts
    expected_bytes = sum(len(v) + 1 for v in emails) + 33
    assert [(p["body_bytes"], p["credential"]) for p in puts] == [(expected_bytes, False)]
    after = control(sandbox, "inspect")["optizmo"]
    listed = after["lists"][C.OPTIZMO_EMAIL_LIST_ID]
    assert set(listed["emails"]) - set(before["emails"]) == set(emails)
    assert md5 in listed["hashes"]
    assert list(after["imports"].values()) == ["success"]


def test_optizmo_md5_below_threshold_goes_to_bulk_and_emails_to_collect(sandbox):
    md5 = optizmo_wire.hash_value("another.md5@target-tests.example.com")
    records = [{"email": e} for e in new_emails(2)] + [{"hashed": md5}]
    config = target_config(sandbox, ("optizmo",), optizmo={"bulk_threshold": 10})

    run = run_target(config, stream_messages("crm_people", records))

    assert run.error is None
    assert provider_requests(sandbox, "optizmo-collect") == {"POST": 2}
    assert provider_requests(sandbox, "optizmo")["PUT"] == 1
    assert md5 in optizmo_lists(sandbox)[C.OPTIZMO_EMAIL_LIST_ID]["hashes"]


@pytest.mark.parametrize("outcome", ["failed", "removed"])
def test_optizmo_failed_or_removed_upload_is_an_error_and_not_acknowledged(sandbox, outcome):
    control(sandbox, "config", {"upload_outcome": outcome})
    before = optizmo_lists(sandbox)[C.OPTIZMO_EMAIL_LIST_ID]
    records = [{"email": e} for e in new_emails(4)]
    config = target_config(sandbox, ("optizmo",), optizmo={"bulk_threshold": 2})

    run = run_target(config, [*stream_messages("crm_people", records), state({"n": 1})])

    assert isinstance(run.error, DeliveryError)
    references = list(control(sandbox, "inspect")["optizmo"]["imports"])
    assert len(references) == 1
    assert references[0] in str(run.error) and outcome in str(run.error)
    assert run.states == []
    assert run.counts("optizmo")["written"] == 0
    assert optizmo_lists(sandbox)[C.OPTIZMO_EMAIL_LIST_ID] == before


# -- channels ------------------------------------------------------------------------------
def test_what_a_destination_cannot_carry_is_skipped_and_counted(sandbox):
    md5 = optizmo_wire.hash_value("hash.only@target-tests.example.com")
    phone_only, email_only = new_phones(1, start=70)[0], new_emails(1, "mail")[0]
    records = [{"hashed": md5}, {"phone": phone_only}, {"email": email_only}]
    config = target_config(sandbox)
    config["optizmo"].pop("sms_list_id")

    run = run_target(config, stream_messages("crm_people", records))

    assert run.error is None
    skipped = {name: run.counts(name)["skipped_channel"] for name in run.summary["destinations"]}
    # CheckMarket: the MD5; SlickText: the MD5 and the email; Optizmo (email list): the phone.
    assert skipped == {"checkmarket": 1, "slicktext": 2, "optizmo": 1}
    written = {name: run.counts(name)["written"] for name in run.summary["destinations"]}
    assert written == {"checkmarket": 2, "slicktext": 1, "optizmo": 2}
