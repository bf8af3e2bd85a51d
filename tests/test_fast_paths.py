"""The fast paths do what the slow ones do: the tap's RECORD lines and state against
the SDK's own path, the validator's first check against fastjsonschema, the one-pass email
rule against the rule-by-rule one, Pacific wall times against the exact conversion, the
sandbox's one-pass upload reading against the line-by-line one, and the bounded memory of
what a destination has written."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastjsonschema
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optouts_providers.optizmo import wire as optizmo_wire
from optouts_providers.slicktext import wire as slicktext_wire
from optouts_providers.timeutil import pacific_to_utc, to_rfc3339
from optouts_sandbox.optizmo.download_file import csv_chunks
from optouts_sandbox.optizmo.upload_file import parse_upload
from tap_optouts import record_output, sdk
from tap_optouts.tap import TapOptouts
from target_optouts.normalize import email_problem, passes_email_rules
from target_optouts.seen import SeenAddresses
from target_optouts.validation import struct_for
from tests.sandbox_support import control, running_sandbox, tap_config
from tests.target_support import run_cli, run_target, stream_messages, target_config

SCHEMAS = Path(__file__).resolve().parent.parent / "tap_optouts" / "schemas"


def run_tap(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The tap in this process; its messages (stdout as bytes, as the writers need it)."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with contextlib.redirect_stdout(out):
        TapOptouts(config=config).sync_all()
        out.flush()
        data = out.buffer.getvalue()  # type: ignore[attr-defined]
    return [json.loads(line) for line in data.splitlines()]


def stock_sdk(monkeypatch: pytest.MonkeyPatch, *parts: str) -> None:
    """The tap's hooks named (all by default) off (`tap_optouts.sdk.use_stock_sdk`), undone
    at the test's end."""
    hooks = sdk.StreamHooks
    monkeypatch.setattr(hooks, "stock_parts", hooks.stock_parts)
    monkeypatch.setattr(hooks, "STATE_MSG_FREQUENCY", hooks.STATE_MSG_FREQUENCY)
    sdk.use_stock_sdk(parts or tuple(sdk.HOOKS))


def records_of(messages: list[dict[str, Any]]) -> list[Any]:
    return [(m["stream"], m["record"]) for m in messages if m["type"] == "RECORD"]


def test_tap_records_and_state_are_the_stock_sdks(monkeypatch):
    # The stock run uses none of the hooks: the SDK's own loop, record messages and state.
    with running_sandbox(size=600) as server:
        config = tap_config(server, checkmarket={"survey_ids": [1001, 1002]})
        fast = run_tap(config)
        with monkeypatch.context() as m:
            stock_sdk(m)
            stock = run_tap(config)
        assert sdk.StreamHooks.stock_parts == frozenset()  # the context restored the hooks

    assert records_of(fast) == records_of(stock)
    assert len(records_of(fast)) > 600
    assert all("time_extracted" in m for m in fast if m["type"] == "RECORD")
    fast_states = [m["value"] for m in fast if m["type"] == "STATE"]
    stock_states = [m["value"] for m in stock if m["type"] == "STATE"]
    assert fast_states[-1] == stock_states[-1]
    bookmarks = [
        s["replication_key_value"]
        for s in _partition_states(fast_states[-1])
        if s.get("replication_key_value")
    ]
    assert len(bookmarks) >= 3  # every stream and partition moved a bookmark
    # One STATE per finished partition (2 surveys, 2 Optizmo lists) and stream.
    assert len(fast_states) >= 4


