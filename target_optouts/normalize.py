"""What a record means: the opt-out's email, phone and MD5, normalised, and where it came from.

Field rules (first non-empty field wins):
- email: `email`, `Email`, `EmailAddress`, `email_address`, or `plain` when it holds an `@`;
- phone: `phone`, `number`, `PhoneNumber`, `phone_number`, `mobile_number`, `sms`, or `plain`
  when it holds no `@`;
- MD5: `hashed` (or `plain` when it is 32 hex digits), used only when the record has no email
  and no phone (an Optizmo row's hash is of its own plain value, which is then the better
  address; docs/providers/optizmo.md, 'Hashes').

Emails are trimmed, lowercased and checked (syntax, length <= 254, local part <= 64). An
internationalised address (RFC 6531: UTF-8 local part; RFC 5891: a Unicode domain) that the
fast ASCII rules refuse is checked by `email-validator` and written in one form, whatever form it
came in: the local part in Unicode NFC, lowercased, the domain in its IDNA A-label form
(`jane@bücher.de` and `jane@xn--bcher-kva.de` are one address, `jane@xn--bcher-kva.de`); phones
become E.164 with `phonenumbers` and the default region (digits with a country code but no `+`,
as Optizmo's SMS lists hold them, are accepted too); an MD5 is 32 hex digits, lowercased.
A value that cannot be normalised is a reason; the record's other addresses still count.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import phonenumbers

EMAIL_FIELDS = ("email", "Email", "EmailAddress", "email_address")
PHONE_FIELDS = ("phone", "number", "PhoneNumber", "phone_number", "mobile_number", "sms")
PLAIN_FIELD = "plain"
HASH_FIELD = "hashed"

PROVIDERS = ("checkmarket", "slicktext", "optizmo")

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_LENGTH = 64

_LOCAL_TEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
# A domain label: 1-63 letters, digits and inner hyphens; a top-level domain.
_LABEL_TEXT = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TLD_TEXT = r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})"
# Each is matched whole (fullmatch: `$` would let a value end in a newline).
_LOCAL = re.compile(_LOCAL_TEXT)
_LABEL = re.compile(_LABEL_TEXT)
_TLD = re.compile(_TLD_TEXT)
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
_QUOTED = re.compile(r"\s*\([^)]*\)")
# Digits that may start with a country code: 11+ digits, so that a mistyped 10-digit
# national number is not read as some other country's number.
_DIGITS = re.compile(r"^\d{11,15}$")


def _domain_text(end: str) -> str:
    """A domain's rules at once, the domain followed by `end`: at least two labels, the last
    a top-level domain."""
    return rf"(?:{_LABEL_TEXT}\.)+(?={_LABEL_TEXT}{end}){_TLD_TEXT}"


_VALID_DOMAIN = re.compile(_domain_text(r"\Z"))
# The rules of `passes_email_rules` for a line of lowered values joined by newlines, so that
# a block of addresses is checked in one pass: the whole line at most 254 characters, the
# local part (up to the only '@') at most 64, then the local part's and the domain's patterns.
_LINE_END = r"(?:\n|\Z)"
_EMAIL_LINE = (
    rf"(?=[^\n]{{1,{MAX_EMAIL_LENGTH}}}{_LINE_END})(?=[^@\n]{{1,{MAX_LOCAL_LENGTH}}}@)"
    rf"{_LOCAL_TEXT}@{_domain_text(_LINE_END)}"
)
_EMAIL_LINES = re.compile(rf"(?:{_EMAIL_LINE}\n)*{_EMAIL_LINE}")
ADDRESS_FIELDS = frozenset((*EMAIL_FIELDS, *PHONE_FIELDS, PLAIN_FIELD, HASH_FIELD))


@dataclass(slots=True)
class OptOut:
    """One record's opt-out: its normalised addresses and the stream it came from."""

    stream: str
    email: str | None = None
    phone: str | None = None  # E.164
    md5: str | None = None
    # For the ledger: the record's replication key (when it opted out at its origin) and,
    # for an Optizmo stream, the opt-out list it is on.
    at: str | None = None
    list_id: str | None = None

    @property
    def origin(self) -> str | None:
        return origin_provider(self.stream)


@dataclass(slots=True)
class Normalised:
    """The outcome for one record: an opt-out (None when nothing usable) and the reasons
    for every value that was refused."""

    optout: OptOut | None
    reasons: list[str]


@functools.lru_cache(maxsize=1024)
def origin_provider(stream: str) -> str | None:
    """The provider a stream comes from (`checkmarket_optouts` -> `checkmarket`), if any."""
    lowered = stream.lower()
    for provider in PROVIDERS:
        if lowered.startswith(provider + "_") or lowered.startswith(provider + "-"):
            return provider
    return None


