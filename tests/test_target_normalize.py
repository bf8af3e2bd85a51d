"""What a record means: field rules, normalisation, reasons (target_optouts.normalize)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from target_optouts.normalize import (
    normalize_email,
    normalize_md5,
    normalize_phone,
    normalize_record,
    origin_provider,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  John.Doe@Mail.COM ", "john.doe@mail.com"),
        ("a+tag@sub.example.co.uk", "a+tag@sub.example.co.uk"),
        ("o'brien@example.org", "o'brien@example.org"),
    ],
)
def test_email_trimmed_and_lowercased(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "no-at-sign.example.com",
        "@example.com",
        "user@",
        "user@localhost",
        "user@exa mple.com",
        "us er@example.com",
        "user..dots@example.com",
        "user@-bad.com",
        "user@example.c0m",
        "x" * 65 + "@example.com",
        "u@" + "a" * 250 + ".com",
        42,
    ],
)
def test_bad_emails_raise(raw):
    with pytest.raises(ValueError):
        normalize_email(raw)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(201) 555-0123", "US", "+12015550123"),
        ("201.555.0123", "US", "+12015550123"),
        ("+1 201 555 0123", "GB", "+12015550123"),
        ("12015550123", "US", "+12015550123"),  # Optizmo SMS form
        ("447911123456", "US", "+447911123456"),  # country code without '+'
        ("020 7946 0958", "GB", "+442079460958"),
        (12015550123, "US", "+12015550123"),
    ],
)
def test_phone_to_e164(raw, region, expected):
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    "raw",
    # "4791234567" is no US number; read as "+47 91234567" it would be Norwegian: a 10-digit
    # string is never taken to start with a country code.
    ["", "abc", "555", "+999", "1" * 20, "201-555-01", "4791234567", None, 1.5],
)
def test_bad_phones_raise(raw):
    with pytest.raises(ValueError):
        normalize_phone(raw, "US")


def test_md5():
    digest = hashlib.md5(b"a@b.com").hexdigest()
    assert normalize_md5(digest.upper()) == digest
    for bad in ("abc", digest + "0", "g" * 32):
        with pytest.raises(ValueError):
            normalize_md5(bad)


@pytest.mark.parametrize(
    ("stream", "origin"),
    [
        ("checkmarket_optouts", "checkmarket"),
        ("slicktext_optouts", "slicktext"),
        ("optizmo_optouts", "optizmo"),
        ("Optizmo_custom", "optizmo"),
        ("optizmoish", None),
        ("crm_people", None),
    ],
)
def test_origin_from_stream_name(stream, origin):
    assert origin_provider(stream) == origin


@pytest.mark.parametrize(
    ("record", "email", "phone"),
    [
        ({"email": "A@Example.com"}, "a@example.com", None),
        ({"Email": "a@example.com"}, "a@example.com", None),
        ({"EmailAddress": "a@example.com"}, "a@example.com", None),
        ({"email_address": "a@example.com"}, "a@example.com", None),
        ({"plain": "a@example.com"}, "a@example.com", None),
        ({"plain": "12015550123"}, None, "+12015550123"),
        ({"phone": "2015550123"}, None, "+12015550123"),
        ({"number": "+12015550123"}, None, "+12015550123"),
        ({"PhoneNumber": "2015550123"}, None, "+12015550123"),
        ({"phone_number": "2015550123"}, None, "+12015550123"),
        ({"mobile_number": "+12015550123"}, None, "+12015550123"),
        ({"sms": "12015550123"}, None, "+12015550123"),
        ({"number": "+12015550123", "email": "j@slicktext.com"}, "j@slicktext.com", "+12015550123"),
        # The first non-empty field wins; blanks are skipped.
        ({"email": "  ", "Email": "b@example.com"}, "b@example.com", None),
    ],
)
def test_field_rules(record, email, phone):
    result = normalize_record(record, "s")
    assert result.reasons == []
    assert result.optout is not None
    assert (result.optout.email, result.optout.phone, result.optout.md5) == (email, phone, None)


def test_hash_only_when_no_plain_address():
    digest = hashlib.md5(b"x@example.com").hexdigest()
    only_hash = normalize_record({"plain": "", "hashed": digest.upper()}, "optizmo_optouts")
    assert only_hash.optout is not None and only_hash.optout.md5 == digest
    with_plain = normalize_record({"plain": "x@example.com", "hashed": digest}, "optizmo_optouts")
    assert with_plain.optout is not None
    assert (with_plain.optout.email, with_plain.optout.md5) == ("x@example.com", None)
    hash_in_plain = normalize_record({"plain": digest.upper()}, "optizmo_optouts")
    assert hash_in_plain.optout is not None and hash_in_plain.optout.md5 == digest


def test_bad_value_is_a_reason_and_the_rest_still_counts():
    result = normalize_record({"email": "a@example.com", "phone": "12"}, "s")
    assert result.optout is not None and result.optout.email == "a@example.com"
    assert result.optout.phone is None
    assert result.reasons == ["phone: not a valid phone number for region US"]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"id": 1}, "no email, phone or MD5 field"),
        ({"email": None, "phone": ""}, "no email, phone or MD5 field"),
        ({"email": "nope"}, "email: not an email address"),
        ({"hashed": "xyz"}, "hashed: not 32 hexadecimal digits"),
        ({"email": {"a": 1}}, "email: not a string (dict)"),
        ("just a string", "record is not an object (str)"),
        ([1, 2], "record is not an object (list)"),
    ],
)
def test_unusable_records(record, reason):
    result = normalize_record(record, "s")
    assert result.optout is None
    assert result.reasons == [reason]


@given(
    local=st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True),
    domain=st.sampled_from(["example.com", "Example.ORG", "mail.example.net"]),
    pad=st.sampled_from(["", " ", "\t", "  \n"]),
)
def test_email_normalisation_is_idempotent(local, domain, pad):
    once = normalize_email(pad + local.upper() + "@" + domain + pad)
    assert once == normalize_email(once) == f"{local}@{domain.lower()}"


@given(st.integers(min_value=200, max_value=999), st.integers(min_value=0, max_value=9999))
def test_us_phone_forms_agree(exchange, line):
    digits = f"201{exchange}{line:04d}"
    forms = [digits, "1" + digits, "+1" + digits, f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"]
    results = set()
    for form in forms:
        try:
            results.add(normalize_phone(form, "US"))
        except ValueError:
            results.add(None)
    assert len(results) == 1
