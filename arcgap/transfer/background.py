"""Uploads from a sequential source that overlap with reading it, in bounded memory.

A registry ingests two uploads faster than one (distribution on 2 cores: 185 → 267 MB/s). A verified blob up to
BACKGROUND_MAX_BYTES is therefore held in memory and pushed by a worker while the stream moves on; at most
BACKGROUND_SLOTS such blobs are held at once, so memory stays bounded whatever the source holds. Larger blobs
are sent from the stream itself. The first failed upload stops the others and is raised to the reader.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Optional

from arcgap.bundle.format import BlobEntry

BACKGROUND_MAX_BYTES = 16 * 1024 * 1024
BACKGROUND_SLOTS = 2

# (entry, repositories, chunks, the chunks again from the start, or None when they cannot be read again)
Upload = Callable[[BlobEntry, list[str], Iterator[bytes], Optional[Callable[[], Iterator[bytes]]]], None]


def background_slots(jobs: int) -> int:
    """Blobs sent in the background at once: ``--jobs`` (1 means one upload at a time), at most BACKGROUND_SLOTS
    so memory stays bounded (each slot holds up to BACKGROUND_MAX_BYTES)."""
    return max(1, min(jobs, BACKGROUND_SLOTS))


class BackgroundUploads:
    """``with BackgroundUploads(upload) as b: b.place(entry, repos, chunks)``; leaving waits for every upload."""

    def __init__(self, upload: Upload, *, slots: int = BACKGROUND_SLOTS, max_bytes: int | None = None) -> None:
        self._upload = upload
        self._max_bytes = BACKGROUND_MAX_BYTES if max_bytes is None else max_bytes  # 0: every blob streamed
        self._slots = threading.Semaphore(slots)
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="arcgap-upload")
        self._futures: list[Future[None]] = []
        self._failed = threading.Event()

    def __enter__(self) -> BackgroundUploads:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        if exc_type is not None:
            self._failed.set()  # uploads not yet started return at once; those running end on their own
            self._pool.shutdown(wait=True, cancel_futures=True)
            return
        try:
            self._check(wait=True)  # every blob verified *and* present before the caller moves on
        finally:
            self._failed.set()
            self._pool.shutdown(wait=True, cancel_futures=True)

    def place(self, entry: BlobEntry, repositories: list[str], chunks: Iterator[bytes]) -> None:
        """Upload ``chunks`` into ``repositories``: held and sent by a worker when small, else sent from here."""
        self._check()
        if entry.size > self._max_bytes:
            self._upload(entry, repositories, chunks, None)
            return
        self._slots.acquire()
        if self._failed.is_set():  # a background upload failed while we waited: raise it now
            self._slots.release()
            self._check(wait=True)
        try:
            held = list(chunks)  # reading to the end verifies size and digest before anything is sent
        except BaseException:
            self._slots.release()
            raise
        self._futures.append(self._pool.submit(self._run, entry, repositories, held))

    def _run(self, entry: BlobEntry, repositories: list[str], held: list[bytes]) -> None:
        try:
            if self._failed.is_set():
                return  # another upload already failed: the copy stops, don't add requests
            self._upload(entry, repositories, iter(held), lambda: iter(held))
        except BaseException:
            self._failed.set()
            raise
        finally:
            held.clear()
            self._slots.release()

    def _check(self, *, wait: bool = False) -> None:
        """Raise the first failed upload (all of them finished when ``wait``)."""
        for future in list(self._futures):
            if wait or future.done():
                future.result()
                self._futures.remove(future)
