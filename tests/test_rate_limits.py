"""Rate limits: the pacer keeps inside a sliding window while using it (simulated clock), the
providers' signals are honoured (Retry-After as an HTTP date, remaining/reset headers), the
total wait is capped with a clear failure, and the time throttled and the retries are logged
per stream (tap) and per destination (target). The rate figures are measured by
benchmarks/rate_limits.py, not here."""

from __future__ import annotations

import json
import random
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from optouts_providers.checkmarket.client import CheckMarketClient
from optouts_providers.http import Pacer, RateHeaders
from optouts_providers.slicktext import wire as st_wire
from optouts_providers.slicktext.client import SlickTextLegacyClient
from optouts_sandbox import credentials as C
from tests.pipeline_support import TAP_BIN, TARGET_BIN
from tests.sandbox_support import control, running_sandbox, tap_config
from tests.target_support import encode, new_emails, new_phones, stream_messages
from tests.target_support import target_config as target_settings

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_pacer_never_overfills_a_sliding_window_and_uses_nearly_all_of_it(seed):
    """A server that counts each request when it arrives, over the last second, refuses a 9th;
    arrival and answer come after random network delays. 400 requests, one at a time."""
    rng = random.Random(seed)
    clock = FakeClock()
    pacer = Pacer(requests_per_second=8, sleep=clock.sleep, clock=clock)
    arrivals: list[float] = []
    first_sent = None
    for _ in range(400):
        slot = pacer.reserve_slot()
        pacer.wait(slot)
        first_sent = clock.now if first_sent is None else first_sent
        clock.now += rng.uniform(0.0005, 0.03)  # to the server
        arrivals.append(clock.now)
        assert sum(1 for t in arrivals if clock.now - t < 1.0) <= 8
        clock.now += rng.uniform(0.0005, 0.03)  # the answer back
        pacer.answered(slot, None)
    rate = len(arrivals) / (clock.now - first_sent)
    assert rate >= 0.9 * 8


def response(headers: dict[str, str], status: int = 200) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer.headers.update(headers)
    return answer


def test_a_spent_window_blocks_until_its_reset_and_counts_as_blocked():
    clock = FakeClock()
    pacer = Pacer(headers=st_wire.RATE_HEADERS, sleep=clock.sleep, clock=clock)
    slot = pacer.reserve_slot()
    pacer.answered(slot, response({"x-RateLimit-Remaining": "0", "x-RateLimit-Reset": "3"}))
    blocked = pacer.reserve_slot()
    assert blocked.wait == pytest.approx(3.0) and blocked.blocked == pytest.approx(3.0)
    pacer.wait(blocked)
    pacer.answered(blocked, response({"x-RateLimit-Remaining": "50", "x-RateLimit-Reset": "5"}))
    spread = pacer.reserve_slot()  # what is left of the window is spread until its reset
    assert spread.blocked == 0 and spread.wait == pytest.approx(5 / 51, rel=0.01)


def test_epoch_reset_headers_are_read_as_a_time():
    headers = RateHeaders("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset")
    assert headers.reset_seconds({"x-rate-limit-reset": "1800000060"}, 1800000000) == 60
    assert headers.reset_seconds({"x-rate-limit-reset": "60"}, 1800000000) == 60


def test_retry_after_as_an_http_date_is_waited_out():
    limits = {"checkmarket": {"per_second": 2}}
    with running_sandbox(size=24, rate_limits=limits, retry_after_format="date") as server:
        client = CheckMarketClient(
            server.base_urls()["checkmarket"],
            C.CHECKMARKET_MASTER_KEY,
            C.CHECKMARKET_KEY,
            page_size=5,
        )
        rows = list(client.iter_optouts(EPOCH, datetime.now(UTC)))
        throttled = control(server, "stats").get("checkmarket 429", 0)
        held = control(server, "inspect")["checkmarket"]["count"]
    assert len({row["ContactId"] for row in rows}) == held
    assert throttled >= 1 and client.stats.rate_limited == throttled == client.stats.retries
    # Each 429 said: not before the next whole second after now + 1 s (less the answer's way
    # back). Exponential backoff starts each request's retries under half a second.
    assert client.stats.retry_wait_seconds >= 0.6 * client.stats.retries


