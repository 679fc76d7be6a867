"""Download blobs in parallel while handing them on strictly in order, with bounded memory.

Each blob gets a small queue of chunks; at most ``jobs`` blobs are in flight, so memory stays at about
jobs × depth × chunk size however large a layer is. Given ``size`` and ``ahead_bytes``, more blobs (up to
``workers``) are claimed while the blobs claimed and not yet consumed total at most ``ahead_bytes``: on a long
path a blob's download is mostly waiting, and the next ones should already be on their way. Those extra claims
begin only once the consumer has waited ``starved_s`` in all for chunks not yet there, and only for items
``ahead_ok`` allows (a source known to be fast): a consumer that never waits (a fast source, a busy writer)
gains nothing from them, and each would hold a queue of chunks.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from arcgap.util.parallel import DEFAULT_JOBS

T = TypeVar("T")
_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class OrderedPrefetcher:
    """``for item, chunks in OrderedPrefetcher(items, fetch, jobs=n)`` — chunks must be consumed in turn."""

    def __init__(
        self, items: Sequence[T], fetch: Callable[[T], Iterable[bytes]], *, jobs: int = DEFAULT_JOBS, depth: int = 4,
        size: Callable[[T], int] | None = None, ahead_bytes: int = 0, workers: int | None = None,
        starved_s: float = 0.0, ahead_ok: Callable[[T], bool] | None = None,
    ) -> None:
        self._items = list(items)
        self._fetch = fetch
        self._jobs = max(1, jobs)
        self._workers = max(self._jobs, workers or 0) if size is not None and ahead_bytes > 0 else self._jobs
        self._sizes = [size(item) for item in self._items] if size is not None else [0] * len(self._items)
        self._ahead_bytes = ahead_bytes
        self._claimed = 0  # blobs claimed and not yet consumed
        self._claimed_bytes = 0
        self._starved_s = starved_s
        self._ahead_ok = ahead_ok or (lambda _item: True)
        self._waited_s = 0.0  # the consumer's time spent waiting for chunks (only its thread adds to it)
        self._room = threading.Condition()
        self._queues = [queue.Queue(maxsize=depth) for _ in self._items]  # type: list[queue.Queue[object]]
        self._next = 0  # the next blob to claim (under _room)
        self._stop = threading.Event()
        self._failed = threading.Event()  # a fetch failed: no worker claims another blob (those claimed go on)
        # One slot per blob between "claimed by a worker" and "fully consumed": at most ``workers`` blobs ahead
        # (``jobs`` unless bytes allow more), however small they are (a full queue alone would not stop a worker
        # racing through tiny blobs).
        self._slots = threading.Semaphore(self._workers)
        self._threads: list[threading.Thread] = []

    def _put(self, q: queue.Queue[object], value: object) -> bool:
        while not self._stop.is_set():
            try:
                q.put(value, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _worker(self) -> None:
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.2):
                continue
            index = self._claim()
            if index is None:
                self._slots.release()
                return
            q = self._queues[index]
            try:
                for chunk in self._fetch(self._items[index]):
                    if not self._put(q, chunk):
                        return
                self._put(q, _DONE)
            except BaseException as exc:  # handed to the consumer, re-raised there
                self._failed.set()  # every blob before this one was claimed already: the consumer reaches it
                self._put(q, _Failed(exc))

    def _claim(self) -> int | None:
        """The next blob's index once it may be claimed (fewer than ``jobs`` claimed, or their bytes leave room
        for it); None when there is none left, a fetch failed or the prefetcher stops."""
        with self._room:
            while not self._stop.is_set():
                index = self._next
                if index >= len(self._items) or self._failed.is_set():
                    return None
                if self._claimed < self._jobs or (
                        self._waited_s >= self._starved_s and self._ahead_ok(self._items[index])
                        and self._claimed_bytes + self._sizes[index] <= self._ahead_bytes):
                    self._next += 1
                    self._claimed += 1
                    self._claimed_bytes += self._sizes[index]
                    return index
                self._room.wait(timeout=0.2)
        return None

    def _waited(self, seconds: float) -> None:
        starved = self._waited_s >= self._starved_s
        self._waited_s += seconds
        if not starved and self._waited_s >= self._starved_s:
            with self._room:
                self._room.notify_all()  # the extra claims may begin

    def _consumed(self, index: int) -> None:
        with self._room:
            self._claimed -= 1
            self._claimed_bytes -= self._sizes[index]
            self._room.notify_all()
        self._slots.release()

    def _chunks(self, index: int) -> Iterator[bytes]:
        q = self._queues[index]
        while True:
            try:
                value = q.get_nowait()
            except queue.Empty:
                began = time.monotonic()
                try:
                    value = q.get(timeout=1.0)
                except queue.Empty:
                    if not any(t.is_alive() for t in self._threads) and q.empty():
                        raise RuntimeError("download workers stopped without finishing a blob") from None
                    continue
                finally:
                    self._waited(time.monotonic() - began)
            if value is _DONE:
                self._consumed(index)
                return
            if isinstance(value, _Failed):
                raise value.exc
            yield value  # type: ignore[misc]

    def __iter__(self) -> Iterator[tuple[T, Iterator[bytes]]]:
        for _ in range(min(self._workers, len(self._items))):
            t = threading.Thread(target=self._worker, daemon=True, name="arcgap-fetch")
            t.start()
            self._threads.append(t)
        try:
            for index, item in enumerate(self._items):
                yield item, self._chunks(index)
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
