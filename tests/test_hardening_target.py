"""target-optouts where a run could drop opt-outs quietly or never end: each case a real target
process (exit status, STATE lines on stdout, stderr lines), in bounded time (subprocess and
pytest timeouts) and memory (an address-space limit on the child).

The rule: bad data in one record is rejected with its reason and the rest is written; a cause
outside the record (a stream map, a SCHEMA, a BATCH file the target cannot read, a rejects file
it cannot write) fails the run with one ERROR line, exit status 1 and no STATE after it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optouts_sandbox import credentials as C
from target_optouts.lines import LineTooLong, TooLong, whole_line_chunks
from target_optouts.normalize import emails_of_block, normalize_email, normalize_emails
from tests.sandbox_support import TARGET_BIN, control, running_sandbox
from tests.target_support import encode, state, stream_messages, target_config

pytestmark = pytest.mark.timeout(120)

# Nothing is sent in these runs: a destination whose URL never answers is enough.
OFFLINE = {
    "ledger_url": "",
    "checkmarket": {
        "base_url": "http://127.0.0.1:9/checkmarket",
        "master_key": C.CHECKMARKET_MASTER_KEY,
        "key": C.CHECKMARKET_KEY,
    },
}
SCHEMA = {
    "type": "SCHEMA",
    "stream": "crm",
    "schema": {"type": "object", "properties": {"email": {"type": ["string", "null"]}}},
    "key_properties": [],
}
MEMORY_LIMIT = 600 << 20  # address space of the target process
# glibc reserves 64 MB of address space per thread's malloc arena: two keep the limit about
# the memory the target uses, not about how many threads it has.
ENV = {**os.environ, "MALLOC_ARENA_MAX": "2"}


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run(
    config: dict[str, Any],
    tmp_path: Path,
    stdin: bytes | str,
    *,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """The target as a process, its memory limited, on `stdin`."""
    path = tmp_path / f"config-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))
    data = stdin.encode() if isinstance(stdin, str) else stdin
    result = subprocess.run(
        [str(TARGET_BIN), "--config", str(path)],
        input=data,
        capture_output=True,
        timeout=timeout,
        preexec_fn=limited,
        env=ENV,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode(),
        result.stderr.decode("utf-8", "replace"),
    )


def states(result: subprocess.CompletedProcess[str]) -> list[Any]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| ERROR" in line]


def assert_failed_loudly(result: subprocess.CompletedProcess[str], says: str) -> None:
    """Exit 1, one ERROR line saying `says`, no traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    lines = errors(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    assert says in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def rejects_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- configuration, not data: stream maps and SCHEMAs ----------------------------------------
def batch_message(stream: str, url: str, file_format: str = "jsonl", **encoding: Any) -> dict:
    return {
        "type": "BATCH",
        "stream": stream,
        "encoding": {"format": file_format, **encoding},
        "manifest": [url],
    }


@pytest.mark.parametrize("path", ["record", "batch"])
@pytest.mark.parametrize(
    ("maps", "says"),
    [
        ({"crm": {"email": "contact__email"}}, "'contact__email' is not defined"),
        ({"crm": {"__filter__": "nope > 1"}}, "'nope' is not defined"),
        ({"crm": {"email": "1 +"}}, "Failed to parse expression"),
    ],
    ids=["typo", "filter", "syntax"],
)
def test_a_failing_stream_map_fails_the_run_before_any_state(tmp_path, path, maps, says):
    batch = tmp_path / "records.jsonl"
    batch.write_text(json.dumps({"email": "mapped@example.com"}) + "\n")
    body: list[dict[str, Any]] = (
        [{"type": "RECORD", "stream": "crm", "record": {"email": "mapped@example.com"}}]
        if path == "record"
        else [batch_message("crm", batch.as_uri())]
    )
    rejects = tmp_path / "rejects.jsonl"
    config = {**OFFLINE, "stream_maps": maps, "rejects_path": str(rejects)}

    result = run(config, tmp_path, encode([SCHEMA, *body, state({"n": 1})]))

    assert_failed_loudly(result, "the stream map of stream 'crm' failed")
    assert says in errors(result.stderr)[0]
    assert "check stream_maps" in errors(result.stderr)[0]
    assert states(result) == []
    assert rejects_of(rejects) == []


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ({**SCHEMA, "schema": {"type": "object"}}, "the SCHEMA of stream 'crm' has no properties"),
        (
            {**SCHEMA, "schema": {"properties": {"email": {"type": "strin"}}}},
            "the SCHEMA of stream 'crm' cannot be used (InvalidJSONSchema)",
        ),
        ({**SCHEMA, "key_properties": [1]}, "the key_properties of stream 'crm' are not names"),
        (
            {"type": "RECORD", "stream": "crm", "record": {"email": "early@example.com"}},
            "a RECORD of stream 'crm' came before any SCHEMA of it",
        ),
    ],
    ids=["no-properties", "bad-type", "key-properties", "record-before-schema"],
)
def test_a_schema_the_target_cannot_use_fails_the_run(tmp_path, message, says):
    lines = [state({"n": 1}), message, *stream_messages("crm", [{"email": "x@example.com"}])]
    result = run(OFFLINE, tmp_path, encode([*lines, state({"n": 2})]))

    assert_failed_loudly(result, says)
    assert states(result) == [{"n": 1}]  # the STATE before it, never one after


