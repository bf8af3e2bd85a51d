"""target-optouts: writes opt-outs from any stream to CheckMarket, SlickText and Optizmo.

STATE: each new STATE message drains every sink first (each batch written synchronously), and
is passed on only once that succeeded; at end of input the last STATE follows the final drain.
A failed write stops the run before any later STATE, so no STATE ever covers an opt-out that a
provider did not accept. With `dry_run` nothing is written and no STATE is emitted (a later real
run must still see those records).

Bad data never stops the run: a line that is not a Singer message, a RECORD or STATE missing
what it needs, a STATE whose value is not an object, a line longer than `max_line_bytes`, a
record the SDK refuses (missing key properties) is rejected with its reason (`rejects_path`,
counted in the summary, one WARNING line at the end), and every valid record is still written.
A cause outside one record stops the run instead, with one ERROR line, exit status 1 and no
STATE after it (`errors.RunError`): a stream map that fails, a SCHEMA that cannot be used, a
RECORD or BATCH message of a stream no SCHEMA described, a BATCH file that cannot be read.

SIGTERM/SIGINT: the batch in flight is finished (the read of a BATCH file stops at its next
block), what was read is written, the last STATE is emitted, and the process exits with 128 +
the signal number. A repeated signal is a duplicate (Meltano passes the signal on and the OS
sends it to the process group): it changes nothing. Every provider request is bounded (timeouts,
retries, the wait budget), so the finish is too; SIGKILL remains for an operator in a hurry.
"""

from __future__ import annotations

import json
import logging
import typing as t

import phonenumbers
from singer_sdk.exceptions import (
    ConfigValidationError,
    InvalidRecord,
    MappingError,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)

from optouts_providers import progress
from optouts_providers.gctune import settle_gc
from optouts_providers.http import set_total_wait_budget
from optouts_providers.redact import install_log_redaction, redact, register_secret
from optouts_providers.settings import config_error_line
from target_optouts.batchfiles import message_problem, unreadable
from target_optouts.config_schema import CONFIG_SCHEMA, SECRET_SETTINGS
from target_optouts.destinations import Destinations, build_destinations
from target_optouts.errors import BatchFileError, ConfigurationError, RunError
from target_optouts.lines import DEFAULT_MAX_LINE_BYTES
from target_optouts.reader import OptoutsReader, StopReading
from target_optouts.record_blocks import RecordBlocks
from target_optouts.rejects import Rejects
from target_optouts.sinks import OptoutsSink, stream_map_failed

SUMMARY_FIELDS = (
    "written",
    "already_present",
    "skipped_origin",
    "skipped_channel",
    "duplicate",
    "known_present",
    "rejected",
)
# From the destination's client (http.CallStats): the time spent throttled and the retries.
CALL_FIELDS = ("requests", "retries", "rate_limited", "throttled_seconds", "retry_wait_seconds")


__all__ = ["BatchFileError", "TargetOptouts"]