def normalize_email(value: object) -> str:
    """A trimmed, lowercased, syntactically sound email address, or ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"not a string ({type(value).__name__})")
    email = value.strip().lower()
    if passes_email_rules(email):
        return email
    if not email.isascii():
        return international_email(email)
    problem = email_problem(email)
    if problem is not None:
        raise ValueError(problem)
    return email


def passes_email_rules(email: str) -> bool:
    """Every rule of `email_problem` at once, for a trimmed, lowercased address (most pass;
    `email_problem` then only names what is wrong)."""
    local, at, domain = email.rpartition("@")
    return bool(
        at
        and len(email) <= MAX_EMAIL_LENGTH
        and len(local) <= MAX_LOCAL_LENGTH
        and _valid_domain(domain)
        and _LOCAL.fullmatch(local)
    )


def international_email(email: str) -> str:
    """The one form of an address with characters beyond ASCII (trimmed, lowercased): the
    local part NFC, the domain IDNA-encoded (A-labels), both then held to the ASCII rules'
    limits (lengths in UTF-8 bytes, RFC 6531); or ValueError with email-validator's reason."""
    import email_validator  # here: its 16 ms of import only for a run that needs it

    try:
        found = email_validator.validate_email(
            email,
            check_deliverability=False,  # no DNS lookups: a syntax check only
            allow_smtputf8=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
            globally_deliverable=False,  # the domain's own rules follow, as for ASCII
        )
    except email_validator.EmailNotValidError as exc:
        # Its reason, less the quoted part of the address some reasons add (reasons are
        # logged and counted; addresses never are).
        raise ValueError(_QUOTED.sub("", str(exc)).rstrip(". ")) from None
    local = unicodedata.normalize("NFC", found.local_part.lower())
    domain = found.ascii_domain
    address = f"{local}@{domain}"
    if len(address.encode()) > MAX_EMAIL_LENGTH:
        raise ValueError(f"longer than {MAX_EMAIL_LENGTH} bytes")
    if len(local.encode()) > MAX_LOCAL_LENGTH:
        raise ValueError(f"local part longer than {MAX_LOCAL_LENGTH} bytes")
    if local.isascii() and not _LOCAL.fullmatch(local):
        raise ValueError("invalid characters before '@'")
    if not _valid_domain(domain):
        raise ValueError("invalid domain")
    return address


@functools.lru_cache(maxsize=1 << 14)
def _valid_domain(domain: str) -> bool:
    """The domain rules of `email_problem`, remembered per domain (addresses share a few)."""
    return _VALID_DOMAIN.fullmatch(domain) is not None


def normalize_emails(values: list[Any]) -> list[str] | None:
    """`normalize_email` of every value, when every one is a sound address as it stands (no
    blank around it): the block is lowered and checked in one pass. None when some value is
    not (then each takes `normalize_email`, which says what is wrong)."""
    if not values:
        return None
    try:
        lowered = "\n".join(values).lower()
    except TypeError:  # a value that is not a string
        return None
    if _EMAIL_LINES.fullmatch(lowered) is None:
        return None
    out = lowered.split("\n")
    return out if len(out) == len(values) else None


def email_problem(email: str) -> str | None:
    """What is wrong with a trimmed, lowercased address, rule by rule (None: nothing)."""
    if len(email) > MAX_EMAIL_LENGTH:
        return f"longer than {MAX_EMAIL_LENGTH} characters"
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        return "not an email address"
    if len(local) > MAX_LOCAL_LENGTH:
        return f"local part longer than {MAX_LOCAL_LENGTH} characters"
    if not _LOCAL.fullmatch(local):
        return "invalid characters before '@'"
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return "invalid domain"
    if not _TLD.fullmatch(labels[-1]):
        return "invalid top-level domain"
    return None


