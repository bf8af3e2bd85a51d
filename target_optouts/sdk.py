"""Every private singer-sdk name the target uses: imported, overridden or called here only
(tests/test_sdk_private_names.py keeps it so), each with why. The rest of the target uses the
SDK's public hooks, and the public-named methods these hooks hand over to.

Imported: `BaseBatchFileEncoding`, `StorageTarget`, a BATCH message's encoding and the storage
of its files (singer-sdk 0.54 has them in `singer_sdk.helpers._batch` only).

`TargetHooks` (Target):
- `_process_{record,schema,activate_version,batch,state}_message`: the SDK has no public hook
  per message kind. Each checks the message first and tells data (one record: rejected with its
  reason) from configuration (a stream map, a SCHEMA, a BATCH file: the run stops), which the
  SDK's would raise alike or let through (`TargetOptouts.on_*_message`). A STATE drains every
  sink, so that it is passed on only once the providers accepted what came before it.
- `_write_state_message`: no STATE in a dry run or a reconcile, and none twice.
- `_handle_termination`: the SDK drains and exits inside the signal handler, wherever the read
  was (a BATCH file half read, a batch half sent); here the batch in flight is finished first
  (`TargetOptouts.on_termination_signal`). A repeated signal is a duplicate, as the SDK's main
  now treats it (Meltano and the OS both send one).
- called or read: `_sinks_active` (which sink a stream's records reach unchanged, for record
  blocks), `_handle_max_record_age` (after each block, as the SDK does after each record),
  `_latest_state` (the SDK's check that a STATE is new, kept as it is).

`SinkHooks` (BatchSink):
- `_validate_and_parse`: a record failing the schema is remembered and rejected by
  `process_record`; the SDK logs a traceback and stops the run, or lets it through. Timestamps
  are not parsed: no field but the addresses is used, and a bad date must not stop an opt-out.
  A block already validated as a whole is not validated again record by record.
- called, for the records of BATCH files (which the SDK's per-message path never sees):
  `_remove_sdc_metadata_from_record`, `_singer_validate_message`.

`SDK_SOURCES` holds a digest of the source of every SDK function named above, for the pinned
singer-sdk: the test fails when an upgrade changes one, and names what to re-read.
`use_stock_sdk` switches the record blocks off (the equivalence tests, benchmarks).
"""

from __future__ import annotations

import typing as t

from singer_sdk import Target
from singer_sdk.helpers._batch import BaseBatchFileEncoding, StorageTarget
from singer_sdk.sinks import BatchSink

from optouts_providers.sdk_digest import sdk_source_digest

if t.TYPE_CHECKING:
    from singer_sdk.sinks import Sink
    from singer_sdk.sinks.core import BaseJSONSchemaValidator

__all__ = [
    "SDC_FIELDS",
    "SDK_SOURCES",
    "BaseBatchFileEncoding",
    "SinkHooks",
    "StorageTarget",
    "TargetHooks",
    "sdk_source_digest",
    "use_stock_sdk",
]

SDC_FIELDS = frozenset(
    (
        "_sdc_extracted_at",
        "_sdc_received_at",
        "_sdc_batched_at",
        "_sdc_deleted_at",
        "_sdc_sequence",
        "_sdc_table_version",
    )
)

# The sha256 (16 hex digits) of `inspect.getsource` of each SDK function the hooks override or
# call, for singer-sdk 0.54.x. When one changes, re-read it against its hook below, then record
# the new digest.
SDK_SOURCES = {
    "singer_sdk.target_base.Target._process_record_message": "08aaf4096e2d39e7",
    "singer_sdk.target_base.Target._process_schema_message": "ed6e8449bc8ff234",
    "singer_sdk.target_base.Target._process_activate_version_message": "377950028ca9b3eb",
    "singer_sdk.target_base.Target._process_batch_message": "f26fbe519745daf2",
    "singer_sdk.target_base.Target._process_state_message": "e27158e2b1e7ea6d",
    "singer_sdk.target_base.Target._write_state_message": "bf40aa5e36ebef4d",
    "singer_sdk.target_base.Target._handle_termination": "0d610b822293792b",
    "singer_sdk.target_base.Target._handle_max_record_age": "5762750ab1035404",
    "singer_sdk.target_base.Target.drain_all": "1da0109210d345c4",
    "singer_sdk.sinks.core.Sink._validate_and_parse": "970aadabcc4da8c7",
    "singer_sdk.sinks.core.Sink._remove_sdc_metadata_from_record": "7cd9e5fb192f13ec",
    "singer_sdk.sinks.core.Sink._singer_validate_message": "018b08ee7f624f61",
}