class TargetOptouts(RecordBlocks):
    """Singer target writing opt-outs to CheckMarket, SlickText (legacy or new API), Optizmo."""

    name = "target-optouts"
    package_name = "target-optouts"  # the distribution, for --version and --about
    message_reader_class = OptoutsReader
    default_sink_class = OptoutsSink
    config_jsonschema = CONFIG_SCHEMA
    stop_signal: int | None = None  # set by a termination signal (on_termination_signal)

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
        self.bookmark_properties: dict[str, list[str]] = {}  # per stream, from its SCHEMA
        self.rejects = Rejects(self.config.get("rejects_path"))
        self.rejects.check_writable()  # refused now, not at the first reject mid-run
        self.reader.max_line = int(self.config.get("max_line_bytes") or DEFAULT_MAX_LINE_BYTES)
        set_total_wait_budget(float(self.config.get("max_total_wait_seconds", 3600)))
        progress.configure(self.config.get("progress_interval_seconds"))
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
    def on_record_message(self, message_dict: dict, sdk: t.Callable[[dict], None]) -> None:
        stream = message_dict.get("stream")
        if not isinstance(stream, str) or not stream:
            self.reader.reject_current("a RECORD without a stream name")
            return
        if "record" not in message_dict:
            self.reader.reject_current(f"a RECORD of stream {stream!r} without a record")
            return
        record = message_dict["record"]
        if stream not in self.mapper.stream_maps:
            # Every record of the stream would be refused: the tap's output is out of order.
            raise ConfigurationError(
                f"target-optouts: a RECORD of stream {stream!r} came before any SCHEMA of it "
                f"(input line {self.reader.line_number}); no STATE was emitted past this point"
            )
        if not isinstance(record, dict):
            kind = type(record).__name__
            self.rejects.record(stream, [f"record is not an object ({kind})"], record)
            return
        try:
            sdk(message_dict)
        except MappingError as exc:  # the configuration's, not the record's
            raise stream_map_failed(stream, exc) from None
        except RecordsWithoutSchemaException as exc:
            raise ConfigurationError(f"target-optouts: {redact(exc)}") from None
        except (MissingKeyPropertiesError, InvalidRecord) as exc:
            # Raised before the record reaches a sink: nothing of it was written or queued.
            reason = f"refused by the SDK ({type(exc).__name__}): {redact(exc)}"
            self.rejects.record(stream, [reason[:500]], record)

    def on_schema_message(self, message_dict: dict, sdk: t.Callable[[dict], None]) -> None:
        self.forget_plain_sinks()
        stream = message_dict.get("stream")
        schema = message_dict.get("schema")
        keys = message_dict.get("key_properties")
        bookmarks = message_dict.get("bookmark_properties")
        if isinstance(stream, str) and isinstance(bookmarks, list):
            self.bookmark_properties[stream] = [b for b in bookmarks if isinstance(b, str)]
        # A SCHEMA describes every record of its stream: one it cannot use is configuration.
        problem = None
        if not isinstance(stream, str) or not stream:
            problem = "a SCHEMA without a stream name"
        elif not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
            problem = f"the SCHEMA of stream {stream!r} has no properties"
        elif keys is not None and not (
            isinstance(keys, list) and all(isinstance(key, str) for key in keys)
        ):
            problem = f"the key_properties of stream {stream!r} are not names"
        if problem is None:
            try:
                sdk(message_dict)
                return
            except MappingError as exc:
                raise stream_map_failed(stream, exc) from None
            except Exception as exc:  # whatever the SDK says, it cannot be used
                problem = f"the SCHEMA of stream {stream!r} cannot be used ({type(exc).__name__})"
                problem = f"{problem}: {redact(exc)}"[:500]
        raise ConfigurationError(
            f"target-optouts: {problem} (input line {self.reader.line_number}); no STATE was "
            "emitted past this point"
        )

    def on_activate_version_message(
        self, message_dict: dict, sdk: t.Callable[[dict], None]
    ) -> None:
        if not self._known_stream(message_dict):
            self.reader.reject_current("an ACTIVATE_VERSION message for an unknown stream")
            return
        try:
            sdk(message_dict)
        except Exception as exc:  # a version marker writes nothing: safe to reject
            self.reader.reject_current(f"an unusable ACTIVATE_VERSION message ({exc!r})"[:500])

    def on_batch_message(self, message_dict: dict, sdk: t.Callable[[dict], None]) -> None:
        # A BATCH message holds a whole file of opt-outs: one the target cannot read stops the
        # run, with no STATE after it (going on would acknowledge them unwritten).
        stream = message_dict.get("stream")
        problem = message_problem(message_dict, self.mapper.stream_maps)
        if problem is not None:
            raise unreadable(str(stream), f"{problem} (input line {self.reader.line_number})")
        try:
            sdk(message_dict)
        except OSError as exc:  # storage failing while a file is read
            raise unreadable(str(stream), redact(exc)) from None

    def _known_stream(self, message_dict: dict) -> bool:
        """The message names a stream whose SCHEMA came before."""
        stream = message_dict.get("stream")
        return isinstance(stream, str) and stream in self.mapper.stream_maps

    def on_state_message(self, message_dict: dict) -> dict | None:
        if "value" not in message_dict:
            self.reader.reject_current("a STATE message without a value")
            return None
        state = message_dict["value"]
        if not isinstance(state, dict):  # Meltano would store it as the pipeline's state
            kind = type(state).__name__
            self.reader.reject_current(f"a STATE whose value is not an object ({kind})")
            return None
        return state  # passed on once what came before it is written

    def may_emit_state(self, state: dict) -> bool:
        if self.dry_run or self.config.get("ledger_reconcile"):
            # A reconcile reads everything again: its STATE is no bookmark for a sync.
            self.logger.info("dry_run or ledger_reconcile: STATE not emitted")
            return False
        if self.emitted_states and self.emitted_states[-1] == state:
            return False  # already passed on when it arrived; the final drain repeats it
        self.emitted_states.append(state)
        return True

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

    def on_termination_signal(self, signum: int) -> None:
        if self.stop_signal is not None:
            # A duplicate: Meltano passes the signal on, and the OS sends it to the whole
            # process group. The batch in flight is still finished.
            self.logger.info("target-optouts: signal %d again: already stopping", signum)
            return
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

    @classmethod
    def invoke(cls, **kwargs: t.Any) -> None:  # type: ignore[override]
        """The SDK's, with a `RunError` logged as its one line (the traceback at DEBUG)."""
        try:
            super().invoke(**kwargs)
        except RunError as exc:
            logger = logging.getLogger(cls.name)
            logger.debug("target-optouts: the run stopped", exc_info=True)
            logger.error("%s", exc)
            raise SystemExit(1) from None
        except ConfigValidationError as exc:  # one line naming the settings, as the tap's
            logging.getLogger(cls.name).error("%s", config_error_line(exc))
            raise SystemExit(1) from None

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
        rejected = sum(inputs[key] for key in ("rejected", "partially_rejected", "invalid_lines"))
        refused = inputs.get("refused_by_providers", 0)
        if rejected or refused:
            path = self.rejects.path
            where = f"rejects_path={path}" if path else "rejects_path is not set (reasons above)"
            self.logger.warning(
                "target-optouts: %d input(s) rejected, %d address(es) refused by providers in "
                "this run; %s",
                rejected,
                refused,
                where,
            )


if __name__ == "__main__":
    TargetOptouts.cli()
