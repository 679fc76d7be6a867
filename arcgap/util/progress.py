"""Progress reporting: rich bars on a terminal, plain lines otherwise, nothing when quiet.

Text reaching a reporter may come from a bundle or a registry: every line is escaped (arcgap.util.safetext).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from arcgap.util.safetext import safe


class Reporter:
    """Silent base: the library calls these; only the CLI chooses an implementation."""

    def phase(self, text: str) -> None:
        pass

    def warn(self, text: str) -> None:
        pass

    def start(self, total_bytes: int, *, images: int, label: str) -> None:
        pass

    def advance(self, n_bytes: int) -> None:
        pass

    def item_done(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _human(n: float) -> str:
    if isinstance(n, int) and abs(n) >= 1024**5:  # a size from untrusted input can be absurd (10**400): no float
        return f"{n // 1024**4:,} TiB" if abs(n) < 10**30 else "more than 10**30 B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


human_bytes = _human


class PlainReporter(Reporter):
    """One line per phase and per finished item, and a byte count every few seconds; for logs and CI."""

    def __init__(self, stream: TextIO | None = None, *, interval_s: float = 5.0) -> None:
        self._out = stream or sys.stderr
        self._interval = interval_s
        self._total = 0
        self._done = 0
        self._t0 = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        print(safe(text), file=self._out, flush=True)

    def phase(self, text: str) -> None:
        self._line(text)

    def warn(self, text: str) -> None:
        self._line(f"warning: {text}")

    def start(self, total_bytes: int, *, images: int, label: str) -> None:
        self._total, self._done, self._t0 = total_bytes, 0, time.monotonic()
        self._last = self._t0
        self._line(f"{label}: {images} images, {_human(total_bytes)}")

    def advance(self, n_bytes: int) -> None:
        with self._lock:
            self._done += n_bytes
            now = time.monotonic()
            if now - self._last >= self._interval:
                self._last = now
                rate = self._done / max(now - self._t0, 1e-6)
                self._line(f"  {_human(self._done)} of {_human(self._total)} ({_human(rate)}/s)")

    def item_done(self, text: str) -> None:
        self._line(f"  {text}")

    def close(self) -> None:
        if self._total:
            elapsed = max(time.monotonic() - self._t0, 1e-6)
            self._line(f"  {_human(self._done)} in {elapsed:.1f} s ({_human(self._done / elapsed)}/s)")
            self._total = 0


class RichReporter(Reporter):
    """A bytes bar with throughput and ETA, plus per-item lines above it."""

    def __init__(self, console: object | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._console = console if isinstance(console, Console) else Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )
        self._task: int | None = None

    def phase(self, text: str) -> None:
        self._console.print(safe(text), markup=False, highlight=False)  # user text: never read as markup

    def warn(self, text: str) -> None:
        from rich.text import Text

        self._console.print(Text.assemble(("warning: ", "yellow"), safe(text)), highlight=False)

    def start(self, total_bytes: int, *, images: int, label: str) -> None:
        self._progress.start()
        from rich.markup import escape

        self._task = self._progress.add_task(escape(safe(f"{label} ({images} images)")), total=total_bytes)

    def advance(self, n_bytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n_bytes)  # type: ignore[arg-type]

    def item_done(self, text: str) -> None:
        from rich.text import Text

        self._progress.console.print(Text.assemble("  ", ("✓", "green"), " ", safe(text)), highlight=False)

    def close(self) -> None:
        self._progress.stop()