def normalize_phone(value: object, region: str) -> str:
    """The E.164 form of a phone number, read in `region` unless it carries a country code."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"not a string ({type(value).__name__})")
    text = value.strip()
    if not text:
        raise ValueError("empty")
    candidates = [text]
    digits = re.sub(r"[\s().-]", "", text)
    if _DIGITS.match(digits):
        # Country code without '+' (Optizmo SMS lists: "12015550123"; optizmo.md, 'Collect').
        candidates.append("+" + digits)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise ValueError(f"not a valid phone number for region {region}")


def normalize_md5(value: object) -> str:
    if not isinstance(value, str) or not _MD5.match(value.strip()):
        raise ValueError("not 32 hexadecimal digits")
    return value.strip().lower()


def _first(record: dict[str, Any], names: tuple[str, ...]) -> tuple[str, Any] | None:
    for name in names:
        value = record.get(name)
        if value is not None and _present(value):
            return name, value
    return None


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


# The email fields and phone fields records have, in rule order, and whether they have any
# address field.
Layout = tuple[tuple[str, ...], tuple[str, ...], bool]


def schema_layout(schema: dict[str, Any]) -> Layout | None:
    """The layout of every record a closed schema (no additional properties) accepts, for
    records validated against it; None for an open schema."""
    properties = schema.get("properties")
    if schema.get("additionalProperties", True) is not False or not isinstance(properties, dict):
        return None
    return _layout(tuple(properties))


@functools.lru_cache(maxsize=256)
def _layout(keys: tuple[str, ...]) -> Layout:
    """The layout of records with these keys (a stream's records share them)."""
    present = ADDRESS_FIELDS.intersection(keys)
    return (
        tuple(name for name in EMAIL_FIELDS if name in present),
        tuple(name for name in PHONE_FIELDS if name in present),
        bool(present),
    )


# A block plan: the field holding the email of every record of the schema, and the fields
# that must be empty (null) for that email to be all the record says (see `block_plan`).
BlockPlan = tuple[str, tuple[str, ...]]


def block_plan(schema: dict[str, Any]) -> BlockPlan | None:
    """How `emails_of_block` reads a block of records valid against a closed schema: when a
    record's first email field (else `plain`) holds a sound email and its phone fields (and
    `plain`, when it is not the email's field) are null, the opt-out is that email alone (an
    MD5 counts only without an email, normalize_record). None when the schema has no email
    field or is open."""
    layout = schema_layout(schema)
    if layout is None:
        return None
    email_names, phone_names, _ = layout
    has_plain = PLAIN_FIELD in schema["properties"]
    if email_names:
        return email_names[0], phone_names + ((PLAIN_FIELD,) if has_plain else ())
    if has_plain:
        return PLAIN_FIELD, phone_names
    return None


def emails_of_block(records: list[dict[str, Any]], plan: BlockPlan) -> list[str] | None:
    """Each record's normalised email, when every record of the block is an email alone as the
    plan reads it (what `normalize_record` finds then, at a fraction of the cost); None when
    some record is not (then each takes `normalize_record`)."""
    field, empty = plan
    for name in empty:
        for record in records:
            if record.get(name) is not None:
                return None
    return normalize_emails([record.get(field) for record in records])


def normalize_record(
    record: Any, stream: str, region: str = "US", layout: Layout | None = None
) -> Normalised:
    """Read one record's opt-out. Never raises: what cannot be used becomes a reason.
    `layout`: the record's schema's (`schema_layout`), when the record is valid against it."""
    if not isinstance(record, dict):
        return Normalised(None, [f"record is not an object ({type(record).__name__})"])
    reasons: list[str] = []
    email_names, phone_names, any_field = layout or _layout(tuple(record))
    if not any_field:
        return Normalised(None, ["no email, phone or MD5 field"])
    email_field = _first(record, email_names) if email_names else None
    phone_field = _first(record, phone_names) if phone_names else None
    plain = record.get(PLAIN_FIELD)
    hashed_field: tuple[str, Any] | None = None
    hashed = record.get(HASH_FIELD)
    if hashed is not None and _present(hashed):
        hashed_field = (HASH_FIELD, hashed)
    if _present(plain):
        if isinstance(plain, str) and "@" in plain:
            email_field = email_field or (PLAIN_FIELD, plain)
        elif isinstance(plain, str) and _MD5.match(plain.strip()):
            hashed_field = hashed_field or (PLAIN_FIELD, plain)  # an MD5-only list's export
        else:
            phone_field = phone_field or (PLAIN_FIELD, plain)
    email = phone = md5 = None
    if email_field:
        name, value = email_field
        try:
            email = normalize_email(value)
        except ValueError as exc:
            reasons.append(f"{name}: {exc}")
    if phone_field:
        name, value = phone_field
        try:
            phone = normalize_phone(value, region)
        except ValueError as exc:
            reasons.append(f"{name}: {exc}")
    if hashed_field and email is None and phone is None and not reasons:
        name, value = hashed_field
        try:
            md5 = normalize_md5(value)
        except ValueError as exc:
            reasons.append(f"{name}: {exc}")
    if email is None and phone is None and md5 is None:
        if not reasons:
            reasons.append("no email, phone or MD5 field")
        return Normalised(None, reasons)
    return Normalised(OptOut(stream, email, phone, md5), reasons)
