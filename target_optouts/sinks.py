"""The sink: any stream's records become opt-outs, delivered to every destination per batch.

A record that fails schema validation, or holds no usable address, is rejected with its
reasons (counted, logged, `rejects_path`) and the run goes on. Opt-outs go to the
destinations in parts of `PART` as they arrive (`Destinations.feed`), so a batch never sits
in memory; `process_batch` completes the batch (a partial CheckMarket POST, the Optizmo bulk
upload) and returns only once every destination has accepted it, so the STATE the target
emits after a drain never covers an opt-out that was not written.

BATCH messages (JSON lines, plain or gzip; `batchfiles.py`): each file is read a block of lines
at a time, and each record takes the path of a RECORD message's record (stream map, validation,
key properties, normalisation). A file's records join the current batch, written when the
target drains.

A stream map that fails is configuration, not data: it stops the run (`ConfigurationError`).
"""

from __future__ import annotations

import functools
import typing as t

import simpleeval
from singer_sdk.exceptions import InvalidRecord, MappingError, MissingKeyPropertiesError
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.sinks import BatchSink

from optouts_providers.redact import redact
from target_optouts.batchfiles import encoding_problem, open_file, read_records, unreadable
from target_optouts.errors import ConfigurationError
from target_optouts.normalize import (
    BlockPlan,
    OptOut,
    block_plan,
    emails_of_block,
    normalize_record,
    origin_provider,
    schema_layout,
)
from target_optouts.sdk import SDC_FIELDS, SinkHooks
from target_optouts.validation import FastJSONSchemaValidator

if t.TYPE_CHECKING:
    from singer_sdk.mapper import StreamMap
    from singer_sdk.sinks.core import BaseJSONSchemaValidator

    from target_optouts.sdk import BaseBatchFileEncoding
    from target_optouts.target import TargetOptouts

# Opt-outs handed to the destinations at a time.
PART = 5000


