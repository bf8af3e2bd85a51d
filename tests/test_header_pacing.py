"""Pacing by a provider's rate-limit headers alone (SlickText legacy): the window the client is
not told about is learned from the headers, then used to nearly all of its rate with no
refusal. A simulated server and clock (no timing of real code); the figures against the real
sandbox are measured by benchmarks/rate_limits.py."""

from __future__ import annotations

import math
import random
from collections import deque

import pytest
import requests

from optouts_providers.http import Pacer
from optouts_providers.slicktext import wire as st_wire
from optouts_providers.slicktext.client import SlickTextLegacyClient
from optouts_sandbox import credentials as C
from tests.sandbox_support import control, running_sandbox
from tests.target_support import new_phones


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class SlidingWindowServer:
    """Counts each request when it arrives over the last `seconds`; answers with the
    SlickText headers, the reset rounded up to whole seconds (as the sandbox writes it)."""

    def __init__(self, clock: FakeClock, count: int, seconds: float) -> None:
        self.clock, self.count, self.seconds = clock, count, seconds
        self.hits: deque[float] = deque()
        self.refused = 0

    def arrive(self) -> requests.Response:
        now = self.clock.now
        while self.hits and now - self.hits[0] >= self.seconds:
            self.hits.popleft()
        allowed = len(self.hits) < self.count
        if allowed:
            self.hits.append(now)
        else:
            self.refused += 1
        reset = self.seconds - (now - self.hits[0]) if self.hits else 0.0
        answer = requests.Response()
        answer.status_code = 200 if allowed else 429
        headers = st_wire.RATE_HEADERS
        answer.headers.update(
            {
                headers.limit: str(self.count),
                headers.remaining: str(self.count - len(self.hits)),
                headers.reset: str(math.ceil(reset)),
            }
        )
        return answer


@pytest.mark.parametrize(("seed", "count", "seconds"), [(1, 4, 1.0), (2, 4, 1.0), (3, 10, 2.0)])
def test_headers_alone_use_nearly_all_of_an_unknown_window_without_refusals(seed, count, seconds):
    rng = random.Random(seed)
    clock = FakeClock()
    server = SlidingWindowServer(clock, count, seconds)
    pacer = Pacer(headers=st_wire.RATE_HEADERS, sleep=clock.sleep, clock=clock)
    first_sent = None
    sent = 400
    for _ in range(sent):
        slot = pacer.reserve_slot()
        pacer.wait(slot)
        first_sent = clock.now if first_sent is None else first_sent
        clock.now += rng.uniform(0.0005, 0.01)  # to the server
        answer = server.arrive()
        clock.now += rng.uniform(0.0005, 0.01)  # the answer back
        pacer.answered(slot, answer)
    rate = sent / (clock.now - first_sent)
    assert server.refused == 0
    assert rate >= 0.9 * count / seconds


def test_a_window_wider_than_the_learning_cap_is_still_spread_by_its_headers():
    """A window of 100,000 requests (Optizmo's nominal headers) is not learned (one slot a
    request would be kept): what remains is spread until the reset, as before."""
    clock = FakeClock()
    pacer = Pacer(headers=st_wire.RATE_HEADERS, sleep=clock.sleep, clock=clock)
    answer = requests.Response()
    answer.headers.update(
        {"x-RateLimit": "100000", "x-RateLimit-Remaining": "99999", "x-RateLimit-Reset": "60"}
    )
    pacer.answered(pacer.reserve_slot(), answer)
    assert pacer.windows == []
    assert pacer.reserve_slot().wait == pytest.approx(60 / 100_000)


def test_the_legacy_client_learns_the_sandbox_window_and_is_never_refused():
    limits = {"slicktext": {"per_window": 4, "window_seconds": 1.0}}
    with running_sandbox(size=10, rate_limits=limits) as server:
        client = SlickTextLegacyClient(
            server.base_urls()["slicktext"], C.SLICKTEXT_PUBLIC_KEY, C.SLICKTEXT_PRIVATE_KEY
        )
        result = client.optout_numbers(new_phones(13, start=700))
        refused = control(server, "stats").get("slicktext 429", 0)
    assert result.written == 13 and refused == 0
    assert client.session.pacer.windows == [(4, 1.0)]


def test_headers_that_describe_no_single_window_are_not_learned():
    """A limit per second beside what remains of a longer window (remaining above the
    limit): taking the reset as that window's length would pace 3 requests a minute."""
    clock = FakeClock()
    pacer = Pacer(headers=st_wire.RATE_HEADERS, sleep=clock.sleep, clock=clock)
    answer = requests.Response()
    answer.headers.update(
        {"x-RateLimit": "3", "x-RateLimit-Remaining": "999999", "x-RateLimit-Reset": "60"}
    )
    pacer.answered(pacer.reserve_slot(), answer)
    assert pacer.windows == []
    assert pacer.reserve_slot().wait < 0.001
