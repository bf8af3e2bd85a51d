"""target-optouts: writes opt-outs from any stream to CheckMarket, SlickText and Optizmo.

STATE: each new STATE message drains every sink first (each batch written synchronously), and
is passed on only once that succeeded; at end of input the last STATE follows the final drain.
A failed write stops the run before any later STATE, so no STATE ever covers an opt-out that a
provider did not accept. With `dry_run` nothing is written and no STATE is emitted (a later real
run must still see those records).
"""

from __future__ import annotations

import json
import typing as t

import phonenumbers
from singer_sdk import Target
from singer_sdk.contrib.msgspec import MsgSpecReader

from optouts_providers.redact import install_log_redaction, register_secret
from target_optouts.destinations import Destinations
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


class TargetOptouts(Target):
    """Singer target writing opt-outs to CheckMarket, SlickText (legacy or new API), Optizmo."""

    name = "target-optouts"
    package_name = "optouts-connectors"  # the distribution, for --version and --about
    message_reader_class = MsgSpecReader
    default_sink_class = OptoutsSink
    config_jsonschema = CONFIG_SCHEMA

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
        self.destinations: Destinations = build_destinations(self.config, self.rejects)
        self.summary: dict[str, t.Any] | None = None
        self.emitted_states: list[dict[str, t.Any]] = []

    # -- messages -------------------------------------------------------------------------
    def _process_record_message(self, message_dict: dict) -> None:
        record = message_dict.get("record")
        if "record" in message_dict and not isinstance(record, dict):
            stream = str(message_dict.get("stream"))
            self._assert_sink_exists(stream)
            kind = type(record).__name__
            self.rejects.record(stream, [f"record is not an object ({kind})"], record)
            return
        super()._process_record_message(message_dict)

    def _process_state_message(self, message_dict: dict) -> None:
        self._assert_line_requires(message_dict, requires={"value"})
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

    # -- end of input ---------------------------------------------------------------------
    def process_endofpipe(self) -> None:
        try:
            super().process_endofpipe()
        finally:
            self.destinations.close()
        self.summary = self.destinations.summary()
        self.log_summary(self.summary)

    def log_summary(self, summary: dict[str, t.Any]) -> None:
        mode = " (dry run)" if summary["dry_run"] else ""
        for name, counts in summary["destinations"].items():
            fields = " ".join(f"{key}={counts[key]}" for key in SUMMARY_FIELDS)
            if summary["dry_run"]:
                fields += f" would_write={counts['would_write']}"
            self.logger.info("target-optouts summary: %s %s%s", name, fields, mode)
        inputs = summary["input"]
        self.logger.info(
            "target-optouts summary: input rejected=%d partially_rejected=%d%s",
            inputs["rejected"],
            inputs["partially_rejected"],
            mode,
        )
        self.logger.info("target-optouts summary json: %s", json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    TargetOptouts.cli()