class OptoutsSink(SinkHooks):
    """Collects one stream's opt-outs; writes them to every destination per batch."""

    # Records between two drains when no STATE comes first. Memory does not grow with it
    # (opt-outs leave in parts); a drain costs requests (a bulk upload each).
    MAX_SIZE_DEFAULT = 1_000_000

    def __init__(self, target: TargetOptouts, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(target, *args, **kwargs)
        self.destinations = target.destinations
        self.rejects = target.rejects
        self.mapper = target.mapper
        self.reader = target.reader
        self.region = str(self.config.get("default_phone_region") or "US").upper()
        self._part: list[OptOut] = []
        # Where a valid record's addresses are (a closed schema's fields); None: look.
        self._layout = schema_layout(self.schema) if self.record_validator is not None else None
        # What the ledger keeps of a record beside its addresses: when it opted out at its
        # origin (the stream's replication key) and, for an Optizmo stream, the list.
        self._at_field, self._list_field = ledger_fields(
            self.schema, target.bookmark_properties.get(self.stream_name), self.stream_name
        )

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        validator = FastJSONSchemaValidator(self.schema) if self.validate_schema else None
        self.record_validator = validator
        return validator

    def schema_problem(self, record: dict) -> str | None:
        try:
            self.record_validator.validate(record)  # type: ignore[union-attr]
        except InvalidRecord as exc:
            return f"schema: {exc.error_message}"
        return None

    def _all_valid(self, records: list[t.Any]) -> bool:
        validator = self.record_validator
        return isinstance(validator, FastJSONSchemaValidator) and validator.all_valid(records)

    def process_record(self, record: dict, context: dict) -> None:
        reason, self.invalid_reason = self.invalid_reason, None
        if reason is not None:
            self.rejects.record(self.stream_name, [reason], record)
            return
        result = normalize_record(record, self.stream_name, self.region, self._layout)
        if result.optout is None:
            self.rejects.record(self.stream_name, result.reasons, record)
            return
        if result.reasons:
            self.rejects.record(self.stream_name, result.reasons, record, partial=True)
        if self._at_field or self._list_field:
            self._origin_details(result.optout, record)
        self._part.append(result.optout)
        if len(self._part) >= PART:
            self._feed()

    def _origin_details(self, optout: OptOut, record: dict[str, t.Any]) -> None:
        if self._at_field:
            optout.at = _text(record.get(self._at_field))
        if self._list_field:
            optout.list_id = _text(record.get(self._list_field))

    def _feed(self) -> None:
        part, self._part = self._part, []
        if part:
            self.destinations.feed(self.stream_name, part)

    def process_batch(self, context: dict) -> None:
        for record in context.get("records") or ():  # the SDK's own batch-file reading
            self._take(record)
        self._feed()
        self.destinations.complete(self.stream_name)

    # -- BATCH messages ---------------------------------------------------------------------
    def process_batch_files(self, encoding: BaseBatchFileEncoding, files: t.Sequence[str]) -> None:
        stream = self.stream_name
        problem = encoding_problem(str(encoding.format), encoding.compression)
        if problem is not None:  # checked with the message (target.py); here for subclasses
            raise unreadable(stream, problem)
        storage = self.batch_config.storage if self.batch_config else None
        mapping = self._stream_map()
        count = 0
        try:
            for path in files:
                with open_file(path, storage, encoding.compression, stream) as handle:
                    for records, lines in read_records(
                        handle,
                        path.rsplit("/", 1)[-1],
                        stream,
                        self._reject_line,
                        max_line=self.reader.max_line,
                        stopped=lambda: self.reader.stop_signal is not None,
                    ):
                        count += lines
                        self._take_block(records, mapping)
        finally:
            # The records wait in this sink's batch like RECORD messages' (written when it
            # drains); those of a file cut short too (a signal: they are written, no STATE
            # covers them).
            self.tally_record_read(count)
            self.record_counter_metric.increment(count)

    def take_records(self, records: list[dict[str, t.Any]]) -> None:
        """Records of RECORD messages in a row, unmapped (`record_blocks.RecordBlocks`): what
        the SDK's path does to each (its `_sdc` fields dropped first), a block at a time."""
        if self._may_carry_sdc:
            for record in records:
                self.remove_sdc_fields(record)
        self._take_block(records)

    @functools.cached_property
    def key_set(self) -> frozenset[str]:
        return frozenset(self.key_properties or ())

    @functools.cached_property
    def _may_carry_sdc(self) -> bool:
        """Whether a record valid or not may hold `_sdc` fields worth looking for: an open
        schema, or one that names some (a closed schema's records that hold others are
        invalid, and take `_take`, which drops them)."""
        properties = self.schema.get("properties") or {}
        return self._layout is None or not SDC_FIELDS.isdisjoint(properties)

    def _take_block(self, records: list[t.Any], mapping: StreamMap | None = None) -> None:
        # Valid as a block (one call), each record need not be checked again.
        self.block_valid = mapping is None and self._all_valid(records)
        try:
            if self.block_valid and self._plain_block_path:
                self._take_valid_block(records)
            else:
                for record in records:
                    self._take(record, mapping)
        finally:
            self.block_valid = False

    @functools.cached_property
    def _plain_block_path(self) -> bool:
        """Whether `_take_valid_block` may stand for `_take`: the steps it leaves out do
        nothing for this sink (a subclass changing them takes `_take`)."""
        cls = type(self)
        return (
            self._layout is not None
            and cls.preprocess_record is BatchSink.preprocess_record
            and cls.process_record is OptoutsSink.process_record
        )

    def _take_valid_block(self, records: list[t.Any]) -> None:
        """`_take` for a block of records valid against a closed schema, unmapped: one loop
        instead of five calls a record (validation, preprocessing and the key check are
        done for the block, or have nothing to do)."""
        keys, stream, region, layout = self.key_set, self.stream_name, self.region, self._layout
        if self._block_plan is not None and (
            not keys or self._keys_required or all(keys <= r.keys() for r in records)
        ):
            emails = emails_of_block(records, self._block_plan)
            if emails is not None:
                at, listed = self._at_field, self._list_field
                if at or listed:
                    self._part.extend(
                        [
                            OptOut(stream, email, at=_text(r.get(at)), list_id=_text(r.get(listed)))
                            for email, r in zip(emails, records, strict=True)
                        ]
                    )
                else:
                    self._part.extend([OptOut(stream, email) for email in emails])
                if len(self._part) >= PART:
                    self._feed()
                return
        rejects = self.rejects
        for record in records:
            if keys and not keys <= record.keys():
                self._take(record)  # the SDK's check words the refusal
                continue
            result = normalize_record(record, stream, region, layout)
            optout = result.optout
            if optout is None:
                rejects.record(stream, result.reasons, record)
                continue
            if result.reasons:
                rejects.record(stream, result.reasons, record, partial=True)
            if self._at_field or self._list_field:
                self._origin_details(optout, record)
            self._part.append(optout)
            if len(self._part) >= PART:
                self._feed()

    @functools.cached_property
    def _block_plan(self) -> BlockPlan | None:
        return block_plan(self.schema) if self._layout is not None else None

    @functools.cached_property
    def _keys_required(self) -> bool:
        """Whether the schema requires the key properties (a valid record then has them)."""
        return self.key_set <= frozenset(self.schema.get("required") or ())

    def _reject_line(self, reason: str) -> None:
        self.rejects.record(self.stream_name, [reason], None)

    def _take(self, record: t.Any, mapping: StreamMap | None = None) -> None:
        """A record of a batch file, along the path of a RECORD message's record."""
        if not isinstance(record, dict):
            kind = type(record).__name__
            self.rejects.record(self.stream_name, [f"record is not an object ({kind})"], record)
            return
        if mapping is not None:
            try:
                mapped = mapping.transform(record)
            except MappingError as exc:
                raise stream_map_failed(self.stream_name, exc) from None
            if mapped is None:
                return  # filtered out by the stream map
            record = mapped
        self.remove_sdc_fields(record)
        record = self.preprocess_record(self.validate_and_parse(record), {})
        try:
            self.check_key_properties(record)
        except MissingKeyPropertiesError as exc:
            self.invalid_reason = None
            reason = f"refused by the SDK ({type(exc).__name__}): {redact(exc)}"
            self.rejects.record(self.stream_name, [reason[:500]], record)
            return
        self.process_record(record, {})

    def _stream_map(self) -> StreamMap | None:
        """The stream map that makes this sink's stream (None: the records are as they come)."""
        for maps in self.mapper.stream_maps.values():
            for mapping in maps:
                if mapping.stream_alias == self.stream_name:
                    unchanged = type(mapping) is SameRecordTransform and not (
                        mapping.flattening_options and mapping.flattening_enabled
                    )
                    return None if unchanged else mapping
        return None


def stream_map_failed(stream: str, exc: Exception) -> ConfigurationError:
    """The error that stops a run whose stream map fails (every record would be refused).
    What the expression met is named only when it is a name of the map (a value of the
    record, which a message may quote, is never logged)."""
    cause = exc.__cause__
    detail = f"; {type(cause).__name__}" if cause is not None else ""
    if isinstance(cause, simpleeval.NameNotDefined):
        detail += f": {cause}"
    return ConfigurationError(
        f"target-optouts: the stream map of stream {stream!r} failed "
        f"({type(exc).__name__}: {redact(exc)}{detail})"[:600]
        + "; check stream_maps in the target's config (no STATE was emitted past this point)"
    )


def ledger_fields(
    schema: dict[str, t.Any], bookmarks: list[str] | None, stream: str
) -> tuple[str | None, str | None]:
    """The record fields holding when it opted out (the stream's replication key, from its
    SCHEMA message) and its Optizmo list (an Optizmo stream's `optout_list_id`)."""
    properties = schema.get("properties") or {}
    at = bookmarks[0] if bookmarks and bookmarks[0] in properties else None
    listed = "optout_list_id" if origin_provider(stream) == "optizmo" else None
    return at, listed if listed in properties else None


def _text(value: t.Any) -> str | None:
    return value if isinstance(value, str) and value else None
