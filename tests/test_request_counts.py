"""The request budget, counted by the sandbox: reads take exactly ceil(N / page) pages
per list (Optizmo: prepare and the download), CheckMarket writes ceil(N / batch) POSTs, an
Optizmo bulk upload a constant whatever N, the new SlickText API at most 1.01 a number. Small N
and small pages; a batch is fed to the destinations in several parts, as a big one would be."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from optouts_sandbox import credentials as C
from optouts_sandbox.server import Sandbox, SandboxHTTPServer
from target_optouts import sinks
from tests.sandbox_support import (
    PROVIDERS,
    control,
    run_cli,
    running_sandbox,
    serving,
    slicktext_v2_settings,
    tap_config,
)
from tests.target_support import (
    new_emails,
    new_phones,
    run_target,
    state,
    stream_messages,
    target_config,
)

N = 2_500


def only_sandbox(size: int, *only: str) -> AbstractContextManager[SandboxHTTPServer]:
    """The benchmark population: each of `only` holds `size` opt-outs, the others nothing."""
    return serving(Sandbox(size=size, only=only))


@pytest.fixture(scope="module")
def full() -> Iterator[SandboxHTTPServer]:
    with only_sandbox(N, *PROVIDERS) as server:
        yield server


@pytest.fixture
def empty() -> Iterator[SandboxHTTPServer]:
    """Nothing held anywhere: every write adds."""
    with only_sandbox(0, *PROVIDERS) as server:
        yield server


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sinks, "PART", 300)


def spare_list_config(
    server: SandboxHTTPServer, providers: tuple[str, ...] = ("optizmo",), **overrides: Any
) -> dict[str, Any]:
    """Target settings whose Optizmo destination is the spare email list alone (no SMS list);
    an `optizmo` override is merged in."""
    optizmo = {"email_list_id": C.OPTIZMO_SPARE_EMAIL_LIST_ID, **overrides.pop("optizmo", {})}
    config = target_config(server, providers, optizmo=optizmo, **overrides)
    config["optizmo"].pop("sms_list_id")
    return config


def calls(server: SandboxHTTPServer, action: Any = None) -> dict[str, int]:
    """The provider requests `action()` makes: {"checkmarket GET": 25, ...}."""
    before = control(server, "stats")
    if action is not None:
        action()
    after = control(server, "stats")
    out = {}
    for key, value in after.items():
        if key.partition(" ")[2].isupper() and value - before.get(key, 0):
            out[key] = value - before.get(key, 0)
    return out


def test_tap_reads_each_list_in_ceil_n_over_page_pages(full, tmp_path):
    config = tap_config(
        full,
        checkmarket={"page_size": 100},
        slicktext={"page_size": 1000},
        optizmo={"list_ids": [C.OPTIZMO_EMAIL_LIST_ID]},
    )
    runs = []
    made = calls(full, lambda: runs.append(run_cli("tap-optouts", config, tmp_path)))
    run = runs[0]
    assert run.returncode == 0, run.stderr[-3000:]
    assert made == {
        "checkmarket GET": math.ceil(N / 100),
        "slicktext GET": math.ceil(N / 1000),
        "optizmo POST": 1,  # prepare-download
        "optizmo GET": 1,  # the file, ready at once
    }
    held = control(full, "inspect")
    assert (
        sorted(r["Email"] for r in run.records("checkmarket_optouts"))
        == held["checkmarket"]["emails"]
    )
    assert (
        sorted(r["number"] for r in run.records("slicktext_optouts")) == held["slicktext"]["phones"]
    )
    emails = sorted(r["plain"] for r in run.records("optizmo_optouts"))
    assert emails == held["optizmo"]["lists"][C.OPTIZMO_EMAIL_LIST_ID]["emails"]
    assert len(emails) == N


def test_tap_reads_the_new_slicktext_api_per_status_in_pages(full, tmp_path):
    settings = {**slicktext_v2_settings(full), "page_size": 1000}
    config = tap_config(full, providers=("slicktext",), slicktext=settings)
    config["slicktext"] = settings
    runs = []
    made = calls(full, lambda: runs.append(run_cli("tap-optouts", config, tmp_path)))
    assert runs[0].returncode == 0, runs[0].stderr[-3000:]
    held = control(full, "inspect")["slicktext-v2"]
    blocked, unsubscribed = held["blocked_count"], held["count"] - held["blocked_count"]
    assert made == {"slicktext-v2 GET": math.ceil(unsubscribed / 1000) + math.ceil(blocked / 1000)}
    assert sorted(r["number"] for r in runs[0].records()) == held["phones"]


def test_checkmarket_writes_take_ceil_n_over_batch_posts(empty, small_parts):
    emails = new_emails(N - 50)
    config = target_config(empty, ("checkmarket",), checkmarket={"batch_size": 100})
    messages = stream_messages("crm_people", [{"email": e} for e in emails])

    runs = []
    made = calls(empty, lambda: runs.append(run_target(config, messages)))

    assert runs[0].error is None
    assert made == {"checkmarket POST": math.ceil(len(emails) / 100)}
    assert control(empty, "inspect")["checkmarket"]["emails"] == sorted(emails)
    assert runs[0].counts("checkmarket")["written"] == len(emails)


@pytest.mark.parametrize("count", [150, N])
def test_an_optizmo_bulk_upload_costs_the_same_whatever_n(empty, small_parts, count):
    emails = new_emails(count, tag=f"bulk{count}")
    config = spare_list_config(empty, optizmo={"bulk_threshold": 100})
    messages = stream_messages("crm_people", [{"email": e} for e in emails])

    runs = []
    made = calls(empty, lambda: runs.append(run_target(config, messages)))

    assert runs[0].error is None
    # prepare-upload, the file, one status poll (the sandbox imports at once).
    assert made == {"optizmo POST": 1, "optizmo PUT": 1, "optizmo GET": 1}
    held = control(empty, "inspect")["optizmo"]["lists"][C.OPTIZMO_SPARE_EMAIL_LIST_ID]
    assert held["emails"] == sorted(emails)


def test_a_state_ends_the_batch_and_its_upload(empty, small_parts):
    first, second = new_emails(400, tag="first"), new_emails(400, tag="second")
    config = spare_list_config(empty, optizmo={"bulk_threshold": 100})
    messages = stream_messages("crm_people", [{"email": e} for e in first])
    messages += [state({"n": 1})]
    messages += stream_messages("crm_people", [{"email": e} for e in second])[1:]

    runs = []
    made = calls(empty, lambda: runs.append(run_target(config, messages)))

    assert runs[0].error is None
    assert runs[0].states == [{"n": 1}]
    assert made == {"optizmo POST": 2, "optizmo PUT": 2, "optizmo GET": 2}
    held = control(empty, "inspect")["optizmo"]["lists"][C.OPTIZMO_SPARE_EMAIL_LIST_ID]
    assert held["emails"] == sorted(first + second)


def test_slicktext_new_api_looks_contacts_up_in_pages(small_parts):
    with running_sandbox(size=N) as server:
        held = control(server, "inspect")["slicktext-v2"]
        contacts = server.sandbox.emulators["slicktext-v2"].contacts  # type: ignore[attr-defined]
        opted_out = set(held["phones"])
        subscribed = {
            c["mobile_number"] for c in contacts.values() if c["opt_in_status"] == "subscribed"
        }
        # Distinct numbers (the seed repeats a few): 300 to update, 100 held, 400 to create.
        numbers = sorted(subscribed - opted_out)[:300] + sorted(opted_out)[:100] + new_phones(400)
        settings = {**slicktext_v2_settings(server), "requests_per_second": 100_000}
        config = target_config(server, ("slicktext",), slicktext=settings)
        config["slicktext"] = settings
        messages = stream_messages("crm_people", [{"phone": n} for n in numbers])

        runs = []
        made = calls(server, lambda: runs.append(run_target(config, messages)))

        assert runs[0].error is None
        parts = math.ceil(len(numbers) / sinks.PART)
        pages = math.ceil(len(contacts) / 10_000)
        # A pass over the brand's contacts per part, then one request per number not opted out.
        assert made == {
            "slicktext-v2 GET": parts * pages,
            "slicktext-v2 PUT": 300,
            "slicktext-v2 POST": 400,
        }
        assert sum(made.values()) <= 1.01 * len(numbers)
        after = control(server, "inspect")["slicktext-v2"]
        assert set(after["phones"]) == set(held["phones"]) | set(numbers)


def test_batch_messages_tap_to_target(empty, tmp_path, small_parts):
    """BATCH files from the tap: one STATE after them, one upload and ceil(N / batch) POSTs
    for the whole list, the same opt-outs as with RECORD messages."""
    with only_sandbox(N, "optizmo") as source:
        batches = tmp_path / "batches"
        batches.mkdir()
        config = tap_config(
            source, providers=("optizmo",), optizmo={"list_ids": [C.OPTIZMO_EMAIL_LIST_ID]}
        )
        config["batch_config"] = {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": f"file://{batches}", "prefix": "test-"},
            "batch_size": 1000,
        }
        run = run_cli("tap-optouts", config, tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        kinds = [m["type"] for m in run.messages]
        assert kinds.count("BATCH") == math.ceil(N / 1000)
        assert kinds.count("RECORD") == 0
        assert kinds[-1] == "STATE" and kinds.index("STATE") > max(
            i for i, kind in enumerate(kinds) if kind == "BATCH"
        )
        emails = control(source, "inspect")["optizmo"]["lists"][C.OPTIZMO_EMAIL_LIST_ID]["emails"]

    target = spare_list_config(
        empty, ("checkmarket", "optizmo"), skip_origin=False, checkmarket={"batch_size": 100}
    )
    messages: list[Any] = [json.loads(json.dumps(m)) for m in run.messages]
    runs = []
    made = calls(empty, lambda: runs.append(run_target(target, messages)))

    assert runs[0].error is None
    assert runs[0].states == [run.last_state]
    assert made == {
        "checkmarket POST": math.ceil(N / 100),
        "optizmo POST": 1,
        "optizmo PUT": 1,
        "optizmo GET": 1,
    }
    held = control(empty, "inspect")
    assert held["checkmarket"]["emails"] == emails
    assert held["optizmo"]["lists"][C.OPTIZMO_SPARE_EMAIL_LIST_ID]["emails"] == emails
