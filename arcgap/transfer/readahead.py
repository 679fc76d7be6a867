"""Read the bundle on a second thread while the first one uploads: decompression, tar parsing and digest
checks overlap with network I/O (zstd, hashlib and sockets all release the GIL).

Order and semantics are unchanged: chunks of blob *i* arrive in order, and a verification failure is raised
from blob *i*'s chunk iterator exactly where the plain reader would raise it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_END_OF_BLOB = object()
_END = object()
QUEUE_CHUNKS = 16  # ~16 × the reader's chunk size buffered ahead


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def read_ahead(blobs: Iterator[tuple[T, Iterator[bytes]]], *, depth: int = QUEUE_CHUNKS) -> Iterator[
    tuple[T, Iterator[bytes]]
]:
    """Wrap ``BundleReader.blobs()``; every blob's chunks must be consumed before asking for the next."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for entry, chunks in blobs:
                if not put(("blob", entry)):
                    return
                for chunk in chunks:
                    if not put(chunk):
                        return
                if not put(_END_OF_BLOB):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer at the same point in the stream
            put(_Raised(exc))

    thread = threading.Thread(target=produce, daemon=True, name="arcgap-read-ahead")
    thread.start()

    def get() -> object:
        item = q.get()
        if isinstance(item, _Raised):
            raise item.exc
        return item

    def chunks_of_current() -> Iterator[bytes]:
        while True:
            item = get()
            if item is _END_OF_BLOB:
                return
            yield item  # type: ignore[misc]

    try:
        while True:
            item = get()
            if item is _END:
                return
            assert isinstance(item, tuple) and item[0] == "blob"
            it = chunks_of_current()
            yield item[1], it
            for _ in it:  # the caller may have stopped early (dry run): keep the stream aligned
                pass
    finally:
        stop.set()
        thread.join(timeout=5)
