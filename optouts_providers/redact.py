"""Keep credentials and pre-signed URL signatures out of every log line and message.

Clients register each secret they are given; `redact` replaces them (and anything that looks
like a pre-signed signature or an Authorization value) with `***`. `install_log_redaction`
masks every log record where it is made (a log-record factory: whatever handlers a logging
config adds, to files or elsewhere), keeps the filter on the loggers that print URLs (urllib3
logs full request lines at DEBUG) and on the root handlers, and masks the traceback of an
exception nobody caught.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from types import TracebackType
from typing import Any

MASK = "***"
METRIC_MESSAGE = "METRIC: %s"  # how the SDK logs a metric point (singer_sdk.metrics.log)

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

# Query parameters of pre-signed storage URLs, and credential-shaped fragments.
_SIGNED_PARAM = re.compile(
    r"(?i)\b(Signature|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|AWSAccessKeyId"
    r"|sig|token|api_key|apikey|key)=([^&\s\"'<>]+)"
)
_AUTH_VALUE = re.compile(r"(?i)\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]{6,}")
_AUTH_HEADER = re.compile(
    r"(?i)(['\"]?(?:authorization|x-master-key|x-key|api_key)['\"]?\s*[:=]\s*['\"]?)([^'\",}\s]+)"
)


def register_secret(value: str | None) -> None:
    """Remember a credential so that `redact` masks it from now on."""
    global _pattern
    if not value or len(value) < 4:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: object) -> str:
    """Return `text` as a string with every known secret and signature masked."""
    out = str(text)
    pattern = _pattern
    if pattern is not None:
        out = pattern.sub(MASK, out)
    out = _SIGNED_PARAM.sub(lambda m: f"{m.group(1)}={MASK}", out)
    out = _AUTH_VALUE.sub(lambda m: f"{m.group(1)} {MASK}", out)
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{MASK}", out)


def strip_query(url: str) -> str:
    """The URL without its query string: what an error message may name as the endpoint."""
    return url.split("?", 1)[0]


class _Redacted(str):
    """A message already masked. The mark travels in the message's type, not in an attribute
    of the record: a JSON log formatter prints a record's extra attributes."""

    __slots__ = ()


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask secrets in a record's message and exception text (in place)."""
    if type(record.msg) is _Redacted and record.args is None:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a malformed log call must not break the run
        message = str(record.msg)
    masked = redact(message)
    if masked == message and record.msg == METRIC_MESSAGE:
        # Kept as logged: the SDK's JSON formatter reads a metric's point from msg and args.
        return record
    record.msg = _Redacted(masked)
    record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        record.exc_text = redact(
            logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
        )
        record.exc_info = (type(exc), exc, None)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message and its exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_FILTER = RedactingFilter()
_LOGGERS = ("urllib3", "urllib3.connectionpool", "requests", "backoff", "optouts")
_installed = False


def install_log_redaction(*extra_loggers: str) -> None:
    """Mask secrets in every log record and in uncaught exceptions' tracebacks."""
    global _installed
    for name in (*_LOGGERS, *extra_loggers):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(make_record(*args, **kwargs))

    logging.setLogRecordFactory(redacting_factory)
    sys.excepthook = _redacting_excepthook
    threading.excepthook = _redacting_thread_excepthook


def _redacting_excepthook(
    kind: type[BaseException], exc: BaseException | None, tb: TracebackType | None
) -> None:
    text = "".join(traceback.format_exception(kind, exc, tb))
    sys.stderr.write(redact(text))
    sys.stderr.flush()


def _redacting_thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    sys.stderr.write(f"Exception in thread {args.thread.name if args.thread else '?'}:\n")
    _redacting_excepthook(args.exc_type, args.exc_value, args.exc_traceback)
