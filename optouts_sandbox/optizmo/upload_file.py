"""Reading a bulk upload file ('Bulk upload'): one entry a line, trimmed and lowercased."""

from __future__ import annotations

import re

from optouts_providers.optizmo import wire


def parse_upload(text: str, kind: str) -> tuple[list[str], int, int]:
    """(valid entries, lines submitted, malformed lines) of an upload file: each line is
    trimmed and lowercased, blank lines skipped. A file already in that form (what clients
    send) is read by one regular expression pass."""
    pattern = _VALID_SMS_LINES if kind == "sms" else _VALID_EMAIL_LINES
    if text == text.lower() and _plain_lines(text):
        lines = text.split("\n")
        submitted = len(lines) - lines.count("")
        entries = pattern.findall(text)
        return entries, submitted, submitted - len(entries)
    entries, submitted = [], 0
    for line in text.splitlines():
        value = wire.normalize(line)
        if value:
            submitted += 1
            if wire.valid_upload_entry(value, kind):
                entries.append(value)
    return entries, submitted, submitted - len(entries)


def _plain_lines(text: str) -> bool:
    """True when every line ends with \\n alone and has no blanks around its value (what the
    one-pass reading needs). ASCII text is checked with substring searches; other text by
    the regular expression (slower)."""
    if not text.isascii():
        return not _NOT_PLAIN_LINES.search(text)
    return not (
        _ASCII_ODD_SPACE.search(text)
        or " \n" in text
        or "\n " in text
        or text.startswith(" ")
        or text.endswith(" ")
    )


def _anchored(*patterns: re.Pattern[str]) -> re.Pattern[str]:
    """Whole lines matching any of `patterns` (their own ^...$ dropped), for lowercase text
    (the patterns' own letters are lowercase)."""
    inner = "|".join(p.pattern.removeprefix("^").removesuffix("$") for p in patterns)
    return re.compile(f"^(?:{inner})$", re.MULTILINE)


_VALID_EMAIL_LINES = _anchored(wire.MD5_RE, wire.EMAIL_RE)
_VALID_SMS_LINES = _anchored(wire.MD5_RE, wire.SMS_RE)
# ASCII whitespace other than a space and \n.
_ASCII_ODD_SPACE = re.compile(r"[\t\r\v\f\x1c-\x1f]")
# What only the line-by-line reading handles: line ends other than \n, blanks around a value.
_NOT_PLAIN_LINES = re.compile(
    r"[\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]|^[^\S\n]|[^\S\n]$", re.MULTILINE
)
