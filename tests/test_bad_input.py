"""Bad input. The target (a real process) fed 1,000 generated bad inputs among valid records:
no crash, each bad one rejected with a reason, every valid record delivered. Fuzzed input never
crashes the target. The tap faced with malformed provider answers fails with a clear error
naming the provider and the endpoint."""

from __future__ import annotations

import io
import json
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optouts_providers.checkmarket.client import CheckMarketClient
from optouts_providers.http import ProviderError
from optouts_providers.optizmo.client import OptizmoClient
from optouts_providers.slicktext.client import SlickTextLegacyClient, SlickTextV2Client
from optouts_sandbox import credentials as C
from target_optouts.errors import RunError
from tests.pipeline_support import TAP_BIN, debug_env, leaks
from tests.sandbox_support import (
    control,
    held_addresses,
    running_sandbox,
    slicktext_v2_settings,
    tap_config,
)
from tests.target_support import TARGET_BIN, new_emails, new_phones, target_config

SEED = 4
PEOPLE = "crm_people"
LATE = "late_people"  # its SCHEMA comes last, then its records
SCHEMA_PROPERTIES = {
    "id": {"type": ["integer", "null"]},
    "email": {"type": ["string", "null"]},
    "phone": {"type": ["string", "null"]},
    "name": {"type": ["string", "null"]},
}


def schema(stream: str) -> bytes:
    message = {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": SCHEMA_PROPERTIES},
        "key_properties": [],
    }
    return json.dumps(message).encode()


def record(stream: str, values: dict[str, Any]) -> bytes:
    return json.dumps({"type": "RECORD", "stream": stream, "record": values}).encode()


def bad_emails(rng: random.Random, n: int) -> list[str]:
    shapes = [
        "plainaddress{i}",
        "@no-local-part{i}.example.com",
        "two@@at{i}.example.com",
        "dots..twice{i}@example.com",
        "space in{i}@example.com",
        "bad{i}@-hyphen-.example.com",
        "tld{i}@example.c",
        "ünicode{i}@bücher..de",
        "trailing.dot{i}.@example.com",
        "x{i}@example.123",
    ]
    return [rng.choice(shapes).format(i=i) for i in range(n)]


