"""What records mean to the target: rejects, skip_origin, in-run dedupe, dry_run, stream maps."""

from __future__ import annotations

import json

from optouts_sandbox import credentials as C
from tests.sandbox_support import control
from tests.target_support import (
    new_emails,
    new_phones,
    run_target,
    schema_for,
    state,
    stream_messages,
    target_config,
)


def test_bad_records_are_rejected_with_reasons_and_the_good_ones_written(sandbox, tmp_path):
    good = new_emails(8)
    phone = new_phones(1)[0]
    records = [{"id": i, "email": e} for i, e in enumerate(good[:4])]
    records += [
        {"id": 100, "email": "not-an-email"},
        {"id": 101, "phone": "12345"},
        {"id": 102, "name": "no address at all"},
        {"id": 103, "hashed": "abc"},
        {"id": 104, "email": good[4], "phone": "garbage"},  # partly usable
        {"id": "105", "email": "typed.wrong@example.com"},  # fails the schema (id: integer)
    ]
    records += [{"id": 5 + i, "email": e} for i, e in enumerate(good[5:])]
    records += [{"id": 9, "phone": phone}]
    schema = schema_for([{"id": 1, "email": "", "phone": "", "hashed": "", "name": ""}])
    messages = stream_messages("crm_people", records, schema=schema)
    # A record that is not an object at all, in the middle of the batch.
    messages.insert(6, {"type": "RECORD", "stream": "crm_people", "record": ["x@example.com"]})
    rejects_path = tmp_path / "rejects.jsonl"
    config = target_config(sandbox, ("checkmarket",), rejects_path=str(rejects_path))
    before = control(sandbox, "inspect")["checkmarket"]

    run = run_target(config, [*messages, state({"done": True})])

    assert run.error is None
    assert run.states == [{"done": True}]
    after = control(sandbox, "inspect")["checkmarket"]
    assert set(after["emails"]) - set(before["emails"]) == set(good)
    assert set(after["phones"]) - set(before["phones"]) == {phone}
    assert run.counts("checkmarket")["written"] == 9
    lines = [json.loads(x) for x in rejects_path.read_text().splitlines()]
    by_id = {
        (line["record"]["id"] if isinstance(line["record"], dict) else "list"): line
        for line in lines
    }
    assert {k: v["reasons"] for k, v in by_id.items()} == {
        100: ["email: not an email address"],
        101: ["phone: not a valid phone number for region US"],
        102: ["no email, phone or MD5 field"],
        103: ["hashed: not 32 hexadecimal digits"],
        104: ["phone: not a valid phone number for region US"],
        "105": ["schema: data.id must be integer or null"],
        "list": ["record is not an object (list)"],
    }
    assert by_id[104].get("partial") is True
    assert {line["stream"] for line in lines} == {"crm_people"}
    inputs = run.summary["input"]
    assert (inputs["rejected"], inputs["partially_rejected"]) == (6, 1)


def test_rejects_file_is_appended_to(sandbox, tmp_path):
    rejects_path = tmp_path / "nested" / "rejects.jsonl"
    config = target_config(sandbox, ("checkmarket",), rejects_path=str(rejects_path))
    for _ in range(2):
        run = run_target(config, stream_messages("s", [{"email": "nope"}]))
        assert run.error is None
    assert len(rejects_path.read_text().splitlines()) == 2


