"""arcgap.util.parallel.each: results in order; a failure stops what has not started, as a one-by-one loop would."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from arcgap.util import parallel

JOBS = 4


def test_results_come_back_in_order() -> None:
    def slow_square(n: int) -> int:
        time.sleep(0.01 * (5 - n % 5))
        return n * n

    assert parallel.each(slow_square, range(12), jobs=JOBS) == [n * n for n in range(12)]


def test_a_failure_cancels_the_calls_not_started() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def push(n: int) -> int:
        with lock:
            started.append(n)
        if n == 2:
            raise PermissionError("tag is immutable")
        time.sleep(0.05)
        return n

    with pytest.raises(PermissionError):
        parallel.each(push, range(40), jobs=JOBS)
    assert len(started) < 40 and len(started) <= 2 + 2 * JOBS  # the rest never ran


def test_interrupt_cancels_the_calls_not_started() -> None:
    started: list[int] = []
    main = threading.main_thread()
    assert threading.current_thread() is main

    def push(n: int) -> int:
        started.append(n)
        if n == 0:  # a real Ctrl-C, sent once the fan-out runs (a timer could fire before it starts, under load)
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        return n

    with pytest.raises(KeyboardInterrupt):
        parallel.each(push, range(40), jobs=JOBS)
    assert len(started) < 40


def test_after_the_first_failure_freed_workers_start_no_new_item() -> None:
    """Item 0 fails at once while the other workers are busy: its worker, freed, must not take item 4 (nor any
    worker a later one), even before the caller's thread wakes to cancel the queue."""
    started: list[int] = []
    lock = threading.Lock()
    running = threading.Barrier(JOBS, timeout=5)

    def work(n: int) -> int:
        with lock:
            started.append(n)
        if n < JOBS:
            running.wait()  # every worker has its first item before item 0 fails
        if n == 0:
            raise ConnectionError("registry down")
        time.sleep(0.2)  # the others are still running when item 0 fails
        return n

    with pytest.raises(ConnectionError):
        parallel.each(work, range(40), jobs=JOBS)
    assert sorted(started) == list(range(JOBS)), started  # only the items running when the first one failed


def test_the_first_real_failure_is_raised_not_a_skipped_item() -> None:
    def work(n: int) -> int:
        if n == 1:
            raise ValueError("bad item")
        time.sleep(0.02)
        return n

    with pytest.raises(ValueError, match="bad item"):
        parallel.each(work, range(20), jobs=2)


def test_lookups_run_several_per_job_within_a_cap() -> None:
    assert parallel.lookup_jobs(1) == 1  # --jobs 1: one request at a time, everywhere
    assert parallel.lookup_jobs(2) == 2 * parallel.LOOKUPS_PER_JOB
    assert parallel.lookup_jobs(4) == 4 * parallel.LOOKUPS_PER_JOB
    assert parallel.lookup_jobs(100) == parallel.MAX_LOOKUPS
    assert parallel.lookup_jobs(0) == 1


def test_the_check_at_the_source_asks_lookup_jobs_at_once() -> None:
    """A HEAD is a round trip, not bandwidth: ``find_missing`` keeps ``lookup_jobs(jobs)`` of them in flight."""
    from arcgap.arc.releases import find_missing
    from arcgap.oci.reference import parse_reference
    from arcgap.registry.resolve import Wanted

    lock = threading.Lock()
    now = peak = 0

    class Client:
        def head_manifest(self, repository: str, ref: str) -> object:
            nonlocal now, peak
            with lock:
                now += 1
                peak = max(peak, now)
            time.sleep(0.05)
            with lock:
                now -= 1
            return None if repository.endswith("7") else object()

    wanted = [Wanted(f"img{n}", parse_reference(f"reg.example/arc/img{n}:v1")) for n in range(24)]
    missing = find_missing(lambda _registry: Client(), wanted, jobs=2)  # type: ignore[arg-type, return-value]
    assert [w.name for w in missing] == ["img7", "img17"]
    assert peak == parallel.lookup_jobs(2)