def test_data_errors_stay_rejects_and_the_rest_is_delivered(sandbox, tmp_path):
    """A record missing its key property, failing its schema, or with a bad address: rejected
    with reasons; the run ends 0 with its STATE, the good record written."""
    schema = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
    }
    good = "kept.person@target-tests.example.com"
    records = [{"id": 1, "email": good}, {"email": "nokey@example.com"}]
    records += [{"id": "two", "email": "x@example.com"}, {"id": 3, "email": "broken@"}]
    rejects = tmp_path / "rejects.jsonl"
    config = target_config(sandbox, ("checkmarket",), rejects_path=str(rejects))
    messages = stream_messages("crm", records, schema=schema, key_properties=["id"])

    result = run(config, tmp_path, encode([*messages, state({"n": 1})]))

    assert result.returncode == 0, result.stderr[-3000:]
    assert states(result) == [{"n": 1}]
    reasons = [entry["reasons"][0] for entry in rejects_of(rejects)]
    assert len(reasons) == 3
    assert any("MissingKeyPropertiesError" in r for r in reasons)
    assert any(r.startswith("schema: ") for r in reasons)
    assert any(r.startswith("email: ") for r in reasons)
    assert good in control(sandbox, "inspect")["checkmarket"]["emails"]


# -- BATCH messages the target cannot read -------------------------------------------------------
@pytest.mark.parametrize(
    ("batch", "says"),
    [
        (
            batch_message("crm", "file:///tmp/x.csv", "csv"),
            "encoding format 'csv' is not supported",
        ),
        (
            batch_message("crm", "file:///tmp/x.parquet", "parquet"),
            "encoding format 'parquet' is not supported",
        ),
        (batch_message("crm", "http://127.0.0.1:9/x.jsonl"), "file 'http://127.0.0.1:9/x.jsonl'"),
        (batch_message("crm", "s3://bucket/x.jsonl"), "file 's3://bucket/x.jsonl'"),
        (
            batch_message("crm", "file:///tmp/x.jsonl.zst", compression="zstd"),
            "compression 'zstd' is not supported",
        ),
        (batch_message("ghost", "file:///tmp/x.jsonl"), "which no SCHEMA described"),
        ({"type": "BATCH", "stream": "crm", "manifest": []}, "it has no encoding format"),
        (
            batch_message("crm", "file:///tmp/x.jsonl", foo=1),
            "its encoding cannot be read (TypeError",
        ),
        (
            batch_message("crm", "file:///nonexistent/x.jsonl"),
            "No such file or directory",
        ),
    ],
    ids=[
        "csv",
        "parquet",
        "http",
        "s3",
        "zstd",
        "unknown-stream",
        "no-encoding",
        "odd-encoding",
        "gone",
    ],
)
def test_a_batch_the_target_cannot_read_fails_the_run_without_state(tmp_path, batch, says):
    result = run(OFFLINE, tmp_path, encode([SCHEMA, state({"n": 1}), batch, state({"n": 2})]))

    assert_failed_loudly(result, "a BATCH message of stream")
    assert says in errors(result.stderr)[0]
    assert "its opt-outs are not acknowledged" in errors(result.stderr)[0]
    assert states(result) == [{"n": 1}]


