"""How much of a provider's rate limit the clients use, and how often they run into it.

    .venv/bin/python benchmarks/rate_limits.py [--seconds 75] [--json results.json]

Starts the sandbox (its own process, on a free loopback port) with SlickText's new-API limit on:
8 requests a second and 480 a 60-second window, counted per API key over sliding windows. The
new-API client then opts numbers out (one listing, then one POST per number) for `--seconds`
(longer than the 60-second window, so that both limits apply). A second measurement does the
same with the legacy API against a window the client is not told about (4 a second): there the
client paces by the rate-limit headers alone (it learns the window from them).

Reported: requests, elapsed seconds, requests a second, the share of the allowed rate used,
the number and share of 429 answers (the sandbox's count), the time the client spent waiting.
Goal: at least 90% of the allowed rate used, under 1% of requests answered 429, by both
clients (the exit status is 1 when either misses it).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optouts_providers.slicktext.client import (  # noqa: E402
    SlickTextLegacyClient,
    SlickTextV2Client,
)
from optouts_sandbox import credentials as C  # noqa: E402

SANDBOX = Path(sys.executable).parent / "optouts-sandbox"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sandbox(port: int, limits: dict[str, Any]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            str(SANDBOX),
            "serve",
            "--port",
            str(port),
            "--size",
            "50",
            "--switch",
            f"rate_limits={json.dumps(limits)}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the sandbox did not start")


def numbers(count: int, start: int) -> list[str]:
    """Valid US numbers the sandbox's population never holds (area code 206)."""
    span = range(start, start + count)
    return [f"+1206{200 + (n // 10000) % 800:03d}{n % 10000:04d}" for n in span]


def measure(name: str, client: Any, base: str, allowed: float, seconds: float) -> dict[str, Any]:
    """Opt numbers out in chunks until `seconds` have passed."""
    started = time.monotonic()
    written = 0
    chunk = max(8, int(allowed * 5))
    while time.monotonic() - started < seconds:
        result = client.optout_numbers(numbers(chunk, 500_000 + written))
        written += result.written
    elapsed = time.monotonic() - started
    stats = requests.get(f"{base}/_sandbox/stats", timeout=10).json()
    prefix = "slicktext-v2" if isinstance(client, SlickTextV2Client) else "slicktext"
    refused = stats.get(f"{prefix} 429", 0)
    requests_made = client.stats.requests
    rate = requests_made / elapsed
    return {
        "client": name,
        "requests": requests_made,
        "written": written,
        "seconds": round(elapsed, 1),
        "requests_per_second": round(rate, 2),
        "allowed_per_second": allowed,
        "share_of_allowed_rate": round(rate / allowed, 3),
        "answered_429": refused,
        "share_429": round(refused / max(1, requests_made), 4),
        "throttled_seconds": round(client.stats.throttled_seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=75.0)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    limits = {
        "slicktext-v2": {"per_second": 8, "per_window": 480, "window_seconds": 60},
        "slicktext": {"per_window": 4, "window_seconds": 1.0},
    }
    port = free_port()
    sandbox = start_sandbox(port, limits)
    base = f"http://127.0.0.1:{port}"
    try:
        v2 = SlickTextV2Client(
            f"{base}/slicktext-v2", C.SLICKTEXT_V2_API_KEY, C.SLICKTEXT_V2_BRAND_ID
        )
        legacy = SlickTextLegacyClient(
            f"{base}/slicktext", C.SLICKTEXT_PUBLIC_KEY, C.SLICKTEXT_PRIVATE_KEY
        )
        figures = [
            measure("slicktext-v2 (8/s, 480/60 s)", v2, base, 8.0, args.seconds),
            measure("slicktext legacy (4/s, headers only)", legacy, base, 4.0, args.seconds / 3),
        ]
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    columns = list(figures[0])
    print(" | ".join(columns))
    for row in figures:
        print(" | ".join(str(row[column]) for column in columns))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    met = {
        r["client"]: r["share_of_allowed_rate"] >= 0.9 and r["share_429"] < 0.01 for r in figures
    }
    for client, ok in met.items():
        print(
            f"goal (>= 90% of the allowed rate, < 1% 429s), {client}: {'met' if ok else 'MISSED'}"
        )
    goal = all(met.values())
    print("goal met by both APIs:", goal)
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
