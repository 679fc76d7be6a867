"""The retry policy (full jitter, Retry-After as a floor, a time budget), the per-host AIMD gate and the rate
watchdog: plain function calls, with a seeded RNG so the waits are exact."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest

from arcgap.registry.bodyread import SLOW_FACTOR, RateWatch, Stalled, WatchedStream, pace
from arcgap.registry.transport import HostGate, RetryPolicy


def test_full_jitter_is_a_uniform_draw_up_to_the_backoff_and_deterministic_with_a_seed() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=30.0, rng=random.Random(7))
    expected = random.Random(7)
    for attempt in range(1, 12):
        cap = min(0.5 * 2 ** (attempt - 1), 30.0)
        assert policy.delay(attempt) == expected.uniform(0.0, cap)
    # two workers with different draws do not wake together
    a, b = RetryPolicy(rng=random.Random(1)), RetryPolicy(rng=random.Random(2))
    assert [a.delay(3) for _ in range(5)] != [b.delay(3) for _ in range(5)]
    draws = [RetryPolicy(rng=random.Random(s)).delay(4) for s in range(200)]
    assert 0.0 <= min(draws) < 0.5 and 3.5 < max(draws) <= 4.0  # spread over [0, 0.5·2³]


def test_retry_after_is_a_floor_capped_with_jitter_on_top() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=30.0, rng=random.Random(3))
    waits = [policy.delay(1, "1") for _ in range(50)]
    assert all(1.0 <= w <= 1.5 for w in waits) and len(set(waits)) > 40
    assert 30.0 <= policy.delay(1, "3600") <= 60.0  # capped: an hour is not waited
    assert policy.delay(1, "nan") <= 0.5 and policy.delay(1, "soon") <= 0.5  # not a number: backoff
    assert 0.0 <= policy.delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") <= 0.5  # a date in the past: no floor


def test_the_budget_is_time_not_a_count() -> None:
    slept: list[float] = []
    now = [1000.0]

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    class FakeStop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            sleep(timeout or 0.0)
            return False

    policy = RetryPolicy(budget_s=120.0, max_delay_s=30.0, rng=random.Random(5), monotonic=lambda: now[0])
    clock = policy.clock(FakeStop())
    while clock.wait("1"):
        pass
    assert abs(sum(slept) - 120.0) < 1e-6  # waited the whole budget, the last wait cut to what was left
    assert len(slept) > 6  # many more tries than the old count of six
    assert clock.gave_up().startswith(f"gave up after {clock.tries} tries in 120 s")


def test_the_host_gate_halves_on_throttling_and_recovers_additively() -> None:
    gate = HostGate(16, calm_s=0.0)
    gate.acquire()
    gate.release(429)
    assert gate.limit == 8
    for status in (503, 429, 429):
        gate.acquire()
        gate.release(status)
    assert gate.limit == 1
    gate.acquire()
    gate.release(None)  # no answer: neither way
    assert gate.limit == 1
    for _ in range(200):
        gate.acquire()
        gate.release(200)
    assert gate.limit == 16


def test_the_host_gate_holds_requests_beyond_the_limit() -> None:
    gate = HostGate(4, calm_s=0.0)
    for _ in range(2):
        gate.acquire()
        gate.release(429)  # limit 1
    gate.acquire()
    entered = threading.Event()

    def second() -> None:
        gate.acquire()
        entered.set()
        gate.release(200)

    t = threading.Thread(target=second)
    t.start()
    assert not entered.wait(0.2)  # held while one is in flight
    gate.release(200)
    assert entered.wait(2)
    t.join()


def test_one_burst_of_refusals_counts_once() -> None:
    gate = HostGate(16, calm_s=60.0)
    for _ in range(8):
        gate.acquire()
    for _ in range(8):
        gate.release(429)
    assert gate.limit == 8


class _Slow(httpx.SyncByteStream):
    def __init__(self, pieces: int, every_s: float, size: int) -> None:
        self.pieces, self.every_s, self.size = pieces, every_s, size

    def __iter__(self):  # type: ignore[no-untyped-def]
        for _ in range(self.pieces):
            time.sleep(self.every_s)
            yield b"x" * self.size


def test_a_trickle_is_dropped_once_the_window_passes() -> None:
    stream = WatchedStream(_Slow(100, 0.02, 1), RateWatch(0.2, 1024))  # 50 B/s, window 0.2 s
    got = 0
    with pytest.raises(Stalled) as info:
        for piece in stream:
            got += len(piece)
    assert 5 <= got <= 20 and "B/s for 0 s" in str(info.value)
    assert isinstance(info.value, httpx.ReadTimeout)  # the callers' retry and resume take it


def test_a_body_at_the_minimum_rate_is_left_alone() -> None:
    stream = WatchedStream(_Slow(20, 0.02, 4096), RateWatch(0.1, 1024))  # ~200 KB/s
    assert sum(len(p) for p in stream) == 20 * 4096


def test_once_one_request_spends_its_budget_the_others_stop_waiting() -> None:
    stop = threading.Event()
    spent = RetryPolicy(budget_s=0.0).clock(stop)
    waiting = RetryPolicy(budget_s=60.0, base_delay_s=30.0, max_delay_s=30.0).clock(stop)
    results: list[bool] = []
    t = threading.Thread(target=lambda: results.append(waiting.wait("30")))
    t0 = time.monotonic()
    t.start()
    time.sleep(0.1)
    assert not spent.wait()  # gives up: the host is down for everyone
    t.join(5)
    assert results == [False] and time.monotonic() - t0 < 5
    assert not RetryPolicy(budget_s=60.0).clock(stop).wait()  # and later requests to the host do not wait


@pytest.mark.parametrize(("window_bytes", "verdict"), [
    (0, "stalled"), (60 * 1024 - 1, "stalled"), (60 * 1024, "slow"), (60 * 1024 * SLOW_FACTOR - 1, "slow"),
    (60 * 1024 * SLOW_FACTOR, "ok"), (60 * 10_000_000, "ok"),
])  # fmt: skip
def test_pace_of_one_window(window_bytes: int, verdict: str) -> None:
    assert pace(window_bytes, 60.0, 1024) == verdict


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fed(watch: RateWatch, clock: _Clock, rate: int, seconds: int) -> None:
    for _ in range(seconds):
        clock.now += 1
        watch.feed(rate)


def test_a_slow_transfer_is_said_once_with_its_rate_before_it_would_be_dropped() -> None:
    clock, said = _Clock(), []
    watch = RateWatch(60, 1024, what="the answer to downloading blob sha256:ab of r/x", warn=said.append,
                      clock=clock)
    _fed(watch, clock, 2000, 59)
    assert said == []  # not one whole window yet
    _fed(watch, clock, 2000, 200)  # four windows at 2,000 B/s: slow, not stalled
    assert len(said) == 1, said
    assert said[0].startswith("the answer to downloading blob sha256:ab of r/x is slow: 2,000 B/s over the last "
                              "60 s") and "dropped and resumed below 1,024 B/s" in said[0]


def test_a_normal_transfer_says_nothing() -> None:
    clock, said = _Clock(), []
    fast = RateWatch(60, 1024, warn=said.append, clock=clock)
    _fed(fast, clock, 1024 * SLOW_FACTOR, 600)  # exactly the slow bound for ten minutes
    short = RateWatch(60, 1024, warn=said.append, clock=clock)
    _fed(short, clock, 100, 30)  # slow, but done within one window
    assert said == []


def test_a_trickle_below_the_minimum_is_dropped_not_warned_about() -> None:
    clock, said = _Clock(), []
    watch = RateWatch(60, 1024, warn=said.append, clock=clock)
    with pytest.raises(Stalled):
        _fed(watch, clock, 500, 61)
    assert said == []