def test_header_paced_writes_stay_under_a_window_the_client_was_not_told_about():
    limits = {"slicktext": {"per_window": 4, "window_seconds": 1.0}}
    with running_sandbox(size=10, rate_limits=limits) as server:
        client = SlickTextLegacyClient(
            server.base_urls()["slicktext"], C.SLICKTEXT_PUBLIC_KEY, C.SLICKTEXT_PRIVATE_KEY
        )
        numbers = new_phones(9, start=900)
        result = client.optout_numbers(numbers)
        refused = control(server, "stats").get("slicktext 429", 0)
        held = set(control(server, "inspect")["slicktext"]["phones"])
    assert result.written == 9 and set(numbers) <= held
    assert refused == 0 and client.stats.requests == 9


# -- processes: the wait cap, and what the logs say ----------------------------------------------
def run(command: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, input=stdin, capture_output=True, timeout=120, check=False)


def tap_with_faults(
    tmp: Path, name: str, switches: dict[str, Any], **settings: Any
) -> dict[str, Any]:
    """`name` names the config file: the runs go side by side, in threads, in one folder."""
    with running_sandbox(size=20, **switches) as server:
        path = tmp / f"tap-{name}.json"
        path.write_text(json.dumps(tap_config(server, **settings)))
        result = run([str(TAP_BIN), "--config", str(path)])
        return {"result": result, "stats": control(server, "stats")}


def target_with_faults(tmp: Path, switches: dict[str, Any]) -> dict[str, Any]:
    records = [{"email": e} for e in new_emails(8, tag="calls")]
    records += [{"phone": p} for p in new_phones(8, start=950)]
    with running_sandbox(size=10, **switches) as server:
        path = tmp / "target.json"
        path.write_text(json.dumps(target_settings(server)))
        stdin = encode(stream_messages("crm_people", records)).encode()
        result = run([str(TARGET_BIN), "--config", str(path)], stdin)
        return {"result": result, "stats": control(server, "stats")}


FAULTS = {"error_rate": 0.2, "error_status": 503}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("calls")
    with ThreadPoolExecutor(max_workers=3) as pool:
        return {
            "tap": pool.submit(tap_with_faults, tmp, "tap", FAULTS),
            "target": pool.submit(target_with_faults, tmp, FAULTS),
            "capped": pool.submit(
                tap_with_faults,
                tmp,
                "capped",
                {"error_rate": 1.0, "error_status": 503},
                providers=("checkmarket",),
                max_total_wait_seconds=1,
            ),
        }


def faults(stats: dict[str, int], *prefixes: str) -> int:
    return sum(stats.get(f"{prefix} fault:503", 0) for prefix in prefixes)


def test_the_tap_logs_retries_and_throttled_time_per_stream_and_partition(runs):
    done = runs["tap"].result()
    stderr = done["result"].stderr.decode()
    assert done["result"].returncode == 0, stderr[-3000:]
    lines = re.findall(r"(\w+_optouts) calls(?: \(([^)]*)\))?: (.*)", stderr)
    retries: dict[str, int] = {}
    for stream, _, fields in lines:
        assert "throttled_seconds=" in fields and "retry_wait_seconds=" in fields
        retries[stream] = retries.get(stream, 0) + int(re.search(r"retries=(\d+)", fields)[1])
    assert sum(1 for stream, _, _ in lines if stream == "optizmo_optouts") == 2  # partitions
    stats = done["stats"]
    assert retries == {
        "checkmarket_optouts": faults(stats, "checkmarket"),
        "slicktext_optouts": faults(stats, "slicktext"),
        "optizmo_optouts": faults(stats, "optizmo"),
    }
    assert sum(retries.values()) >= 3


def test_the_target_summary_gives_retries_and_throttled_time_per_destination(runs):
    done = runs["target"].result()
    stderr = done["result"].stderr.decode()
    assert done["result"].returncode == 0, stderr[-3000:]
    summary = dict(re.findall(r"target-optouts summary: (\w+) written=.* retries=(\d+) ", stderr))
    stats = done["stats"]
    assert {name: int(count) for name, count in summary.items()} == {
        "checkmarket": faults(stats, "checkmarket"),
        "slicktext": faults(stats, "slicktext"),
        "optizmo": faults(stats, "optizmo", "optizmo-collect"),
    }
    assert "throttled_seconds=" in stderr


def test_past_the_total_wait_cap_the_run_fails_clearly(runs):
    result = runs["capped"].result()["result"]
    stderr = result.stderr.decode()
    assert result.returncode != 0
    assert "CheckMarket GET /3/contacts/optouts answered HTTP 503" in stderr
    assert "(max_total_wait_seconds=1)" in stderr
