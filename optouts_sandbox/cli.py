"""optouts-sandbox: run the provider emulator.

optouts-sandbox serve  [--port 8765] [--size 300] [--seed 7] [--switch KEY=JSON ...]
                       [--only checkmarket,slicktext,optizmo]
optouts-sandbox start  [same options]   start in the background, wait until it answers
optouts-sandbox stop [--force]           stop the background sandbox (one it only kept: not
                                         unless --force)
optouts-sandbox inspect [--label TEXT]   print how many opt-outs each provider holds
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from optouts_sandbox.core import Switches

DEFAULT_PORT = 8765
STATE_DIR = Path(os.environ.get("OPTOUTS_SANDBOX_DIR", ".sandbox"))


def _parse_switches(items: list[str]) -> Switches:
    switches = Switches()
    values: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    switches.update(values)
    return switches


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def serve(args: argparse.Namespace) -> int:
    from optouts_providers.gctune import settle_gc
    from optouts_sandbox.server import Sandbox, SandboxHTTPServer

    only = [name.strip() for name in args.only.split(",") if name.strip()] or None
    sandbox = Sandbox(
        size=args.size, seed=args.seed, switches=_parse_switches(args.switch), only=only
    )
    settle_gc()  # the seeded rows live as long as the process (see gctune)
    sandbox.after_reseed = settle_gc
    server = SandboxHTTPServer(sandbox, "127.0.0.1", args.port)
    print(
        f"optouts-sandbox listening on {server.url} ({args.size} people, seed {args.seed}"
        + (f", only {', '.join(only)})" if only else ")"),
        flush=True,
    )
    for name, url in server.base_urls().items():
        print(f"  {name:16} {url}", flush=True)

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"{_url(port)}/_sandbox/health", timeout=1).ok
    except requests.RequestException:
        return False


def start(args: argparse.Namespace) -> int:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    pid_file = STATE_DIR / "sandbox.pid"
    if _healthy(args.port):
        # Kept, with its data: the matching `stop` leaves it to whoever started it (so that
        # two `meltano run sync` in a row can run on the same sandbox data).
        borrowed = STATE_DIR / "sandbox.borrowed"
        borrowed.write_text(str(_borrowed(borrowed) + 1))
        _same_world(args.port)
        print(f"optouts-sandbox already answers on {_url(args.port)}: kept, with its data")
        return 0
    (STATE_DIR / "sandbox.borrowed").unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "optouts_sandbox.cli",
        "serve",
        "--port",
        str(args.port),
        "--size",
        str(args.size),
        "--seed",
        str(args.seed),
    ]
    for item in args.switch:
        command += ["--switch", item]
    if args.only:
        command += ["--only", args.only]
    with (STATE_DIR / "sandbox.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file.unlink(missing_ok=True)
            print(f"optouts-sandbox exited early; see {STATE_DIR / 'sandbox.log'}", file=sys.stderr)
            return 1
        if _healthy(args.port):
            _same_world(args.port)
            print(f"optouts-sandbox started on {_url(args.port)} (pid {process.pid})")
            process.returncode = 0  # it runs on after this command: no "still running" warning
            return 0
        time.sleep(0.1)
    print("optouts-sandbox did not answer within 30 s", file=sys.stderr)
    return 1


def _same_world(port: int) -> None:
    """Keep the ledger of this folder (meltano.yml's sandbox environment keeps it here) only
    while it was kept against this very sandbox data: a new sandbox, or a reset one, is a new
    world, and the old ledger would claim what it does not hold."""
    try:
        world = requests.get(f"{_url(port)}/_sandbox/health", timeout=5).json().get("world")
    except (requests.RequestException, ValueError):
        world = None
    marker = STATE_DIR / "sandbox.world"
    known = marker.read_text().strip() if marker.exists() else None
    if world is None or world != known:
        for stale in STATE_DIR.glob("ledger.*"):
            stale.unlink()
        marker.write_text(world or "")


def _borrowed(path: Path) -> int:
    try:
        return max(0, int(path.read_text().strip() or 0))
    except (FileNotFoundError, ValueError):
        return 0


def stop_background(args: argparse.Namespace) -> int:
    borrowed = STATE_DIR / "sandbox.borrowed"
    held = _borrowed(borrowed)
    if getattr(args, "force", False):
        borrowed.unlink(missing_ok=True)
    elif held:
        borrowed.write_text(str(held - 1))
        print("optouts-sandbox left running: it was running before the matching start")
        return 0
    pid_file = STATE_DIR / "sandbox.pid"
    if not pid_file.exists():
        print("optouts-sandbox is not running (no pid file)")
        return 0
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)
    print(f"optouts-sandbox stopped (pid {pid})")
    return 0


def summarize(holdings: dict[str, Any]) -> dict[str, int]:
    """Opt-outs per provider (Optizmo: per list), from the inspection endpoint's answer."""
    counts: dict[str, int] = {}
    for provider, held in holdings.items():
        if "lists" in held:
            for list_id, content in held["lists"].items():
                counts[f"{provider}:{list_id}"] = int(content.get("count", 0))
        elif "count" in held:
            counts[provider] = int(held["count"])
    return counts


def inspect(args: argparse.Namespace) -> int:
    response = requests.get(f"{_url(args.port)}/_sandbox/inspect", timeout=30)
    response.raise_for_status()
    counts = summarize(response.json())
    label = f" {args.label}" if args.label else ""
    print(f"opt-outs held by each provider{label}:")
    for name, count in counts.items():
        print(f"  {name:32} {count:>9,}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="optouts-sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "start"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, default=_env_int("OPTOUTS_SANDBOX_PORT", DEFAULT_PORT))
        p.add_argument("--size", type=int, default=_env_int("OPTOUTS_SANDBOX_SIZE", 300))
        p.add_argument("--seed", type=int, default=_env_int("OPTOUTS_SANDBOX_SEED", 7))
        p.add_argument(
            "--only",
            default=os.environ.get("OPTOUTS_SANDBOX_ONLY", ""),
            metavar="PROVIDERS",
            help="benchmark population: every person opted out at exactly these providers "
            "(comma separated), with an email and a phone; the others hold nothing",
        )
        p.add_argument(
            "--switch",
            action="append",
            default=[],
            metavar="KEY=JSON",
            help="a sandbox switch, e.g. latency_ms=20 or download_format=zip",
        )
    p = sub.add_parser("stop")
    p.add_argument(
        "--force", action="store_true", help="stop it even if it was kept by a later start"
    )
    p = sub.add_parser("inspect")
    p.add_argument("--port", type=int, default=_env_int("OPTOUTS_SANDBOX_PORT", DEFAULT_PORT))
    p.add_argument("--label", default="")
    args = parser.parse_args(argv)
    handlers = {"serve": serve, "start": start, "stop": stop_background, "inspect": inspect}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
