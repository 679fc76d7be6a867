"""arcgap.util.backgroundsink: writes arrive in order; a worker's error reaches the caller; stop discards."""

from __future__ import annotations

import errno
import threading

import pytest

from arcgap.util.backgroundsink import BackgroundSink


class Recorder:
    def __init__(self, fail_at: int | None = None) -> None:
        self.data = bytearray()
        self.calls = 0
        self.fail_at = fail_at
        self.threads: set[str] = set()
        self.flushed = 0

    def write(self, data: bytes | memoryview) -> int:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.data += data
        return len(data)

    def flush(self) -> None:
        self.flushed += 1


def test_writes_arrive_in_order_on_the_worker() -> None:
    inner = Recorder()
    sink = BackgroundSink(inner, depth=2)
    expected = b"".join(bytes([i % 256]) * (i + 1) for i in range(300))
    for i in range(300):
        sink.write(memoryview(bytes([i % 256]) * (i + 1)))
    sink.flush()
    assert bytes(inner.data) == expected
    assert inner.flushed == 1
    assert inner.threads == {"arcgap-write"}
    sink.stop()
    sink.stop()  # idempotent


def test_a_worker_error_is_raised_by_a_later_call_and_nothing_after_it_is_written() -> None:
    inner = Recorder(fail_at=3)
    sink = BackgroundSink(inner, depth=1)
    with pytest.raises(OSError) as caught:
        for _ in range(100):
            sink.write(b"x" * 10)
        sink.drain()
    assert caught.value.errno == errno.ENOSPC
    assert bytes(inner.data) == b"x" * 20
    with pytest.raises(OSError):
        sink.drain()
    sink.stop()


def test_stop_discards_what_is_queued() -> None:
    gate = threading.Event()

    class Slow(Recorder):
        def write(self, data: bytes | memoryview) -> int:
            gate.wait(5)
            return super().write(data)

    inner = Slow()
    sink = BackgroundSink(inner, depth=4)
    for _ in range(4):
        sink.write(b"y")
    gate.set()
    sink.stop()
    assert len(inner.data) <= 1  # at most the write already in progress
    assert sink.write(b"z") == 1  # after stop: accepted and dropped
    assert len(inner.data) <= 1