def _partition_states(state: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for stream_state in state["bookmarks"].values():
        found.append(stream_state)
        found.extend(stream_state.get("partitions") or [])
    return found


def test_tap_batch_files_and_state_are_the_stock_sdks(monkeypatch, tmp_path):
    def batch_run(folder: Path) -> tuple[list[Any], dict[str, Any]]:
        folder.mkdir()
        config = {
            **base,
            "batch_config": {
                "encoding": {"format": "jsonl", "compression": "gzip"},
                "storage": {"root": f"file://{folder}"},
                "batch_size": 250,
            },
        }
        messages = run_tap(config)
        rows = []
        for message in messages:
            if message["type"] == "BATCH":
                for url in message["manifest"]:
                    with gzip.open(url.removeprefix("file://"), "rt") as handle:
                        rows += [(message["stream"], json.loads(line)) for line in handle]
        states = [m["value"] for m in messages if m["type"] == "STATE"]
        return sorted(rows, key=json.dumps), states[-1]

    with running_sandbox(size=600) as server:
        base = tap_config(server, checkmarket={"survey_ids": [1001, 1002]})
        fast_rows, fast_state = batch_run(tmp_path / "fast")
        with monkeypatch.context() as m:
            stock_sdk(m)
            stock_rows, stock_state = batch_run(tmp_path / "stock")
    assert len(fast_rows) > 600
    assert fast_rows == stock_rows
    assert fast_state == stock_state


def test_a_record_the_schema_does_not_know_takes_the_sdks_path():
    class Fake:
        schema = {"properties": {"a": {"type": "string"}}, "additionalProperties": False}
        name = "s"
        stream_maps: list[Any] = []
        mask: dict[Any, bool] = {}

    lines = record_output.RecordLines(Fake(), writer=None)  # type: ignore[arg-type]
    assert lines.plain is False  # no identity stream map: nothing goes the fast way
    lines.plain = True
    written: list[bytes] = []
    lines.write_line = written.append
    assert lines.write({"a": "x"}) is True
    assert lines.write({"a": "x", "b": 1}) is False
    assert json.loads(written[0])["record"] == {"a": "x"}


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["email", "n", "flag", "o", "a", "x", "z"]), VALUES))
def test_the_first_check_accepts_nothing_fastjsonschema_refuses(record):
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": ["string", "null"]},
            "n": {"type": "integer"},
            "flag": {"type": "boolean"},
            "o": {"type": "object"},
            "a": {"type": ["array", "null"]},
            "x": {},
        },
        "required": ["n"],
        "additionalProperties": False,
    }
    struct = struct_for(schema)
    assert struct is not None
    try:
        msgspec.convert(record, struct)
    except msgspec.ValidationError:
        return
    fastjsonschema.compile(schema, use_default=False, use_formats=False)(record)


def test_schemas_the_first_check_does_not_understand_are_left_to_fastjsonschema():
    for prop in ({"type": "number"}, {"type": "string", "enum": ["a"]}, {"properties": {}}):
        assert struct_for({"type": "object", "properties": {"p": prop}}) is None
    for name in ("checkmarket_optouts", "optizmo_optouts", "slicktext_optouts"):
        schema = json.loads((SCHEMAS / f"{name}.json").read_text())
        assert struct_for(schema) is not None


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="ab.-_@+!#'x0", max_size=30),
        st.from_regex(r"[a-z0-9.+-]{1,70}@[a-z0-9-]{0,64}(\.[a-z0-9-]{0,64}){0,3}", fullmatch=True),
        st.from_regex(r"[a-z]{1,10}@[a-z]{1,10}\.xn--[a-z0-9-]{0,62}", fullmatch=True),
    )
)
def test_the_fast_email_check_is_the_rule_by_rule_one(email):
    # normalize_email accepts by the fast check (a remembered domain check and the local
    # part's pattern) and words a refusal rule by rule: they must agree on every address.
    assert passes_email_rules(email) == (email_problem(email) is None)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=3 * 365 * 24 * 3600))
def test_pacific_wall_times_convert_as_the_exact_path_does(seconds):
    wall = (datetime(2025, 1, 1) + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")
    fast = slicktext_wire.wall_to_rfc3339(wall)
    exact = to_rfc3339(pacific_to_utc(wall))
    assert fast is None or fast == exact
    start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)
    assert slicktext_wire._utc_or_none(wall, start, end) == to_rfc3339(
        slicktext_wire.pacific_in_window(wall, start, end)
    )