Handler = t.Callable[[dict], None]


class TargetHooks(Target):
    """The private Target methods the target overrides or calls (see the module docstring)."""

    def _process_record_message(self, message_dict: dict) -> None:
        self.on_record_message(message_dict, super()._process_record_message)

    def _process_schema_message(self, message_dict: dict) -> None:
        self.on_schema_message(message_dict, super()._process_schema_message)

    def _process_activate_version_message(self, message_dict: dict) -> None:
        self.on_activate_version_message(message_dict, super()._process_activate_version_message)

    def _process_batch_message(self, message_dict: dict) -> None:
        self.on_batch_message(message_dict, super()._process_batch_message)

    def _process_state_message(self, message_dict: dict) -> None:
        state = self.on_state_message(message_dict)
        if state is None or self._latest_state == state:  # the SDK's check
            return
        self._latest_state = state
        self.drain_all()  # emits it once every sink's batch is written

    def _write_state_message(self, state: dict) -> None:
        if self.may_emit_state(state):
            super()._write_state_message(state)

    def _handle_termination(self, signum: int, frame: t.Any) -> None:
        self.on_termination_signal(signum)

    def active_sink(self, stream: str) -> Sink | None:
        """The sink the stream's records go to now (None before its SCHEMA)."""
        return self._sinks_active.get(stream)

    def handle_max_record_age(self) -> None:
        self._handle_max_record_age()

    # What the target defines (target.py).
    def on_record_message(self, message_dict: dict, sdk: Handler) -> None:
        sdk(message_dict)

    def on_schema_message(self, message_dict: dict, sdk: Handler) -> None:
        sdk(message_dict)

    def on_activate_version_message(self, message_dict: dict, sdk: Handler) -> None:
        sdk(message_dict)

    def on_batch_message(self, message_dict: dict, sdk: Handler) -> None:
        sdk(message_dict)

    def on_state_message(self, message_dict: dict) -> dict | None:
        """The STATE to pass on once what came before it is written (None: none)."""
        return message_dict.get("value")

    def may_emit_state(self, state: dict) -> bool:
        return True

    def on_termination_signal(self, signum: int) -> None:
        super()._handle_termination(signum, None)


class SinkHooks(BatchSink):
    """The private Sink methods the sink overrides or calls (see the module docstring)."""

    invalid_reason: str | None = None  # why the record being processed failed the schema
    block_valid = False  # the records being taken were validated as a block
    record_validator: BaseJSONSchemaValidator | None = None  # what get_validator made

    def _validate_and_parse(self, record: dict) -> dict:
        self.invalid_reason = None
        if self.record_validator is not None and not self.block_valid:
            self.invalid_reason = self.schema_problem(record)
        return record

    def schema_problem(self, record: dict) -> str | None:
        """Why the record fails the schema (None: it does not)."""
        raise NotImplementedError

    def validate_and_parse(self, record: dict) -> dict:
        return self._validate_and_parse(record)

    def remove_sdc_fields(self, record: dict) -> None:
        """The SDK's step before validation, for a BATCH file's record: `_sdc` fields dropped."""
        if not SDC_FIELDS.isdisjoint(record):  # the SDK's pops each of them, every record
            self._remove_sdc_metadata_from_record(record)

    def check_key_properties(self, record: dict) -> None:
        """The SDK's check (MissingKeyPropertiesError) that the record has its keys."""
        self._singer_validate_message(record)


def use_stock_sdk() -> None:
    """The SDK's own record path: no record blocks, each RECORD message through the SDK's
    `_process_record_message`. For the equivalence tests and the benchmark of what the blocks
    buy."""
    from target_optouts.target import TargetOptouts

    TargetOptouts.record_blocks = False
