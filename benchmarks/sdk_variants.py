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
from pathlib import Path

HERE = Path(__file__).resolve().parent

# A variant: the tap hooks it switches off (tap_optouts.sdk.HOOKS), and what else it changes.
VARIANTS = {
    "tap-stock": "every tap hook off: the SDK's own record messages, loop, state, batches",
    "tap-knobs": "tap-stock, plus the public TYPE_CONFORMANCE_LEVEL NONE",
    "tap-stock-writer": "tap-stock, with the SDK's MsgSpecWriter instead of LineWriter",
    "tap-sdk-loop": "the SDK's record loop (_sync_records), the tap's other hooks",
    "tap-sdk-lines": "the SDK's RECORD messages and BATCH files, the tap's other hooks",
    "tap-sdk-finalize": "the SDK's _finalize_state (no STATE per finished partition)",
    "tap-sdk-batches": "the SDK's _sync_batches: a STATE after every BATCH message",
    "target-stock": "no record blocks: each RECORD message through the SDK's own path",
}
TAP_PARTS = {
    "tap-sdk-loop": ("loop",),
    "tap-sdk-lines": ("record_lines",),
    "tap-sdk-finalize": ("finalize_state",),
    "tap-sdk-batches": ("batches",),
}


def apply(names: str) -> None:
    """Called from the generated sitecustomize.py, before the connector starts."""
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    from tap_optouts import sdk as tap_sdk

    if wanted & {"tap-stock", "tap-knobs", "tap-stock-writer"}:
        tap_sdk.use_stock_sdk(knobs="tap-knobs" in wanted)
    parts = [part for name in wanted for part in TAP_PARTS.get(name, ())]
    if parts:
        tap_sdk.use_stock_sdk(parts)
    if "tap-stock-writer" in wanted:
        from singer_sdk.contrib.msgspec import MsgSpecWriter

        from tap_optouts.tap import TapOptouts

        TapOptouts.message_writer_class = MsgSpecWriter
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