def test_repeated_and_skipped_hours_take_the_exact_path():
    assert slicktext_wire.wall_to_rfc3339("2025-11-02 01:30:00") is None  # repeated
    assert slicktext_wire.wall_to_rfc3339("2026-03-08 02:30:00") is None  # skipped
    assert slicktext_wire.wall_to_rfc3339("2025-11-02 02:30:00") == "2025-11-02T10:30:00.000000Z"
    assert slicktext_wire.wall_to_rfc3339("2025-06-01 10:59:59") == "2025-06-01T17:59:59.000000Z"
    for wrong in ("2025-06-01 10:60:00", "2025-06-01 10:5x:00", "2025-06-01 10:00:6\u0669"):
        assert slicktext_wire.wall_to_rfc3339(wrong) is None


LINES = st.sampled_from(
    [
        "a@b.com",
        "x.y@mail.example.co.uk",
        "d41d8cd98f00b204e9800998ecf8427e",
        "D41D8CD98F00B204E9800998ECF8427E",
        "12015550123",
        "bad",
        " a@b.com",
        "a@b.com\t",
        "\xa0a@b.com",
        "",
        "a@b.com\r",
        "1234567",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=8), st.sampled_from(["email", "sms"]), st.booleans())
def test_the_sandbox_reads_an_upload_in_one_pass_as_line_by_line(lines, kind, final_newline):
    text = "\n".join(lines) + ("\n" if final_newline else "")
    entries, submitted = [], 0
    for line in text.splitlines():
        value = optizmo_wire.normalize(line)
        if value:
            submitted += 1
            if optizmo_wire.valid_upload_entry(value, kind):
                entries.append(value)
    assert parse_upload(text, kind) == (entries, submitted, submitted - len(entries))


def test_what_was_written_is_remembered_within_a_generation():
    seen = SeenAddresses(generation=3)
    seen.update([("email", "a"), ("email", "b")])
    assert ("email", "a") in seen and ("phone", "a") not in seen
    seen.add(("phone", "a"))  # the newer generation is full: it becomes the older one
    assert ("email", "a") in seen and ("phone", "a") in seen
    seen.update([("email", "c"), ("email", "d"), ("email", "e")])
    assert ("email", "a") not in seen and ("email", "e") in seen
    assert len(seen) == 3


def test_a_batch_file_line_that_is_not_json_is_rejected_and_the_rest_written(sandbox, tmp_path):
    good = [{"contact": {"mail": f"batch.{i}@batch-tests.example.com"}} for i in range(3)]
    path = tmp_path / "crm.jsonl"
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in good[:2]) + b"{not json\n")
    path.write_bytes(path.read_bytes() + json.dumps(good[2]).encode() + b"\n")
    schema = {"type": "object", "properties": {"contact": {"type": "object"}}}
    messages = stream_messages("crm_people", [], schema=schema)
    messages.append(
        {
            "type": "BATCH",
            "stream": "crm_people",
            "encoding": {"format": "jsonl", "compression": "none"},
            "manifest": [f"file://{path}"],
        }
    )
    config = target_config(
        sandbox,
        ("checkmarket",),
        rejects_path=str(tmp_path / "rejects.jsonl"),
        stream_maps={"crm_people": {"email": "contact['mail']", "contact": None}},
    )

    run = run_target(config, messages)

    assert run.error is None
    assert run.counts("checkmarket")["written"] == 3  # the stream map applies to files too
    rejected = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["reasons"][0].split(" (")[0] for r in rejected] == [
        "line 3 of batch file 'crm.jsonl' is not JSON"
    ]