def test_skip_origin_keeps_opt_outs_away_from_their_own_provider(sandbox):
    cm_email, st_phone = new_emails(1, "cm")[0], new_phones(1, start=10)[0]
    oz_email = new_emails(1, "oz")[0]
    messages = (
        stream_messages("checkmarket_optouts", [{"Email": cm_email, "ContactId": 1}])
        + stream_messages("slicktext_optouts", [{"number": st_phone, "id": "7"}])
        + stream_messages("optizmo_optouts", [{"plain": oz_email, "hashed": None}])
    )
    config = target_config(sandbox)
    before = control(sandbox, "inspect")

    run = run_target(config, messages)

    assert run.error is None
    after = control(sandbox, "inspect")
    origin = {name: run.counts(name)["skipped_origin"] for name in run.summary["destinations"]}
    assert origin == {"checkmarket": 1, "slicktext": 1, "optizmo": 1}
    assert set(after["checkmarket"]["emails"]) - set(before["checkmarket"]["emails"]) == {oz_email}
    assert set(after["checkmarket"]["phones"]) - set(before["checkmarket"]["phones"]) == {st_phone}
    assert set(after["slicktext"]["phones"]) - set(before["slicktext"]["phones"]) == set()
    email_list = C.OPTIZMO_EMAIL_LIST_ID
    added = set(after["optizmo"]["lists"][email_list]["emails"]) - set(
        before["optizmo"]["lists"][email_list]["emails"]
    )
    assert added == {cm_email}


def test_without_skip_origin_opt_outs_go_back_harmlessly(sandbox):
    present = control(sandbox, "inspect")["checkmarket"]["emails"][:2]
    records = [{"Email": e} for e in present]
    config = target_config(sandbox, ("checkmarket",), skip_origin=False)

    run = run_target(config, stream_messages("checkmarket_optouts", records))

    assert run.error is None
    counts = run.counts("checkmarket")
    assert (counts["skipped_origin"], counts["written"], counts["already_present"]) == (0, 0, 2)


def test_a_person_is_written_once_per_run_per_destination(sandbox):
    email, phone = new_emails(1, "dup")[0], new_phones(1, start=20)[0]
    other = new_emails(1, "single")[0]
    messages = [
        *stream_messages("crm_a", [{"email": email, "phone": phone}, {"email": email.upper()}]),
        state({"a": 1}),
        *stream_messages("crm_b", [{"email": f"  {email} "}, {"phone": phone}, {"email": other}]),
        state({"b": 1}),
    ]
    config = target_config(sandbox, ("checkmarket", "slicktext"))

    run = run_target(config, messages)

    assert run.error is None
    cm, st = run.counts("checkmarket"), run.counts("slicktext")
    assert (cm["sent"], cm["written"], cm["duplicate"]) == (3, 3, 3)
    assert (st["sent"], st["written"], st["duplicate"]) == (1, 1, 1)
    assert st["skipped_channel"] == 3  # the email-only records
    stats = control(sandbox, "stats")
    assert stats["checkmarket POST"] == 2 and stats["slicktext POST"] == 1
    assert run.states == [{"a": 1}, {"b": 1}]


def test_dry_run_writes_nothing_counts_and_emits_no_state(sandbox):
    records = [{"email": e} for e in new_emails(3)] + [{"phone": p} for p in new_phones(2)]
    config = target_config(sandbox, dry_run=True, optizmo={"bulk_threshold": 1})
    before = control(sandbox, "inspect")

    run = run_target(config, [*stream_messages("crm_people", records), state({"n": 1})])

    assert run.error is None
    assert control(sandbox, "stats") == {}
    assert control(sandbox, "inspect") == before
    would = {name: run.counts(name)["would_write"] for name in run.summary["destinations"]}
    assert would == {"checkmarket": 5, "slicktext": 2, "optizmo": 5}
    assert all(run.counts(name)["written"] == 0 for name in would)
    assert run.states == []
    assert run.target.summary is not None and run.target.summary["dry_run"] is True


def test_other_shapes_are_mapped_with_stream_maps(sandbox):
    records = [{"id": 1, "contact": {"mail": "Mapped.Person@Example.com"}}]
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "contact": {"type": "object", "properties": {"mail": {"type": "string"}}},
        },
    }
    config = target_config(
        sandbox,
        ("checkmarket",),
        stream_maps={"crm_people": {"email": "contact['mail']", "contact": None}},
    )

    run = run_target(config, stream_messages("crm_people", records, schema=schema))

    assert run.error is None
    assert run.counts("checkmarket")["written"] == 1
    assert "mapped.person@example.com" in control(sandbox, "inspect")["checkmarket"]["emails"]