def oversized_emails(n: int) -> list[str]:
    long_local = [f"{'l' * 65}{i}@example.com" for i in range(n // 2)]
    label = "d" * 63  # a valid label: only the whole address is too long
    long_total = [f"u{i}@{label}.{label}.{label}.{label}.com" for i in range(n - n // 2)]
    return long_local + long_total


def bad_phones(rng: random.Random, n: int) -> list[str]:
    shapes = ["12345", "+999{i}", "call me {i}", "+1 555 01{i:02d}", "000-000-{i:04d}", "+44 20"]
    return [rng.choice(shapes).format(i=i % 100) for i in range(n)]


def wrong_types(rng: random.Random, n: int) -> list[dict[str, Any]]:
    shapes: list[Any] = [12345, True, ["a@example.com"], {"address": "b@example.com"}, 1.5]
    return [{rng.choice(["email", "phone"]): rng.choice(shapes)} for _ in range(n)]


def garbage(rng: random.Random, n: int) -> list[bytes]:
    shapes = [
        b"this is not json {i}",
        b"[1, 2, {i}]",
        b"{i}",
        b'{"no_type": {i}}',
        b'{"type": "WHATEVER", "n": {i}}',
        b'{"type": "RECORD", "record": {"email": "nostream{i}@example.com"}}',
        b'{"type": "RECORD", "stream": "crm_people"}',
        b'{"type": "STATE"}',
        b'{"type": "ACTIVATE_VERSION", "stream": "s{i}", "version": 1}',
        b'{"type": "RECORD", "stream": "crm_people", "record": {"email": "cut{i}@exa',
    ]
    return [rng.choice(shapes).replace(b"{i}", str(i).encode()) for i in range(n)]


def non_utf8(n: int) -> list[bytes]:
    broken = [b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80"]  # none is UTF-8
    return [
        b'{"type": "RECORD", "stream": "crm_people", "record": {"email": "b'
        + broken[i % len(broken)]
        + f'{i}@example.com"}}}}'.encode()
        for i in range(n)
    ]


def build_input() -> tuple[list[bytes], dict[str, int], list[str], list[str]]:
    """Lines with 1,000 bad inputs (counted per kind) shuffled among valid records, then the
    late stream's SCHEMA and its valid records; and every valid email and phone."""
    rng = random.Random(SEED)
    emails, phones = new_emails(60, tag="badinput"), new_phones(60, start=700)
    ghosts, ghost_phones = new_emails(60, tag="ghost"), new_phones(40, start=800)
    bad: dict[str, list[bytes]] = {
        "invalid email": [record(PEOPLE, {"email": e}) for e in bad_emails(rng, 150)],
        "oversized email": [record(PEOPLE, {"email": e}) for e in oversized_emails(50)],
        "bad phone": [record(PEOPLE, {"phone": p}) for p in bad_phones(rng, 150)],
        "wrong type": [record(PEOPLE, values) for values in wrong_types(rng, 150)],
        "missing fields": [
            record(PEOPLE, rng.choice([{}, {"name": f"n{i}"}, {"email": None}, {"email": "  "}]))
            for i in range(100)
        ],
        "non-UTF-8": non_utf8(100),
        "non-object STATE": [
            json.dumps({"type": "STATE", "value": [42, "x", [1, 2], None][i % 4]}).encode()
            for i in range(100)
        ],
        "too long": [record(PEOPLE, {"email": e, "name": "n" * 1100}) for e in ghosts]
        + [record(PEOPLE, {"phone": p, "name": "n" * 1100}) for p in ghost_phones],
        "garbage": garbage(rng, 100),
    }
    assert sum(len(lines) for lines in bad.values()) == 1000
    mixed = [line for lines in bad.values() for line in lines]
    mixed += [record(PEOPLE, {"email": e}) for e in emails[:50]]
    mixed += [record(PEOPLE, {"phone": p}) for p in phones[:50]]
    rng.shuffle(mixed)
    lines = [schema(PEOPLE), *mixed, schema(LATE)]
    lines += [record(LATE, {"email": e}) for e in emails[50:]]
    lines += [record(LATE, {"phone": p}) for p in phones[50:]]
    lines.append(json.dumps({"type": "STATE", "value": {"done": True}}).encode())
    return lines, {kind: len(items) for kind, items in bad.items()}, emails, phones


# Reasons each kind is rejected with (a substring of one of its reasons).
REASONS = {
    "invalid email": ("email: ",),
    "oversized email": ("longer than",),
    "bad phone": ("phone: ",),
    "wrong type": ("schema: ",),
    "missing fields": ("no email, phone or MD5 field",),
    "non-UTF-8": ("not valid UTF-8",),
    "non-object STATE": ("a STATE whose value is not an object",),
    "too long": ("longer than max_line_bytes (1024): not read",),
    "garbage": (
        "not JSON",
        "not a JSON object",
        "a message without a type",
        "unknown message type",
        "without a stream name",
        "without a record",
        "STATE message without a value",
        "ACTIVATE_VERSION message for an unknown stream",
    ),
}


def test_a_thousand_bad_inputs_are_rejected_and_every_valid_record_delivered(tmp_path):
    lines, counts, emails, phones = build_input()
    with running_sandbox(size=10) as server:
        before = held_addresses(control(server, "inspect"))
        rejects = tmp_path / "rejects.jsonl"
        config = target_config(
            server, rejects_path=str(rejects), optizmo={"bulk_threshold": 0}, max_line_bytes=1024
        )
        (tmp_path / "config.json").write_text(json.dumps(config))
        result = subprocess.run(
            [str(TARGET_BIN), "--config", str(tmp_path / "config.json")],
            input=b"\n".join(lines) + b"\n",
            capture_output=True,
            timeout=120,
            check=False,
            env=debug_env(tmp_path, "target"),
        )
        after = held_addresses(control(server, "inspect"))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, stderr[-3000:]
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{"done": True}]
    entries = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert len(entries) == 1000
    assert all(entry["reasons"] and all(entry["reasons"]) for entry in entries)
    for kind, wanted in REASONS.items():
        matching = [e for e in entries if any(w in r for r in e["reasons"] for w in wanted)]
        assert len(matching) >= counts[kind], kind
    assert "input rejected=" in stderr and "invalid_lines=" in stderr
    assert after["checkmarket emails"] == before["checkmarket emails"] | set(emails)
    assert after["checkmarket phones"] == before["checkmarket phones"] | set(phones)
    assert after["slicktext phones"] == before["slicktext phones"] | set(phones)
    assert after["optizmo emails"] == before["optizmo emails"] | set(emails)
    assert after["optizmo phones"] == before["optizmo phones"] | set(phones)
    logs = [path.read_text("utf-8", "replace") for path in tmp_path.glob("*.log")]
    assert len(logs) == 2 and leaks("\n".join([stderr, rejects.read_text(), *logs])) == []


# -- fuzzing: nothing crashes the target --------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
MESSAGES = st.fixed_dictionaries(
    {"type": st.sampled_from(["RECORD", "SCHEMA", "STATE", "ACTIVATE_VERSION", "BATCH", "X"])},
    optional={
        "stream": st.sampled_from(["crm_people", "other", ""]) | JSON_VALUES,
        "record": st.fixed_dictionaries(
            {}, optional={"email": JSON_VALUES, "phone": JSON_VALUES, "id": JSON_VALUES}
        )
        | JSON_VALUES,
        "schema": st.just({"properties": SCHEMA_PROPERTIES}) | JSON_VALUES,
        "key_properties": st.just(["id"]) | JSON_VALUES,
        "value": JSON_VALUES,
        "version": JSON_VALUES,
    },
)
LINES = st.lists(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" "))
    | MESSAGES.map(lambda m: json.dumps(m).encode()),
    max_size=25,
)
OFFLINE = {
    "dry_run": True,  # nothing is sent: the providers' URLs need not answer
    "checkmarket": {
        "base_url": "http://127.0.0.1:9/checkmarket",
        "master_key": C.CHECKMARKET_MASTER_KEY,
        "key": C.CHECKMARKET_KEY,
    },
}


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(LINES)
def test_any_input_is_read_without_a_crash(lines):
    from target_optouts.target import TargetOptouts

    target = TargetOptouts(config=OFFLINE)
    try:
        counts = target.process_lines(io.BytesIO(b"".join(line + b"\n" for line in lines)))
    except RunError as exc:  # a run stopped with its one line (tests/test_hardening_target.py)
        assert str(exc).startswith("target-optouts: ")
        return
    target.process_endofpipe()
    inputs = target.summary["input"]
    blank = sum(1 for line in lines if not line.strip())
    assert sum(counts.values()) + inputs["invalid_lines"] + blank == len(lines)


# -- malformed provider answers: a clear error naming the provider and the endpoint --------------
def _clients(server) -> dict[str, Any]:
    urls = server.base_urls()
    v2 = slicktext_v2_settings(server)
    return {
        "CheckMarket GET /3/contacts/optouts": lambda: CheckMarketClient(
            urls["checkmarket"], C.CHECKMARKET_MASTER_KEY, C.CHECKMARKET_KEY
        ).iter_optouts(EPOCH, NOW),
        "SlickText GET /optouts": lambda: SlickTextLegacyClient(
            urls["slicktext"], C.SLICKTEXT_PUBLIC_KEY, C.SLICKTEXT_PRIVATE_KEY
        ).iter_optouts(EPOCH, NOW),
        f"GET /brands/{C.SLICKTEXT_V2_BRAND_ID}/contacts": lambda: SlickTextV2Client(
            v2["base_url"], v2["api_key"], v2["brand_id"]
        ).iter_optouts(EPOCH, NOW),
        "Optizmo POST /optout-list/prepare-download": lambda: OptizmoClient(
            urls["optizmo"], C.OPTIZMO_API_KEY
        ).iter_optouts(C.OPTIZMO_EMAIL_LIST_ID, EPOCH, NOW, poll_interval_seconds=0.01),
    }


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "says"),
    [("html", "HTML page"), ("wrong_json", "unexpected answer")],
)
def test_every_client_names_provider_and_endpoint_of_a_malformed_answer(kind, says):
    with running_sandbox(size=10, malformed_rate=1.0, malformed_kind=kind) as server:
        for where, read in _clients(server).items():
            with pytest.raises(ProviderError) as caught:
                list(read())
            message = str(caught.value)
            assert where in message and "answered HTTP 200" in message, message
            if not where.startswith("Optizmo"):  # its answer is read for a link only
                assert says in message, message


