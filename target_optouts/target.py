"""target-optouts: writes opt-outs from any stream to CheckMarket, SlickText and Optizmo.

STATE: each new STATE message drains every sink first (each batch written synchronously), and
is passed on only once that succeeded; at end of input the last STATE follows the final drain.
A failed write stops the run before any later STATE, so no STATE ever covers an opt-out that a
provider did not accept. With `dry_run` nothing is written and no STATE is emitted (a later real
run must still see those records).

Bad input never stops the run: a line that is not a Singer message, a RECORD before its
stream's SCHEMA (or for a stream never described), a SCHEMA or STATE missing what it needs, a
record the SDK refuses (missing key properties, a failing stream map) is rejected with its
reason (`rejects_path`, counted in the summary), and every valid record is still written.

SIGTERM/SIGINT: the batch in flight is finished, what was read is written, the last STATE is
emitted, and the process exits with 128 + the signal number. A second signal stops at once,
with no further STATE.
"""

from __future__ import annotations

import json
import typing as t

import phonenumbers
from singer_sdk import Target
from singer_sdk.exceptions import (
    InvalidRecord,
    MappingError,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)

from optouts_providers.gctune import settle_gc
from optouts_providers.http import set_total_wait_budget
from optouts_providers.redact import install_log_redaction, redact, register_secret
from target_optouts.destinations import Destinations
from target_optouts.fastpath import FastRecordMixin
from target_optouts.reader import OptoutsReader, StopReading
from target_optouts.rejects import Rejects
from target_optouts.settings import CONFIG_SCHEMA, SECRET_SETTINGS
from target_optouts.sinks import OptoutsSink
from target_optouts.writers import build_destinations

SUMMARY_FIELDS = (
    "written",
    "already_present",
    "skipped_origin",
    "skipped_channel",
    "duplicate",
    "rejected",
)
# From the destination's client (http.CallStats): the time spent throttled and the retries.
CALL_FIELDS = ("requests", "retries", "rate_limited", "throttled_seconds", "retry_wait_seconds")


class BatchFileError(RuntimeError):
    """A BATCH message's file could not be read."""