def test_a_batch_file_that_cannot_be_read_stops_the_target_without_state(sandbox, tmp_path):
    messages = stream_messages("crm_people", [{"email": "before.batch@batch-tests.example.com"}])
    missing = tmp_path / "gone.jsonl"
    messages += [
        {"type": "STATE", "value": {"before": 1}},
        {
            "type": "BATCH",
            "stream": "crm_people",
            "encoding": {"format": "jsonl", "compression": "none"},
            "manifest": [f"file://{missing}"],
        },
        {"type": "STATE", "value": {"after": 1}},
    ]
    config = target_config(sandbox, ("checkmarket",), rejects_path=str(tmp_path / "r.jsonl"))

    process = run_cli(config, messages, tmp_path)

    assert process.returncode != 0
    assert "a BATCH message of stream 'crm_people' cannot be read" in process.stderr
    assert "gone.jsonl" in process.stderr
    lines = [json.loads(line) for line in process.stdout.splitlines() if line.strip()]
    states = [line["value"] for line in lines if line.get("type") == "STATE"]
    assert {"after": 1} not in states


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(alphabet='ab,"\r\n @.', max_size=6), min_size=3, max_size=3)))
def test_the_sandbox_writes_a_download_as_the_csv_module_does(rows):
    expected = io.StringIO()
    writer = csv.writer(expected)
    writer.writerow(["plain", "hashed", "timestamp"])
    writer.writerows(rows)
    made = b"".join(csv_chunks(["plain", "hashed", "timestamp"], iter(rows)))
    assert made.decode("utf-8") == expected.getvalue()


def test_one_state_after_the_last_batch_message_makes_one_optizmo_upload(monkeypatch, tmp_path):
    # What the tap's `_sync_batches` buys: with the SDK's, a STATE follows every BATCH message
    # and the target writes (drains) at each, one Optizmo bulk upload per file.
    def pipe(folder: Path) -> tuple[int, int, int]:
        folder.mkdir()
        config = {
            **tap_config(server, optizmo={"list_ids": None}),
            "batch_config": {
                "encoding": {"format": "jsonl"},
                "storage": {"root": f"file://{folder}"},
                "batch_size": 500,
            },
        }
        messages = run_tap(config)
        control(server, "reset", {})
        before = control(server, "stats").get("optizmo PUT", 0)
        run = run_target(
            target_config(server, ("optizmo",), optizmo={"bulk_threshold": 10}), messages
        )
        assert run.error is None
        uploads = control(server, "stats").get("optizmo PUT", 0) - before
        batches = sum(m["type"] == "BATCH" for m in messages)
        return batches, len(run.states), uploads

    with running_sandbox(size=3000) as server:
        batches, states, uploads = pipe(tmp_path / "hooks")
        with monkeypatch.context() as m:
            stock_sdk(m, "batches")
            stock_batches, stock_states, stock_uploads = pipe(tmp_path / "stock")
    assert batches == stock_batches >= 5
    assert uploads == states == 2  # one per list of the stream, not one per file
    assert stock_uploads >= stock_states > states  # a drain, so an upload, per STATE


def test_the_sdks_own_batch_files_are_read_whatever_their_encoding_names(monkeypatch, tmp_path):
    # singer-sdk's batcher gzips its files even when the encoding names no compression: the
    # target reads them as what they are, rather than reject every line as not JSON.
    with running_sandbox(size=300) as server:
        config = {
            **tap_config(server, optizmo={"list_ids": None}),
            "batch_config": {
                "encoding": {"format": "jsonl"},
                "storage": {"root": f"file://{tmp_path}"},
            },
        }
        with monkeypatch.context() as m:
            stock_sdk(m, "record_lines")
            messages = run_tap(config)
        batches = [m for m in messages if m["type"] == "BATCH"]
        assert batches and all("compression" not in m["encoding"] for m in batches)
        assert all(url.endswith(".gz") for m in batches for url in m["manifest"])
        run = run_target(target_config(server, ("optizmo",)), messages)
    assert run.error is None
    assert run.target.summary is not None
    inputs = run.target.summary["input"]
    assert inputs["rejected"] == inputs["invalid_lines"] == 0
    assert run.target.summary["destinations"]["optizmo"]["written"] > 250