def test_a_batch_file_without_a_newline_fails_at_the_line_cap(tmp_path):
    """`file:///dev/zero` never ends: read up to `max_line_bytes`, then the run fails (memory:
    the child's address-space limit)."""
    batch = batch_message("crm", "file:///dev/zero")
    config = {**OFFLINE, "max_line_bytes": 4 << 20}

    result = run(config, tmp_path, encode([SCHEMA, state({"n": 1}), batch, state({"n": 2})]))

    assert_failed_loudly(result, "line 1 of file 'zero' is longer than max_line_bytes (4194304)")
    assert states(result) == [{"n": 1}]


def test_a_long_line_of_a_gzip_batch_file_fails_the_run(tmp_path):
    path = tmp_path / "records.jsonl.gz"
    with gzip.open(path, "wb") as out:
        out.write(b'{"email": "a@example.com"}\n{"email": "' + b"x" * (3 << 20) + b'"}\n')
    batch = batch_message("crm", path.as_uri(), compression="gzip")
    config = {**OFFLINE, "max_line_bytes": 1 << 20}

    result = run(config, tmp_path, encode([SCHEMA, batch, state({"n": 1})]))

    assert_failed_loudly(result, "line 2 of file 'records.jsonl.gz' is longer than")
    assert states(result) == []


def test_a_signal_stops_the_read_of_a_batch_file(sandbox, tmp_path):
    """A BATCH file of 2 GB of lines (one gzip member repeated: 2 MB on disk) takes far longer
    to read than the test waits: SIGTERM stops the read at once (the records read are written,
    no STATE covers the file), the STATE before the BATCH stays the last one, exit 143."""
    email = "batch.person@target-tests.example.com"
    member = gzip.compress((json.dumps({"email": email}) + "\n").encode() * (10 << 20 >> 6), 1)
    path = tmp_path / "big.jsonl.gz"
    with path.open("wb") as out:
        for _ in range(200):
            out.write(member)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(target_config(sandbox, ("checkmarket",))))
    batch = batch_message("crm", path.as_uri(), compression="gzip")
    child = subprocess.Popen(
        [str(TARGET_BIN), "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limited,
        env=ENV,
    )
    assert child.stdin is not None
    child.stdin.write(encode([SCHEMA, state({"n": 1}), batch, state({"n": 2})]).encode())
    child.stdin.close()
    child.stdin = None  # communicate() reads only
    try:
        time.sleep(3.0)  # the target is reading the file
        assert child.poll() is None
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signal.SIGTERM, stderr.decode()[-3000:]
    assert [json.loads(line) for line in stdout.splitlines()] == [{"n": 1}]
    assert email in control(sandbox, "inspect")["checkmarket"]["emails"]


# -- STATE -----------------------------------------------------------------------------------------
def test_a_state_that_is_not_an_object_is_rejected_and_not_passed_on(tmp_path):
    rejects = tmp_path / "rejects.jsonl"
    lines = [
        '{"type": "STATE", "value": 42}',
        '{"type": "STATE", "value": "x"}',
        '{"type": "STATE", "value": [1, 2]}',
        state({"ok": 1}),
    ]
    result = run({**OFFLINE, "rejects_path": str(rejects)}, tmp_path, encode(lines))

    assert result.returncode == 0, result.stderr[-3000:]
    assert states(result) == [{"ok": 1}]
    reasons = [entry["reasons"] for entry in rejects_of(rejects)]
    assert reasons == [
        ["a STATE whose value is not an object (int)"],
        ["a STATE whose value is not an object (str)"],
        ["a STATE whose value is not an object (list)"],
    ]


# -- rejects ---------------------------------------------------------------------------------------
def test_rejects_end_with_one_warning_naming_the_count_and_the_file(tmp_path):
    rejects = tmp_path / "out" / "rejects.jsonl"
    lines = [*stream_messages("crm", [{"email": "broken@"}, {"email": None}]), "not json"]
    result = run({**OFFLINE, "rejects_path": str(rejects)}, tmp_path, encode(lines))

    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "| WARNING" in line]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert "3 input(s) rejected" in warnings[0]
    assert f"rejects_path={rejects}" in warnings[0]
    assert len(rejects_of(rejects)) == 3