class TargetOptouts(FastRecordMixin, Target):
    """Singer target writing opt-outs to CheckMarket, SlickText (legacy or new API), Optizmo."""

    name = "target-optouts"
    package_name = "optouts-connectors"  # the distribution, for --version and --about
    message_reader_class = OptoutsReader
    default_sink_class = OptoutsSink
    config_jsonschema = CONFIG_SCHEMA
    stop_signal: int | None = None  # set by a termination signal (see _handle_termination)

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        install_log_redaction(self.name, "singer_sdk", "target-optouts")
        for provider, keys in SECRET_SETTINGS.items():
            for key in keys:
                register_secret((self.config.get(provider) or {}).get(key))
        region = str(self.config.get("default_phone_region") or "US").upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"default_phone_region {region!r} is not a known region code")
        self.dry_run = bool(self.config.get("dry_run", False))
        self.rejects = Rejects(self.config.get("rejects_path"))
        set_total_wait_budget(float(self.config.get("max_total_wait_seconds", 3600)))
        self.destinations: Destinations = build_destinations(self.config, self.rejects)
        self.summary: dict[str, t.Any] | None = None
        self.emitted_states: list[dict[str, t.Any]] = []
        self.reader.on_invalid = self.rejects.invalid_line
        self.reader.take_records = self.record_taker
        settle_gc()

    @property
    def reader(self) -> OptoutsReader:
        return t.cast(OptoutsReader, self.message_reader)

    # -- messages -------------------------------------------------------------------------
    def _process_record_message(self, message_dict: dict) -> None:
        stream = message_dict.get("stream")
        if not isinstance(stream, str) or not stream:
            self.reader.reject_current("a RECORD without a stream name")
            return
        if "record" not in message_dict:
            self.reader.reject_current(f"a RECORD of stream {stream!r} without a record")
            return
        record = message_dict["record"]
        if stream not in self.mapper.stream_maps:
            reason = f"no SCHEMA for stream {stream!r} came before this record"
            self.rejects.record(stream, [reason], record)
            return
        if not isinstance(record, dict):
            kind = type(record).__name__
            self.rejects.record(stream, [f"record is not an object ({kind})"], record)
            return
        try:
            super()._process_record_message(message_dict)
        except (
            MissingKeyPropertiesError,
            RecordsWithoutSchemaException,
            MappingError,
            InvalidRecord,
        ) as exc:
            # Raised before the record reaches a sink: nothing of it was written or queued.
            reason = f"refused by the SDK ({type(exc).__name__}): {redact(exc)}"
            self.rejects.record(stream, [reason[:500]], record)

    def _process_schema_message(self, message_dict: dict) -> None:
        stream = message_dict.get("stream")
        schema = message_dict.get("schema")
        keys = message_dict.get("key_properties")
        if not isinstance(stream, str) or not stream:
            self.reader.reject_current("a SCHEMA without a stream name")
            return
        if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
            self.reader.reject_current(f"the SCHEMA of stream {stream!r} has no properties")
            return
        if keys is not None and not (
            isinstance(keys, list) and all(isinstance(key, str) for key in keys)
        ):
            self.reader.reject_current(f"the key_properties of stream {stream!r} are not names")
            return
        try:
            super()._process_schema_message(message_dict)
        except Exception as exc:  # registering a schema writes nothing: safe to reject
            reason = f"the SCHEMA of stream {stream!r} is unusable ({type(exc).__name__})"
            self.reader.reject_current(f"{reason}: {redact(exc)}"[:500])

    def _process_activate_version_message(self, message_dict: dict) -> None:
        if not self._known_stream(message_dict):
            self.reader.reject_current("an ACTIVATE_VERSION message for an unknown stream")
            return
        try:
            super()._process_activate_version_message(message_dict)
        except Exception as exc:  # a version marker writes nothing: safe to reject
            self.reader.reject_current(f"an unusable ACTIVATE_VERSION message ({exc!r})"[:500])

    def _process_batch_message(self, message_dict: dict) -> None:
        encoding, manifest = message_dict.get("encoding"), message_dict.get("manifest")
        if not self._known_stream(message_dict):
            self.reader.reject_current("a BATCH message for an unknown stream")
            return
        if not isinstance(encoding, dict) or not isinstance(encoding.get("format"), str):
            self.reader.reject_current("a BATCH message without an encoding format")
            return
        if not isinstance(manifest, list) or not all(isinstance(f, str) for f in manifest):
            self.reader.reject_current("a BATCH message without a manifest of file names")
            return
        try:
            super()._process_batch_message(message_dict)
        except OSError as exc:
            # The message is sound but its opt-outs cannot be read (a file gone, storage
            # down): going on would acknowledge them unwritten. Stop, with no STATE after.
            raise BatchFileError(
                f"target-optouts: a batch file of stream {message_dict['stream']!r} could not "
                f"be read ({redact(exc)}); its opt-outs are not acknowledged (no STATE covers "
                "them): run the tap again from the last STATE"
            ) from None
        except (KeyError, TypeError, ValueError) as exc:
            # An encoding this target cannot read; a failed write is a DeliveryError and
            # stops the run.
            self.reader.reject_current(f"an unusable BATCH message ({exc!r})"[:500])

    def _known_stream(self, message_dict: dict) -> bool:
        """The message names a stream whose SCHEMA came before."""
        stream = message_dict.get("stream")
        return isinstance(stream, str) and stream in self.mapper.stream_maps

    def _process_state_message(self, message_dict: dict) -> None:
        if "value" not in message_dict:
            self.reader.reject_current("a STATE message without a value")
            return
        state = message_dict["value"]
        if self._latest_state == state:
            return
        self._latest_state = state
        # Write what came before this STATE, then pass it on (drain_all emits it).
        self.drain_all()

    def _write_state_message(self, state: dict) -> None:
        if self.dry_run:
            self.logger.info("dry_run: STATE not emitted")
            return
        if self.emitted_states and self.emitted_states[-1] == state:
            return  # already passed on when it arrived; the final drain repeats it
        self.emitted_states.append(state)
        super()._write_state_message(state)

    # -- end of input, signals -------------------------------------------------------------
    def process_endofpipe(self) -> None:
        self.reader.busy = True  # a signal now waits for the final drain
        try:
            super().process_endofpipe()
        finally:
            self.destinations.close()
        self.summary = self.destinations.summary()
        self.log_summary(self.summary)
        if self.stop_signal is not None:
            self.logger.warning(
                "target-optouts: stopped by signal %d; everything read was written and its "
                "last STATE emitted",
                self.stop_signal,
            )
            raise SystemExit(128 + self.stop_signal)

    def _handle_termination(self, signum: int, frame: t.Any) -> None:
        if self.stop_signal is not None:
            self.logger.warning("target-optouts: signal %d again: stopping now", signum)
            raise SystemExit(128 + signum)
        if not hasattr(self, "rejects") or self.reader.line_number == 0:
            raise SystemExit(128 + signum)  # nothing read yet: nothing to finish
        self.stop_signal = signum
        self.logger.info(
            "target-optouts: signal %d: finishing the batch in flight, then writing what was "
            "read and emitting its STATE",
            signum,
        )
        self.reader.stop_signal = signum
        if not self.reader.busy:
            raise StopReading

    def log_summary(self, summary: dict[str, t.Any]) -> None:
        mode = " (dry run)" if summary["dry_run"] else ""
        for name, counts in summary["destinations"].items():
            fields = " ".join(f"{key}={counts[key]}" for key in SUMMARY_FIELDS)
            calls = counts.get("calls") or {}
            fields += "".join(f" {key}={calls[key]}" for key in CALL_FIELDS if key in calls)
            if summary["dry_run"]:
                fields += f" would_write={counts['would_write']}"
            self.logger.info("target-optouts summary: %s %s%s", name, fields, mode)
        inputs = summary["input"]
        self.logger.info(
            "target-optouts summary: input rejected=%d partially_rejected=%d invalid_lines=%d%s",
            inputs["rejected"],
            inputs["partially_rejected"],
            inputs["invalid_lines"],
            mode,
        )
        self.logger.info("target-optouts summary json: %s", json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    TargetOptouts.cli()
