"""Errors that stop a run: each is logged as one ERROR line, the process exits 1, no STATE.

A cause outside one record (the configuration, a stream map, a SCHEMA, a BATCH file the
target cannot read) would reject every record it touches: rejecting them one by one and
passing the STATE on would skip those opt-outs for good, so the run stops instead, and the
next one starts again from the last STATE emitted.
"""

from __future__ import annotations


class RunError(RuntimeError):
    """The run cannot go on without dropping opt-outs (the message is the whole reason)."""


class ConfigurationError(RunError, ValueError):
    """A setting, stream map or SCHEMA that cannot work."""


class BatchFileError(RunError):
    """A BATCH message whose files cannot be read: their opt-outs are not acknowledged."""