def test_no_rejects_no_warning(tmp_path):
    result = run({**OFFLINE, "rejects_path": str(tmp_path / "r.jsonl")}, tmp_path, "")
    assert result.returncode == 0
    assert "| WARNING" not in result.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_an_unwritable_rejects_path_is_refused_at_start_up(tmp_path):
    """Its parent is a file: refused before any input is read (no STATE at all), not at the
    first reject mid-run."""
    (tmp_path / "a-file").write_text("")
    path = tmp_path / "a-file" / "rejects.jsonl"
    lines = [state({"n": 1}), "not json", state({"n": 2})]

    result = run({**OFFLINE, "rejects_path": str(path)}, tmp_path, encode(lines))

    assert_failed_loudly(result, f"rejects_path {str(path)!r} cannot be written")
    assert states(result) == []


# -- long input lines ------------------------------------------------------------------------------
def test_a_line_longer_than_the_cap_is_rejected_unread_and_the_rest_written(sandbox, tmp_path):
    """A 150 MB line (in pieces through a pipe): rejected with its length and number in
    linear time, never held (the child's address-space limit is 600 MB); the next records
    are written and the STATE passed on."""
    rejects = tmp_path / "rejects.jsonl"
    good = "after.long.line@target-tests.example.com"
    config = target_config(sandbox, ("checkmarket",), rejects_path=str(rejects))
    config["max_line_bytes"] = 1 << 20
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    size = 150 << 20
    head = encode([SCHEMA]).encode() + b'{"type": "RECORD", "stream": "crm", "record": {"n": "'
    tail = (
        b'"}}\n'
        + encode([{"type": "RECORD", "stream": "crm", "record": {"email": good}}]).encode()
        + encode([state({"n": 1})]).encode()
    )
    child = subprocess.Popen(
        [str(TARGET_BIN), "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limited,
        env=ENV,
    )

    pipe, child.stdin = child.stdin, None  # written here; communicate() reads only
    assert pipe is not None

    def feed() -> None:
        with pipe:
            pipe.write(head)
            piece = b"y" * (1 << 20)
            for _ in range(size >> 20):
                pipe.write(piece)
            pipe.write(tail)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, stderr.decode()[-3000:]
    assert [json.loads(line) for line in stdout.splitlines()] == [{"n": 1}]
    (entry,) = rejects_of(rejects)
    length = len(head) - len(encode([SCHEMA])) + size + 3  # the line, without its newline
    assert entry["line"] == 2
    assert entry["reasons"] == [
        f"a line of {length} bytes, longer than max_line_bytes ({1 << 20}): not read"
    ]
    assert entry["input"] == ""
    assert good in control(sandbox, "inspect")["checkmarket"]["emails"]


LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(LINE, max_size=8),
    end=st.booleans(),
    size=st.integers(1, 50),
    cap=st.integers(1, 30),
)
def test_chunks_are_the_lines_and_too_long_ones_are_measured(lines, end, size, cap):
    data = b"\n".join(lines) + (b"\n" if end and lines else b"")
    out: list[bytes | TooLong] = []
    for item in whole_line_chunks(io.BytesIO(data).read, size, cap):
        if isinstance(item, TooLong):
            out.append(item)
        else:
            assert len(item) > 0
            out.extend(item[:-1].split(b"\n") if item.endswith(b"\n") else item.split(b"\n"))
    expected: list[bytes | TooLong] = [TooLong(len(x)) if len(x) > cap else x for x in lines]
    if lines and not end and lines[-1] == b"":
        expected.pop()  # a last empty line without a newline is no line
    assert out == expected
    chunks = whole_line_chunks(io.BytesIO(data).read, size, cap, skip_long=False)
    if any(len(x) > cap for x in lines):
        with pytest.raises(LineTooLong):
            list(chunks)
    else:
        assert b"".join(t for t in chunks if isinstance(t, bytes)) == data