def tap_alone(switches: dict[str, Any], providers: tuple[str, ...], tmp: Path) -> Any:
    with running_sandbox(size=10, **switches) as server:
        config = tap_config(server, providers)
        path = tmp / "tap.json"
        path.write_text(json.dumps(config))
        return subprocess.run(
            [str(TAP_BIN), "--config", str(path)],
            capture_output=True,
            timeout=120,
            check=False,
            env=debug_env(tmp, "tap"),
        )


TAP_CASES = {
    "html": (
        {"malformed_rate": 1.0, "malformed_kind": "html"},
        ("checkmarket",),
        "CheckMarket GET /3/contacts/optouts answered HTTP 200: the answer is an HTML page",
    ),
    "wrong_json": (
        {"malformed_rate": 1.0, "malformed_kind": "wrong_json"},
        ("slicktext",),
        "SlickText GET /optouts answered HTTP 200: unexpected answer (ValueError: not an "
        "opt-out list",
    ),
    "missing_column": (
        {"optizmo_file_fault": "drop_column:timestamp"},
        ("optizmo",),
        "the file lacks column(s) timestamp",
    ),
    "empty_zip": (
        {"optizmo_file_fault": "empty_zip"},
        ("optizmo",),
        "the download is an empty ZIP archive",
    ),
}


@pytest.fixture(scope="module")
def tap_failures(tmp_path_factory) -> dict[str, tuple[Any, Path]]:
    folders = {name: tmp_path_factory.mktemp(name) for name in TAP_CASES}
    with ThreadPoolExecutor(max_workers=4) as pool:
        return {
            name: (pool.submit(tap_alone, switches, providers, folders[name]), folders[name])
            for name, (switches, providers, _) in TAP_CASES.items()
        }


@pytest.mark.parametrize("case", list(TAP_CASES))
def test_the_tap_fails_clearly_on_a_malformed_answer(tap_failures, case):
    future, folder = tap_failures[case]
    result = future.result()
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode != 0
    assert TAP_CASES[case][2] in stderr, stderr[-3000:]
    if case in ("missing_column", "empty_zip"):
        assert "Optizmo GET" in stderr and "/optizmo/storage/downloads/" in stderr
    logs = [path.read_text("utf-8", "replace") for path in folder.glob("*.log")]
    assert len(logs) == 2
    assert leaks("\n".join([stderr, result.stdout.decode("utf-8", "replace"), *logs])) == []
