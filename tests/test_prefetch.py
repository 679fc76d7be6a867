"""arcgap.transfer.prefetch.OrderedPrefetcher: parallel fetches handed on in order, errors in place, bounded memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from arcgap.errors import NetworkError
from arcgap.transfer.prefetch import OrderedPrefetcher


def _new_fetch_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.name == "arcgap-fetch"]


@pytest.mark.parametrize("jobs", [1, 4, 16])
def test_order_preserved_when_later_items_finish_first(jobs: int) -> None:
    items = list(range(8))
    finished: list[int] = []
    lock = threading.Lock()

    def fetch(i: int) -> Iterator[bytes]:
        time.sleep((len(items) - i) * 0.004)  # item 7 is quickest, item 0 slowest
        yield f"{i}-a".encode()
        yield f"{i}-b".encode()
        with lock:
            finished.append(i)

    got = [(item, list(chunks)) for item, chunks in OrderedPrefetcher(items, fetch, jobs=jobs)]
    assert got == [(i, [f"{i}-a".encode(), f"{i}-b".encode()]) for i in items]
    assert sorted(finished) == items
    if jobs >= 4:
        assert finished != sorted(finished)  # they really finished out of order


def test_empty_items() -> None:
    assert list(OrderedPrefetcher([], lambda i: [b"x"], jobs=4)) == []


def test_empty_blob_has_no_chunks() -> None:
    got = [(i, list(c)) for i, c in OrderedPrefetcher(["a", "b"], lambda i: [] if i == "a" else [b"b"])]
    assert got == [("a", []), ("b", [b"b"])]


def test_exception_raised_when_that_items_chunks_are_consumed() -> None:
    failure = NetworkError("blob sha256:bad: connection reset")

    def fetch(i: int) -> Iterator[bytes]:
        yield f"{i}".encode()
        if i == 2:
            raise failure
        yield b"end"

    seen: list[tuple[int, bytes]] = []
    with pytest.raises(NetworkError) as info:
        for item, chunks in OrderedPrefetcher(range(5), fetch, jobs=4):  # type: ignore[arg-type]
            for chunk in chunks:
                seen.append((item, chunk))
    assert info.value is failure
    assert seen == [(0, b"0"), (0, b"end"), (1, b"1"), (1, b"end"), (2, b"2")]


def test_exception_before_any_chunk_waits_for_its_turn() -> None:
    def fetch(i: int) -> list[bytes]:
        if i == 3:
            raise ValueError("item 3 failed at once")
        time.sleep(0.01)
        return [b"ok"]

    prefetcher = OrderedPrefetcher(list(range(5)), fetch, jobs=5)
    it = iter(prefetcher)
    for expected in range(3):
        item, chunks = next(it)
        assert (item, list(chunks)) == (expected, [b"ok"])
    item, chunks = next(it)
    assert item == 3
    with pytest.raises(ValueError, match="^item 3 failed at once$"):
        list(chunks)
    prefetcher.close()


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_producer_at_most_depth_plus_one_ahead(depth: int) -> None:
    produced = 0
    lock = threading.Lock()

    def fetch(_: str) -> Iterator[bytes]:
        nonlocal produced
        for n in range(100):
            with lock:
                produced += 1
            yield n.to_bytes(2, "big")

    consumed = 0
    ahead: list[int] = []
    for _item, chunks in OrderedPrefetcher(["layer"], fetch, jobs=1, depth=depth):
        for chunk in chunks:
            assert int.from_bytes(chunk, "big") == consumed
            consumed += 1
            with lock:
                ahead.append(produced - consumed)
            if consumed % 10 == 0:
                time.sleep(0.003)  # give the producer time to run as far ahead as it may
    assert consumed == 100
    assert max(ahead) <= depth + 1
    assert max(ahead) >= depth  # it does prefetch, up to the bound


def test_many_small_blobs_are_not_all_buffered() -> None:
    """The module promises at most ``jobs`` blobs in flight, so memory is about jobs × depth × chunk size.

    Blobs of fewer than ``depth`` chunks never block their worker, so the workers should still not run
    through the whole list while the consumer is busy with the first blob.
    """
    jobs = 2
    started: list[int] = []

    def fetch(i: int) -> Iterator[bytes]:
        started.append(i)
        yield b"x" * 1024  # one chunk: a whole small layer

    prefetcher = OrderedPrefetcher(list(range(200)), fetch, jobs=jobs, depth=8)
    it = iter(prefetcher)
    item, chunks = next(it)
    assert list(chunks) == [b"x" * 1024]
    time.sleep(0.3)  # the consumer is busy writing item 0
    buffered = len(started)
    prefetcher.close()
    assert buffered <= 1 + jobs, f"{buffered} of 200 blobs fetched and held while the consumer was on blob 0"


def test_close_stops_workers() -> None:
    before = set(threading.enumerate())
    started: list[int] = []

    def fetch(i: int) -> Iterator[bytes]:
        started.append(i)
        for _ in range(1000):
            yield b"chunk"

    prefetcher = OrderedPrefetcher(list(range(20)), fetch, jobs=3, depth=2)
    it = iter(prefetcher)
    _item, chunks = next(it)
    assert next(chunks) == b"chunk"
    workers = _new_fetch_threads(before)
    assert len(workers) == 3
    t0 = time.monotonic()
    prefetcher.close()
    assert time.monotonic() - t0 < 2.0
    assert not any(t.is_alive() for t in workers)
    count = len(started)
    time.sleep(0.05)
    assert len(started) == count  # nothing new is fetched after close()
    assert count <= 3


def test_breaking_out_of_the_loop_stops_workers() -> None:
    before = set(threading.enumerate())

    def fetch(i: int) -> Iterator[bytes]:
        while True:
            yield b"endless"

    for _item, chunks in OrderedPrefetcher(list(range(10)), fetch, jobs=2, depth=2):
        assert next(iter(chunks)) == b"endless"
        workers = _new_fetch_threads(before)
        break
    # CPython drops the generator at the break; its finally: block calls close().
    assert workers and not any(t.is_alive() for t in workers)


def test_after_a_failed_fetch_no_worker_claims_another_blob() -> None:
    """Blob 1 fails while blobs 0, 2 and 3 are fetched: the freed workers start no blob after them (the export
    stops at blob 1 anyway), and the consumer gets blob 0 whole, then blob 1's own error."""
    started: list[int] = []
    lock = threading.Lock()
    running = threading.Barrier(4, timeout=5)

    def fetch(i: int) -> Iterator[bytes]:
        with lock:
            started.append(i)
        if i < 4:
            running.wait()
        if i == 1:
            raise NetworkError("source gone")
        time.sleep(0.1)
        yield f"{i}".encode()

    got: list[bytes] = []
    with pytest.raises(NetworkError, match="source gone"):
        for _, chunks in OrderedPrefetcher(list(range(12)), fetch, jobs=4):
            got.extend(chunks)
    assert got == [b"0"]
    time.sleep(0.2)
    assert sorted(started) == [0, 1, 2, 3], started