# -- internationalised addresses -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "form"),
    [
        ("jane@bücher.de", "jane@xn--bcher-kva.de"),
        ("jane@xn--bcher-kva.de", "jane@xn--bcher-kva.de"),
        (" Jane@BÜCHER.de ", "jane@xn--bcher-kva.de"),
        ("josé@example.com", "josé@example.com"),
        ("JOSÉ@Example.com", "josé@example.com"),
        ("jose\u0301@example.com", "josé@example.com"),  # decomposed: NFC
        ("用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"),
    ],
)
def test_internationalised_addresses_take_one_form(raw, form):
    assert normalize_email(raw) == form
    assert normalize_email(form) == form


@pytest.mark.parametrize(
    "raw",
    ["jo sé@example.com", "josé..x@example.com", "x@☃.com", "josé@bücher", "é" * 33 + "@x.de"],
)
def test_bad_internationalised_addresses_are_refused(raw):
    with pytest.raises(ValueError) as caught:
        normalize_email(raw)
    assert "☃" not in str(caught.value)  # a reason never quotes the address


_IDN_LOCAL = st.text(alphabet="aZ9._+-éÉüİß\u0301\u212a \t@", min_size=0, max_size=70)
_IDN_DOMAIN = st.sampled_from(
    [
        "example.com",
        "bücher.de",
        "BÜCHER.DE",
        "xn--bcher-kva.de",
        "例子.广告",
        "exa mple.com",
        "bücher",
        "-bücher.de",
        "☃.com",
        "ü" * 70 + ".de",
    ]
)
IDN_EMAILS = st.builds(lambda local, domain: f"{local}@{domain}", _IDN_LOCAL, _IDN_DOMAIN)


def _each(values: list[str]) -> list[str] | None:
    try:
        return [normalize_email(value) for value in values]
    except ValueError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(IDN_EMAILS, min_size=1, max_size=8))
def test_the_one_pass_block_check_agrees_for_non_ascii_input(values):
    block = normalize_emails(values)
    if block is not None:
        assert block == _each(values)
        assert all(email.isascii() for email in block)  # non-ASCII always takes _each
    elif _each(values) is not None:
        assert any(v != v.strip() or not v.strip().lower().isascii() for v in values), values
    records = [{"email": value, "phone": None} for value in values]
    emails = emails_of_block(records, ("email", ("phone",)))
    assert emails is None or emails == _each(values)


def test_each_provider_gets_the_one_form_and_optizmo_keeps_its_md5(tmp_path):
    """Both forms of jane's address are one opt-out (written once); CheckMarket and the
    Optizmo email list (collect, and bulk upload) hold the form normalize_email gives, and
    Optizmo's MD5 is of that form's UTF-8 bytes."""
    raw = ["jane@bücher.de", "jane@xn--bcher-kva.de", "josé@example.com", "José@Bücher.de"]
    forms = {"jane@xn--bcher-kva.de", "josé@example.com", "josé@xn--bcher-kva.de"}
    for threshold in (1000, 0):  # collect one by one; one bulk upload
        with running_sandbox(size=10) as server:
            config = target_config(
                server, ("checkmarket", "optizmo"), optizmo={"bulk_threshold": threshold}
            )
            messages = stream_messages("crm", [{"email": e} for e in raw])
            result = run(config, tmp_path, encode([*messages, state({"n": 1})]))
            held = control(server, "inspect")
        assert result.returncode == 0, result.stderr[-3000:]
        assert states(result) == [{"n": 1}]
        assert forms <= set(held["checkmarket"]["emails"])
        optizmo = held["optizmo"]["lists"][C.OPTIZMO_EMAIL_LIST_ID]
        assert forms <= set(optizmo["emails"])
        assert {hashlib.md5(f.encode()).hexdigest() for f in forms} <= set(optizmo["hashes"])
        assert not {"jane@bücher.de", "josé@bücher.de"} & set(optizmo["emails"])
        summary = json.loads(
            result.stderr.split("target-optouts summary json: ", 1)[1].split("\n")[0]
        )
        assert summary["destinations"]["checkmarket"]["duplicate"] == 1
