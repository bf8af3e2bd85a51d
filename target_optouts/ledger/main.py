"""`optouts-ledger`: the ledger's evidence for people.

    optouts-ledger trail ADDRESS [--format text|json]       one address, everywhere
    optouts-ledger report [--format text|json|html] [-o F]  per destination: holds, lacks, why,
                                                            latency, drift
    optouts-ledger reconcile --tap-config T --target-config C
        two full reads of every provider into the target in reconcile mode: the first marks
        what a provider no longer holds, the second writes it back; then the report

The ledger is `--url`, else `ledger_url` of `--config` (target-optouts' config file), else
OPTOUTS_LEDGER_URL or TARGET_OPTOUTS_LEDGER_URL, else the target's default. The hash key comes
the same way (`ledger_hash_key`, OPTOUTS_LEDGER_HASH_KEY, TARGET_OPTOUTS_LEDGER_HASH_KEY), or
from the key file beside a SQLite ledger.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from target_optouts.ledger.open import open_ledger
from target_optouts.ledger.report import report, report_html, report_text, trail, trail_text
from target_optouts.ledger.store import DEFAULT_URL, LedgerError, LedgerUnavailable
from target_optouts.normalize import normalize_email, normalize_md5, normalize_phone


def settings(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if args.config:
        config = json.loads(Path(args.config).read_text())
    url = args.url or config.get("ledger_url")
    if url is None:
        url = os.environ.get("OPTOUTS_LEDGER_URL") or os.environ.get("TARGET_OPTOUTS_LEDGER_URL")
    key = config.get("ledger_hash_key") or os.environ.get("OPTOUTS_LEDGER_HASH_KEY")
    key = key or os.environ.get("TARGET_OPTOUTS_LEDGER_HASH_KEY")
    return {"ledger_url": url if url is not None else DEFAULT_URL, "ledger_hash_key": key}


def address_kind(text: str, region: str) -> tuple[str, str]:
    """The kind and normalised form of an address typed by a person, as the target keys it."""
    value = text.strip()
    if "@" in value:
        return "email", normalize_email(value)
    if len(value) == 32 and all(c in "0123456789abcdefABCDEF" for c in value):
        return "md5", normalize_md5(value)
    return "phone", normalize_phone(value, region)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="optouts-ledger", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the ledger's SQLAlchemy URL")
    parser.add_argument("--config", help="target-optouts' config file (its ledger settings)")
    commands = parser.add_subparsers(dest="command", required=True)
    p_trail = commands.add_parser("trail", help="one address: where and when")
    p_trail.add_argument("address")
    p_trail.add_argument("--format", choices=("text", "json"), default="text")
    p_trail.add_argument("--region", default="US", help="phone numbers without a country code")
    p_report = commands.add_parser("report", help="per destination: coverage and latency")
    p_report.add_argument("--format", choices=("text", "json", "html"), default="text")
    p_report.add_argument("--output", "-o", help="write to this file instead of stdout")
    p_rec = commands.add_parser("reconcile", help="full reads: find and repair drift")
    p_rec.add_argument("--tap-config", required=True)
    p_rec.add_argument("--target-config", required=True)
    args = parser.parse_args(argv)
    if args.command == "reconcile":
        args.config = args.config or args.target_config
    try:
        if args.command == "reconcile":
            return reconcile(args)
        ledger = open_ledger(settings(args), create=False)
    except LedgerUnavailable as exc:
        # Nothing recorded yet: a report of nothing (a job's report step must not fail on a
        # first run or a ledger turned off); a trail has nothing to show.
        print(f"optouts-ledger: {exc}: nothing is recorded yet", file=sys.stderr)
        return 0 if args.command == "report" else 1
    except (LedgerError, OSError, ValueError) as exc:
        print(f"optouts-ledger: {exc}", file=sys.stderr)
        return 1
    if ledger is None:
        print("optouts-ledger: the ledger is off (ledger_url is empty)", file=sys.stderr)
        return 1
    try:
        if args.command == "trail":
            try:
                kind, value = address_kind(args.address, args.region.upper())
            except ValueError as exc:
                print(f"optouts-ledger: not an address: {exc}", file=sys.stderr)
                return 2
            found = trail(ledger, kind, value)
            print(json.dumps(found, indent=2) if args.format == "json" else trail_text(found))
            return 0
        data = report(ledger)
        text = {"json": lambda d: json.dumps(d, indent=2), "html": report_html}.get(
            args.format, report_text
        )(data)
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(text if text.endswith("\n") else text + "\n")
        else:
            print(text)
        return 0
    finally:
        ledger.close()


def reconcile(args: argparse.Namespace) -> int:
    target = json.loads(Path(args.target_config).read_text())
    target["ledger_reconcile"] = True
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="optouts-reconcile-") as tmp:
        target_path = Path(tmp) / "target.json"
        fd = os.open(target_path, os.O_WRONLY | os.O_CREAT, 0o600)  # it holds credentials
        with os.fdopen(fd, "w") as handle:
            json.dump(target, handle)
        for number in (1, 2):
            print(f"optouts-ledger: reconcile pass {number} of 2 (a full read)", file=sys.stderr)
            tap = subprocess.Popen(
                [str(bindir / "tap-optouts"), "--config", args.tap_config],
                stdout=subprocess.PIPE,
            )
            sink = subprocess.run(
                [str(bindir / "target-optouts"), "--config", str(target_path)],
                stdin=tap.stdout,
                stdout=subprocess.DEVNULL,
                check=False,
            )
            assert tap.stdout is not None
            tap.stdout.close()
            if tap.wait() != 0 or sink.returncode != 0:
                print(
                    f"optouts-ledger: reconcile pass {number} failed (tap {tap.returncode}, "
                    f"target {sink.returncode}); nothing was marked missing by it",
                    file=sys.stderr,
                )
                return 1
    return main(["--config", args.target_config, "report"])


if __name__ == "__main__":
    sys.exit(main())
