"""Hand the compressor's output to a thread that hashes and writes it, so compression never waits for either.

The export's main thread runs the tar framing and zstd; before this, it also ran the part sha256 and the file
write, one after the other, and those two took as long as the compression itself. ``BackgroundSink`` sits
between the compressor and a :class:`~arcgap.bundle.partsink.PartSink` (or any binary sink): ``write`` queues
the bytes (at most ``depth`` chunks, so memory stays bounded) and a worker thread passes them on in order.

A write error on the worker (disk full) is kept and raised, as the same exception, by the next ``write``,
``drain`` or ``flush`` on the caller's side; the worker discards everything after it. ``stop`` discards what
is queued and waits for the worker, after which the caller may clean up the inner sink safely.
"""

from __future__ import annotations

import queue
import threading
from typing import Protocol

DEFAULT_DEPTH = 8  # × the compressor's write size (1 MiB): the most this adds to memory
_STOP = None


class _Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


class BackgroundSink:
    """A write-only stream whose writes happen, in order, on a worker thread."""

    def __init__(self, inner: _Sink, *, depth: int = DEFAULT_DEPTH) -> None:
        self.inner = inner
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max(1, depth))
        self._error: Exception | None = None
        self._discard = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="arcgap-write")
        self._thread.start()

    def writable(self) -> bool:
        return True

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            try:
                if data is _STOP:
                    return
                if self._error is None and not self._discard:
                    self.inner.write(data)
            except Exception as exc:  # noqa: BLE001 - re-raised on the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes | memoryview) -> int:
        self._raise_pending()
        if self._discard:
            return len(data)
        if not self._thread.is_alive():
            raise OSError("the bundle writer thread has stopped")
        self._queue.put(data if isinstance(data, bytes) else bytes(data))
        return len(data)

    def drain(self) -> None:
        """Wait until everything queued has been written; raise the worker's error, if any."""
        if self._thread.is_alive():
            self._queue.join()
        self._raise_pending()

    def flush(self) -> None:
        self.drain()
        flush = getattr(self.inner, "flush", None)
        if flush is not None:
            flush()

    def stop(self) -> None:
        """Discard what is queued and end the worker; idempotent. The inner sink is left as it is."""
        self._discard = True
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
