"""The connectors with some of their private singer-sdk uses switched off, to measure what each
buys (benchmarks/README.md, "What each private SDK use buys").

    .venv/bin/python benchmarks/sdk_variants.py VARIANT [bench.py arguments]

runs `bench.py --baseline DIR` where DIR holds a `sitecustomize.py` that applies VARIANT in
every tap and target process of the "before" version: the same rounds measure the variant and
the working tree side by side. VARIANT is one of `VARIANTS` (comma-separated to combine).
"""

from __future__ import annotations

import sys
import tempfile
import typing as t
from pathlib import Path

HERE = Path(__file__).resolve().parent

VARIANTS = {
    "tap-stock": "the tap's stream hooks reset to the SDK's (public knobs as they are)",
    "tap-knobs": "tap-stock, plus TYPE_CONFORMANCE_LEVEL NONE (the public knob)",
    "tap-stock-writer": "tap-stock, with the SDK's MsgSpecWriter instead of LineWriter",
    "tap-sdk-loop": "the SDK's record loop (_sync_records), the tap's RECORD lines and state",
    "tap-sdk-lines": "the SDK's RECORD messages (_write_record_message), the tap's state hooks",
    "tap-sdk-state": "the SDK's state hooks (_increment_stream_state, ...), the tap's lines",
    "tap-sdk-batches": "the SDK's _sync_batches: a STATE after every BATCH message",
    "target-stock": "no record blocks: each RECORD message through the SDK's own path",
}


def apply(names: str) -> None:
    """Called from the generated sitecustomize.py, before the connector starts."""
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    if wanted & {"tap-stock", "tap-knobs", "tap-stock-writer"}:
        from tap_optouts import sdk as tap_sdk

        tap_sdk.use_stock_sdk(knobs="tap-knobs" in wanted)
        if "tap-stock-writer" in wanted:
            from singer_sdk.contrib.msgspec import MsgSpecWriter

            from tap_optouts.tap import TapOptouts

            TapOptouts.message_writer_class = MsgSpecWriter
    if "tap-sdk-loop" in wanted:
        from singer_sdk import Stream

        from tap_optouts.sdk import StreamHooks

        def sdk_loop(
            self: Stream, context: dict | None = None, *, write_messages: bool = True
        ) -> t.Any:
            return Stream._sync_records(self, context, write_messages=write_messages)

        StreamHooks._sync_records = sdk_loop  # type: ignore[method-assign]
        StreamHooks._process_record = Stream._process_record  # type: ignore[method-assign]
    if "tap-sdk-lines" in wanted:
        from singer_sdk import Stream

        from tap_optouts.sdk import StreamHooks

        StreamHooks._write_record_message = Stream._write_record_message  # type: ignore[method-assign]
    if "tap-sdk-state" in wanted:
        from singer_sdk import Stream

        from tap_optouts.sdk import StreamHooks

        for name in (
            "_increment_stream_state",
            "_write_state_message",
            "_finalize_state",
            "_write_starting_replication_value",
        ):
            setattr(StreamHooks, name, getattr(Stream, name))
    if "tap-sdk-batches" in wanted:
        from singer_sdk import Stream

        from tap_optouts.sdk import StreamHooks

        StreamHooks._sync_batches = Stream._sync_batches  # type: ignore[method-assign]
    if "target-stock" in wanted:
        from target_optouts import sdk as target_sdk

        target_sdk.use_stock_sdk()


def main(argv: list[str]) -> int:
    if not argv or argv[0].split(",")[0] not in VARIANTS:
        print(__doc__)
        for name, what in VARIANTS.items():
            print(f"  {name}: {what}")
        return 2
    variant, rest = argv[0], argv[1:]
    folder = Path(tempfile.mkdtemp(prefix="sdk-variant-"))
    (folder / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(HERE)!r})\n"
        "try:\n    import tap_optouts, target_optouts\nexcept ImportError:\n"
        "    pass  # Meltano's own interpreter: nothing to change\nelse:\n"
        f"    import sdk_variants\n    sdk_variants.apply({variant!r})\n"
    )
    sys.path.insert(0, str(HERE))
    import bench

    return bench.main(["--baseline", str(folder), "--label", f"variant-{variant}", *rest])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
