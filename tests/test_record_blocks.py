"""RECORD messages taken a block at a time (reader.py, record_blocks.py, sinks.py) do what the
stock SDK's one-message path does, and a block of emails checked in one pass
(normalize.normalize_emails, emails_of_block) gives what the record-by-record rules give."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_optouts import reader as reader_module
from target_optouts.normalize import (
    block_plan,
    emails_of_block,
    normalize_email,
    normalize_emails,
    normalize_record,
)
from target_optouts.target import TargetOptouts
from tests.sandbox_support import control
from tests.target_support import (
    Run,
    encode,
    new_emails,
    new_phones,
    run_target,
    state,
    target_config,
)

SCHEMAS = Path(__file__).resolve().parent.parent / "tap_optouts" / "schemas"

# Addresses near every rule's edge: case, blanks, lengths, dots, hyphens, '@' twice, TLDs,
# characters that lower() maps into ASCII (the Kelvin sign), newlines inside a value.
_LOCAL = st.text(alphabet="aZ9._+-!'\u212a \t\n@", min_size=0, max_size=70)
_DOMAIN = st.sampled_from(
    [
        "example.com",
        "EXAMPLE.ORG",
        "mail.example.co.uk",
        "-bad.example.com",
        "example",
        "example.c",
        "xn--bcher-kva.example",
        "a" * 64 + ".com",
        "a" * 63 + ".com",
        "example.com.",
        "exa_mple.com",
        "example.123",
        "b" * 200 + ".example.com",
    ]
)
EMAILS = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", _LOCAL, _DOMAIN),
    st.sampled_from(["", " ", "plain-text", "a@b@example.com", " Jane@Example.com "]),
)


def _one_by_one(values: list[str]) -> list[str] | None:
    try:
        return [normalize_email(value) for value in values]
    except ValueError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(EMAILS, min_size=1, max_size=12))
def test_a_block_of_emails_is_read_as_each_email_is(values):
    block = normalize_emails(values)
    if block is not None:
        assert block == _one_by_one(values)
    elif (each := _one_by_one(values)) is not None:
        # Only blanks around a value send a sound block down the one-by-one path.
        assert any(value != value.strip() for value in values), (values, each)


def test_sound_blocks_take_the_one_pass_path():
    values = [f"Person.{i}+tag@Mail{i % 7}.Example.COM" for i in range(1000)]
    assert normalize_emails(values) == [value.lower() for value in values]
    assert normalize_emails([*values, "no-at-sign"]) is None
    assert normalize_emails([*values, None]) is None  # type: ignore[list-item]
    assert normalize_emails([]) is None


def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


OPTIZMO_ROWS = st.fixed_dictionaries(
    {
        "optout_list_id": st.just("901fad4c46a1e723"),
        "plain": st.one_of(
            st.none(), EMAILS, st.sampled_from(["12065550100", "d41d8cd98f00b204e9800998ecf8427e"])
        ),
        "hashed": st.one_of(st.none(), st.just("d41d8cd98f00b204e9800998ecf8427e"), st.just("zz")),
        "timestamp": st.just("2026-01-01T00:00:00.000000Z"),
    }
)
CHECKMARKET_ROWS = st.fixed_dictionaries(
    {
        "ContactId": st.integers(1, 10**6),
        "SurveyId": st.just(0),
        "DateOptOut": st.just("2026-01-01T00:00:00.000000Z"),
        "Email": st.one_of(st.none(), EMAILS),
        "PhoneNumber": st.one_of(st.none(), st.just("+12065550100"), st.just("bad")),
    }
)


@pytest.mark.parametrize(
    ("stream", "rows"),
    [("optizmo_optouts", OPTIZMO_ROWS), ("checkmarket_optouts", CHECKMARKET_ROWS)],
)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_block_of_records_is_read_as_each_record_is(stream, rows, data):
    records = data.draw(st.lists(rows, min_size=1, max_size=8))
    # A closed schema (CheckMarket's is open: its records may carry more fields, and an open
    # schema's records each take normalize_record).
    schema = {**_schema(stream), "additionalProperties": False}
    plan = block_plan(schema)
    assert plan is not None
    assert (block_plan(_schema(stream)) is None) == (stream == "checkmarket_optouts")
    emails = emails_of_block(records, plan)
    if emails is None:
        return
    for record, email in zip(records, emails, strict=True):
        result = normalize_record(record, stream)
        assert result.reasons == []
        assert result.optout is not None
        assert (result.optout.email, result.optout.phone, result.optout.md5) == (email, None, None)


def test_a_provider_list_takes_the_one_pass_path():
    rows = [
        {"optout_list_id": "l", "plain": f"P{i}@Example.com", "hashed": "x", "timestamp": "t"}
        for i in range(50)
    ]
    plan = block_plan(_schema("optizmo_optouts"))
    assert plan is not None
    assert emails_of_block(rows, plan) == [f"p{i}@example.com" for i in range(50)]
    rows[7]["plain"] = "12065550100"  # an SMS list's number: each record takes its own path
    assert emails_of_block(rows, plan) is None


def _mixed_input() -> list[dict[str, Any] | str]:
    """Two streams in runs, STATE between them, a schema that changes mid-stream, invalid
    lines and bad records, more records than a sink holds (batch_size_rows below)."""
    emails, phones = new_emails(60, "blocks"), new_phones(10, start=300)
    crm = {"type": "object", "properties": {"email": {"type": ["string", "null"]}}}
    crm2 = {
        "type": "object",
        "properties": {"email": {"type": ["string", "null"]}, "phone": {"type": ["string"]}},
        "additionalProperties": False,
    }
    closed = {**crm, "additionalProperties": False, "required": ["email"]}

    def records(stream: str, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"type": "RECORD", "stream": stream, "record": value} for value in values]

    return [
        {"type": "SCHEMA", "stream": "crm_a", "schema": closed, "key_properties": ["email"]},
        {"type": "SCHEMA", "stream": "crm_b", "schema": crm, "key_properties": []},
        *records("crm_a", [{"email": e} for e in emails[:25]]),
        *records("crm_a", [{"email": "broken@"}]),
        "not json at all",
        *records("crm_a", [{"email": emails[0].upper()}]),
        *records("crm_b", [{"email": e, "_sdc_extracted_at": "x"} for e in emails[25:35]]),
        state({"step": 1}),
        *records("crm_a", [{"email": e} for e in emails[35:45]]),
        {"type": "RECORD", "stream": "crm_a", "record": "not an object"},
        {"type": "RECORD", "record": {"email": emails[44]}},  # no stream: a rejected line
        {"type": "NOT_SINGER", "stream": "crm_a"},
        *records("crm_a", [{"email": emails[46], "extra": 1}, {"other": 2}]),
        {"type": "SCHEMA", "stream": "crm_b", "schema": crm2, "key_properties": []},
        *records("crm_b", [{"email": None, "phone": p} for p in phones]),
        *records("crm_b", [{"email": e, "phone": None} for e in emails[47:60]]),
        state({"step": 2}),
    ]


def run_target_on_bytes(config: dict[str, Any], messages: list[dict[str, Any] | str]) -> Run:
    """`run_target`, the input as bytes (read a chunk at a time, as stdin is)."""
    target = TargetOptouts(config=config)
    out = io.StringIO()
    with redirect_stdout(out):
        target.process_lines(io.BytesIO(encode(messages).encode()))
        target.process_endofpipe()
    states = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return Run(target, states)


@pytest.mark.parametrize("as_bytes", [True, False], ids=["chunks", "lines"])
def test_records_in_blocks_are_taken_as_one_by_one(sandbox, monkeypatch, tmp_path, as_bytes):
    monkeypatch.setattr(reader_module, "RECORD_BLOCK", 4)  # blocks cut at every size
    monkeypatch.setattr(reader_module, "CHUNK_BYTES", 700)  # lines cut across reads
    messages = _mixed_input()

    def run(label: str, chunks: bool = False) -> tuple[Any, ...]:
        control(sandbox, "reset", {})
        rejects = tmp_path / f"rejects-{label}.jsonl"
        config = target_config(
            sandbox,
            ("checkmarket", "slicktext"),
            batch_size_rows=7,
            skip_origin=False,
            rejects_path=str(rejects),
        )
        run = run_target_on_bytes(config, messages) if chunks else run_target(config, messages)
        assert run.error is None
        lines = [json.loads(line) for line in rejects.read_text().splitlines()]
        for line in lines:
            line.pop("rejected_at")
        return (
            run.states,
            run.summary,
            lines,
            control(sandbox, "inspect"),
            control(sandbox, "stats"),
        )

    taken: list[int] = []
    original = TargetOptouts.take_record_block

    def counting(self: TargetOptouts, sink: Any, records: list[Any]) -> None:
        taken.append(len(records))
        original(self, sink, records)

    monkeypatch.setattr(TargetOptouts, "take_record_block", counting)
    in_blocks = run("blocks", chunks=as_bytes)
    assert taken and max(taken) == 4 and sum(taken) > 60
    # The stock SDK's path: each RECORD message through the SDK's own
    # Target._process_record_message and its per-record sink steps (sdk.use_stock_sdk).
    monkeypatch.setattr(TargetOptouts, "record_blocks", False)
    taken.clear()
    one_by_one = run("single")
    assert taken == []

    for part, (block, single) in enumerate(zip(in_blocks, one_by_one, strict=True)):
        assert block == single, part
    states, summary, rejects, held, _ = in_blocks
    assert states == [{"step": 1}, {"step": 2}]
    # broken@, not an object, a field the closed schema lacks, no email, and the 13 records
    # whose null phone the second crm_b schema refuses.
    assert summary["input"]["rejected"] == 17
    assert summary["input"]["invalid_lines"] == 3
    texts = {line.get("input") for line in rejects}
    assert '{"type": "NOT_SINGER", "stream": "crm_a"}' in texts  # the line, as it came
    assert {"broken@", new_emails(60, "blocks")[46]} <= {
        line["record"].get("email") for line in rejects if isinstance(line.get("record"), dict)
    }
    assert summary["destinations"]["checkmarket"]["written"] == 45 + 10  # emails, phones
    assert summary["destinations"]["slicktext"]["written"] == 10
    assert held["checkmarket"]["count"] >= 69
