"""arcgap.registry.uploadwatch: an upload request that stops moving is said once; a trickling body is dropped."""

from __future__ import annotations

import time

import pytest

from arcgap.registry.bodyread import Stalled
from arcgap.registry.uploadwatch import UploadWatch, Watchdog, WatchedBody


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_body_that_stops_moving_is_said_once_with_the_bytes_sent() -> None:
    clock, said = Clock(), []
    watch = UploadWatch(60.0, 1024, what="uploading blob sha256:ab", warn=said.append, clock=clock)
    pieces = iter(WatchedBody([b"x" * 100_000, b"y" * 100_000], watch))
    next(pieces)
    clock.now = 5.0
    next(pieces)  # the first piece went out at 5 s
    watch.check(30.0)  # 25 s quiet: under half the window
    assert said == []
    watch.check(36.0)
    watch.check(50.0)
    assert len(said) == 1
    assert said[0].startswith("uploading blob sha256:ab: no progress for 31 s (100,000 bytes sent)")


def test_a_sent_body_waiting_for_its_answer_says_so() -> None:
    clock, said = Clock(), []
    watch = UploadWatch(4.0, 1024, what="committing blob", warn=said.append, clock=clock)
    assert list(WatchedBody([b"abc"], watch)) == [b"abc"]
    watch.check(1.0)
    assert said == []
    watch.check(2.5)
    assert "3 bytes sent; every byte is sent, waiting for the answer" in said[0]


def test_a_body_moving_at_a_good_pace_says_nothing() -> None:
    clock, said = Clock(), []
    watch = UploadWatch(60.0, 1024, what="uploading", warn=said.append, clock=clock)
    for _ in WatchedBody([b"x" * 1_000_000] * 10, watch):
        clock.now += 1.0
        watch.check(clock.now)
    assert said == []


def test_a_trickling_body_is_dropped_like_a_download() -> None:
    clock, said = Clock(), []
    watch = UploadWatch(10.0, 1024, what="uploading", warn=said.append, clock=clock)
    pieces = iter(WatchedBody([b"x" * 100] * 100, watch))
    with pytest.raises(Stalled):
        for _ in pieces:
            clock.now += 1.0  # 100 B/s: under the 1,024 B/s minimum over the 10 s window


def test_the_watchdog_checks_watches_in_flight_and_stops_when_none_is_left() -> None:
    said: list[str] = []
    watch = UploadWatch(0.2, 1, what="uploading", warn=said.append)
    dog = Watchdog(every_s=0.02)
    dog.add(watch)
    deadline = time.monotonic() + 5
    while not said and time.monotonic() < deadline:
        time.sleep(0.02)
    dog.remove(watch)
    assert len(said) == 1
    while dog._thread is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dog._thread is None
