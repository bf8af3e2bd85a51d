"""Webhook latency: opt-outs fired by the sandbox as webhooks, received by `optouts-webhooks`,
written to every other provider.

    .venv/bin/python benchmarks/webhooks.py [--rate 50] [--seconds 60] [--json results.json]

The sandbox runs in this process (a loopback HTTP server), with SlickText's legacy limit on
(8 requests a second per key); the receiver is its own process (`optouts-webhooks serve`) on
a SQLite ledger, writing to the sandbox's CheckMarket, SlickText (legacy API) and Optizmo. At
`--rate` opt-outs a second for `--seconds`, mixed across the three sources (CheckMarket emails
and phones, SlickText legacy numbers, SlickText new-API numbers), an opt-out is added to the
sandbox (`POST /_sandbox/optouts`), which emits its webhook: CheckMarket's to the hook
`optouts-webhooks register` registered, SlickText's (signed) to the URLs set by switches.

Reported, from the sandbox's own records: per opt-out, the time from the opt-out (its event
time) to the moment the last destination that can carry it accepted the write (the write log:
`record_writes`), p50, p95 and max; the receiver's answer times (as the sandbox's sender saw
them) p50, p95, p99 and max; opt-outs lost (not at every destination when the run ends, after
a drain of up to 60 s); the sandbox's 429 answers per provider. Goal: latency p95 under 5 s,
answers p99 under 200 ms, nothing lost (the exit status is 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optouts_sandbox.core import Switches  # noqa: E402
from optouts_sandbox.server import Sandbox, SandboxHTTPServer  # noqa: E402
from tests.webhooks_support import SECRET, TOKEN, free_port, receiver_config, start  # noqa: E402

WEBHOOKS_BIN = Path(sys.executable).parent / "optouts-webhooks"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def control(url: str, action: str, payload: Any = None) -> Any:
    if payload is None:
        return requests.get(f"{url}/_sandbox/{action}", timeout=60).json()
    return requests.post(f"{url}/_sandbox/{action}", json=payload, timeout=60).json()


def plan(index: int) -> tuple[str, dict[str, Any], str, tuple[str, ...]]:
    """The index-th opt-out: (provider, record, address as written, destinations). In every
    12: CheckMarket 3 emails and a phone, SlickText 4 legacy and 4 new-API numbers, so that
    what SlickText receives (CheckMarket's phones: 1 in 12) stays under its rate limit."""
    kind = index % 12
    if kind < 3:
        email = f"bench{index}@hooks.example.com"
        return "checkmarket", {"Email": email}, email, ("optizmo-collect",)
    if kind == 3:
        phone = f"+1617{2000000 + index:07d}"
        return "checkmarket", {"PhoneNumber": phone}, phone[1:], ("slicktext", "optizmo-collect")
    if kind < 8:
        phone = f"+1312{2000000 + index:07d}"
        return "slicktext", {"number": phone}, phone[1:], ("checkmarket", "optizmo-collect")
    phone = f"+1415{2000000 + index:07d}"
    return "slicktext-v2", {"mobile_number": phone}, phone[1:], ("checkmarket", "optizmo-collect")


def run(rate: float, seconds: float, tmp: Path) -> dict[str, Any]:
    switches = Switches()
    switches.update(
        {"record_writes": True, "rate_limits": {"slicktext": {"per_second": 8, "per_window": 480}}}
    )
    server = SandboxHTTPServer(Sandbox(size=20, seed=7, switches=switches))
    server.start_in_thread()
    config = receiver_config(server, tmp)
    config["max_retry_wait_seconds"] = 30
    config["request_timeout_seconds"] = 10
    receiver = start(config, tmp, free_port())
    url = server.url
    try:
        config_path = tmp / "register.json"
        config_path.write_text(json.dumps(config))
        subprocess.run(
            [
                str(WEBHOOKS_BIN),
                *("register", "--config", str(config_path), "--public-url", receiver.url),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        control(
            url,
            "config",
            {
                "webhook_slicktext_url": f"{receiver.url}/webhooks/slicktext/{TOKEN}",
                "webhook_slicktext_v2_url": f"{receiver.url}/webhooks/slicktext-v2/{TOKEN}",
                "webhook_slicktext_secret": SECRET,
            },
        )
        control(url, "webhooks", {"clear": True})
        session = requests.Session()
        fired: list[tuple[str, tuple[str, ...], float]] = []
        total = int(rate * seconds)
        began = time.monotonic()
        for index in range(total):
            due = began + index / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            provider, record, address, destinations = plan(index)
            fired_at = time.time()
            session.post(
                f"{url}/_sandbox/optouts",
                json={"provider": provider, "records": [record]},
                timeout=30,
            ).raise_for_status()
            fired.append((address, destinations, fired_at))
        firing = time.monotonic() - began
        result = measure(url, fired, drain_seconds=60)
        result.update(
            fired=total,
            rate=rate,
            firing_seconds=round(firing, 1),
            health=receiver.health(),
            stats={k: v for k, v in control(url, "stats").items() if "429" in k},
        )
        return result
    finally:
        receiver.process.terminate()
        receiver.process.wait(30)
        server.shutdown()
        server.server_close()


def measure(url: str, fired: list[Any], drain_seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + drain_seconds
    while True:
        log = control(url, "webhooks")
        latencies, lost = latency(log, fired)
        if not lost or time.monotonic() > deadline:
            break
        time.sleep(1)
    answers = [d["answer_ms"] for d in log["deliveries"] if d["answer_ms"] is not None]
    statuses: dict[str, int] = {}
    for delivery in log["deliveries"]:
        statuses[str(delivery["status"])] = statuses.get(str(delivery["status"]), 0) + 1
    return {
        "latency_seconds": {
            "p50": round(percentile(latencies, 0.50), 3),
            "p95": round(percentile(latencies, 0.95), 3),
            "max": round(max(latencies), 3) if latencies else None,
            "mean": round(statistics.fmean(latencies), 3) if latencies else None,
        },
        "answer_ms": {
            "p50": round(percentile(answers, 0.50), 1),
            "p95": round(percentile(answers, 0.95), 1),
            "p99": round(percentile(answers, 0.99), 1),
            "max": round(max(answers), 1) if answers else None,
        },
        "deliveries": len(log["deliveries"]),
        "delivery_statuses": statuses,
        "writes": len(log["writes"]),
        "lost": len(lost),
        "lost_examples": lost[:5],
    }


def latency(log: dict[str, Any], fired: list[Any]) -> tuple[list[float], list[str]]:
    """Per opt-out: from its time to the last of its destinations' first write of it."""
    first: dict[tuple[str, str], float] = {}
    wanted = {address for address, _d, _t in fired}
    for at, prefix, body in log["writes"]:
        for token in _addresses(body):
            if token in wanted and (prefix, token) not in first:
                first[(prefix, token)] = at
    event_at: dict[str, float] = {}  # the first event of each address (not its echoes)
    for delivery in log["deliveries"]:
        key = str(delivery["address"]).lstrip("+").lower()
        event_at[key] = min(event_at.get(key, delivery["event_at"]), delivery["event_at"])
    out, lost = [], []
    for address, destinations, fired_at in fired:
        times = [first.get((d, address)) for d in destinations]
        if None in times:
            missing = [d for d, t in zip(destinations, times, strict=True) if t is None]
            lost.append(f"{address} at {missing}")
            continue
        origin = event_at.get(address, fired_at)
        out.append(max(times) - origin)  # type: ignore[type-var]
    return out, lost


def _addresses(body: str) -> list[str]:
    """The emails and phone digits a write's body names."""
    out = []
    for raw in body.replace('"', " ").replace(",", " ").replace("&", " ").split():
        value = raw.split("=", 1)[-1].strip("[]{}:+ ").lower()
        if "@" in value or value.isdigit():
            out.append(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.rate, args.seconds, Path(tmp))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    ok = (
        result["latency_seconds"]["p95"] < 5
        and result["answer_ms"]["p99"] < 200
        and result["lost"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
