"""Uploads watched like downloads: said when they make no progress for a while, dropped below the minimum rate.

A download's :class:`~arcgap.registry.bodyread.RateWatch` counts bytes as they arrive. An upload's bytes leave
in blocking socket writes, one per piece of the body, and its answer comes only after the last, so nothing runs
on the request's thread while it hangs: one watchdog thread looks at every upload request in flight, and one
that has moved nothing (no piece written, no answer) for half the stall window is said once, naming the request
and the bytes sent. The timeouts then drop it (the answer's after the stall window, a write's after the
transport's write timeout) and the upload resumes from what the registry holds (:mod:`arcgap.registry.upload`).
A body trickling out slower than the minimum rate over a whole window raises
:class:`~arcgap.registry.bodyread.Stalled` from its own pieces, like a trickling download.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

from arcgap.registry.bodyread import RateWatch

CHECK_EVERY_S = 0.25  # how often the watchdog looks; the quiet time said is at least half the stall window


class UploadWatch:
    """One request's body and answer, watched; ``body(content)`` is what goes to the transport."""

    def __init__(self, window_s: float, min_bytes_per_s: int, *, what: str, warn: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.warn = warn
        self.quiet_s = window_s / 2
        self.sent_bytes = 0
        self.body_sent = False
        self.warned = False
        self.rate = RateWatch(window_s, min_bytes_per_s, what=f"the body of {what}", warn=warn, clock=clock)
        self._clock = clock
        self._last = clock()

    def body(self, content: Iterable[bytes]) -> Iterator[bytes]:
        """``content`` piece by piece; a piece counts as sent when the transport asks for the next."""
        self._last = self._clock()
        for piece in content:
            yield piece
            self.sent_bytes += len(piece)
            self._last = self._clock()
            self.rate.feed(len(piece))  # under the minimum rate over a window: Stalled, the upload resumes
        self.body_sent = True

    def check(self, now: float) -> None:
        """Called by the watchdog: say once that nothing has moved for the quiet time."""
        quiet = now - self._last
        if self.warned or quiet < self.quiet_s:
            return
        self.warned = True
        waiting = "; every byte is sent, waiting for the answer" if self.body_sent else ""
        self.warn(f"{self.what}: no progress for {quiet:.0f} s ({self.sent_bytes:,} bytes sent{waiting}); "
                  f"dropped and resumed when it stays so")


class WatchedBody:
    """A request body through an :class:`UploadWatch`, re-iterable when ``content`` is (a resent body)."""

    def __init__(self, content: Iterable[bytes], watch: UploadWatch) -> None:
        self.content = content
        self.watch = watch

    def __iter__(self) -> Iterator[bytes]:
        return self.watch.body(self.content)


class Watchdog:
    """One thread for every watch in flight; it ends when none is left and starts again with the next."""

    def __init__(self, every_s: float = CHECK_EVERY_S) -> None:
        self.every_s = every_s
        self._watches: set[UploadWatch] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, watch: UploadWatch) -> None:
        with self._lock:
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="arcgap-upload-watch")
                self._thread.start()

    def remove(self, watch: UploadWatch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            time.sleep(self.every_s)
            with self._lock:
                watches = list(self._watches)
                if not watches:
                    self._thread = None
                    return
            now = time.monotonic()
            for watch in watches:
                watch.check(now)


WATCHDOG = Watchdog()
