"""The sink: any stream's records become opt-outs, delivered to every destination per batch.

A record that fails schema validation, or holds no usable address, is rejected with its
reasons (counted, logged, `rejects_path`) and the run goes on. `process_batch` returns only
once every destination has accepted the batch, so the STATE the target emits after a drain
never covers an opt-out that was not written.
"""

from __future__ import annotations

import typing as t

from singer_sdk.exceptions import InvalidRecord
from singer_sdk.sinks import BatchSink

from target_optouts.normalize import normalize_record
from target_optouts.validation import FastJSONSchemaValidator

if t.TYPE_CHECKING:
    from singer_sdk.sinks.core import BaseJSONSchemaValidator

    from target_optouts.target import TargetOptouts


class OptoutsSink(BatchSink):
    """Collects one stream's opt-outs; writes them to every destination per batch."""

    def __init__(self, target: TargetOptouts, *args: t.Any, **kwargs: t.Any) -> None:
        self._invalid_reason: str | None = None
        super().__init__(target, *args, **kwargs)
        self.destinations = target.destinations
        self.rejects = target.rejects
        self.region = str(self.config.get("default_phone_region") or "US").upper()

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        return FastJSONSchemaValidator(self.schema) if self.validate_schema else None

    def _validate_and_parse(self, record: dict) -> dict:
        # The SDK would stop the run (or let an invalid record through): remember the
        # reason instead, and reject the record in process_record. Timestamps are not
        # parsed: no field but the addresses is used, and a bad date must not stop an opt-out.
        self._invalid_reason = None
        if self._validator is not None:
            try:
                self._validator.validate(record)
            except InvalidRecord as exc:
                self._invalid_reason = f"schema: {exc.error_message}"
        return record

    def process_record(self, record: dict, context: dict) -> None:
        reason, self._invalid_reason = self._invalid_reason, None
        if reason is not None:
            self.rejects.record(self.stream_name, [reason], record)
            return
        result = normalize_record(record, self.stream_name, self.region)
        if result.optout is None:
            self.rejects.record(self.stream_name, result.reasons, record)
            return
        if result.reasons:
            self.rejects.record(self.stream_name, result.reasons, record, partial=True)
        context.setdefault("optouts", []).append(result.optout)

    def process_batch(self, context: dict) -> None:
        optouts = context.get("optouts") or []
        if optouts:
            self.destinations.deliver(self.stream_name, optouts)
