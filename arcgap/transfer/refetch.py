"""An export's output written once more when a source registry served a blob with other content.

A bundle is one zstd stream whose bytes before the bad blob are already compressed and written (a member can
not be taken back out of the stream), so the whole output is written again from its start, once: the blobs
already verified come back from the blob cache, the bad one is fetched again. The same images give the same
bytes, so the bundle stays deterministic. A second mismatch stops the run, the registry blamed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from arcgap.errors import Fault, IntegrityError
from arcgap.oci.digest import Digest
from arcgap.transfer.source import Meter

T = TypeVar("T")
Attempt = Callable[[Meter, Callable[[Digest], None]], T]


def served_other_content(exc: IntegrityError) -> bool:
    """True when a registry served bytes that fail their digest (not a damaged cache entry or bundle)."""
    return exc.detail is not None and exc.detail.fault == Fault.BAD_CONTENT


def once_more(attempt: Attempt[T], *, meter: Meter, done: Callable[[Digest], None],
              warn: Callable[[str], None], again: str = "writing the output again from its start") -> T:
    """``attempt(meter, done)``; after a registry served other content, once more (``warn`` says so first).

    The bytes the failed attempt metered are taken back, and ``done`` is told each digest once.
    """
    seen: set[Digest] = set()

    def done_once(digest: Digest) -> None:
        if digest not in seen:
            seen.add(digest)
            done(digest)

    counted = [0]

    def counting(n_bytes: int) -> None:
        counted[0] += n_bytes
        meter(n_bytes)

    try:
        return attempt(counting, done_once)
    except IntegrityError as exc:
        if not served_other_content(exc):
            raise
        first = exc.detail
        meter(-counted[0])
        warn(f"{exc.message}; fetching it once more ({again})")
    try:
        return attempt(meter, done_once)
    except IntegrityError as exc:
        # Any second mismatch stops the run; the same blob's says it was not a one-off.
        if served_other_content(exc) and first is not None and exc.detail is not None \
                and exc.detail.operation == first.operation:
            exc.message += " (the second time it was fetched too)"
            exc.args = (exc.message,)
        raise