def test_more_blobs_on_their_way_while_their_bytes_allow() -> None:
    """With sizes: past ``jobs``, a blob is claimed only while the claimed ones total at most ``ahead_bytes``."""
    started: list[int] = []
    lock = threading.Lock()

    def fetch(i: int) -> Iterator[bytes]:
        with lock:
            started.append(i)
        yield b"x" * 4

    prefetcher = OrderedPrefetcher(list(range(8)), fetch, jobs=1, size=lambda i: 4, ahead_bytes=10, workers=6)
    it = iter(prefetcher)
    item, chunks = next(it)
    time.sleep(0.3)  # the consumer is busy before reading blob 0
    assert sorted(started) == [0, 1]  # blob 2 would make 12 bytes ahead
    assert list(chunks) == [b"xxxx"]
    time.sleep(0.3)
    assert sorted(started) == [0, 1, 2]  # blob 0 passed on: room for one more
    got = [item] + [i for i, c in it if list(c) == [b"xxxx"]]
    assert got == list(range(8))
    prefetcher.close()


def test_claims_past_jobs_wait_for_a_consumer_that_waits() -> None:
    """Past ``jobs``, blobs are claimed only once the consumer has waited ``starved_s`` for chunks (a consumer
    that never waits gains nothing from them), and never for items ``ahead_ok`` refuses."""
    started: list[int] = []
    seen_while_slow: list[int] = []
    lock = threading.Lock()

    def fetch(i: int) -> Iterator[bytes]:
        with lock:
            started.append(i)
        if i == 0:  # slow: the consumer waits for it; it ends once blob 1 was claimed, or after 3 s
            deadline = time.monotonic() + 3
            while 1 not in started and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)  # time for a wrongful claim of blob 2 or 3
            with lock:
                seen_while_slow.extend(started)
        yield b"x"

    prefetcher = OrderedPrefetcher(list(range(6)), fetch, jobs=1, size=lambda i: 1, ahead_bytes=100, workers=4,
                                   starved_s=0.3, ahead_ok=lambda i: i != 2)
    it = iter(prefetcher)
    _item, chunks = next(it)
    time.sleep(0.4)  # busy before reading blob 0: no wait yet, so no claim past jobs
    with lock:
        assert started == [0]
    began = time.monotonic()
    assert list(chunks) == [b"x"]
    assert time.monotonic() - began >= 0.3  # blob 1 was claimed only once the consumer had waited starved_s
    assert seen_while_slow == [0, 1]  # blob 2 is not claimed ahead (ahead_ok), so nor is blob 3
    got = [i for i, c in it if list(c) == [b"x"]]
    assert got == [1, 2, 3, 4, 5]
    prefetcher.close()
