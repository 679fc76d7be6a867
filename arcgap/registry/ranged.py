"""Large blobs fetched as several byte ranges over several connections at once, handed on strictly in order.

On a long lossy path one TCP connection is loss-limited (about MSS/RTT × 1.22/√loss), so one blob over one
connection cannot fill the link however many blobs run beside it. A blob of at least ``threshold_bytes`` is
cut into parts of ``part_bytes``; the first part is asked for with ``Range`` (a probe): a ``206`` whose
``Content-Range`` and ``Content-Length`` name exactly the bytes asked for turns the blob ranged, anything else
(a ``200`` with the whole body: the source ignores ``Range``) makes it one stream, and the registry is
remembered as such for later blobs. The head part is always read by the consumer's own thread (so a blob
never waits for a slot held by blobs behind it); up to ``ahead`` parts ahead of it are fetched whole by
``window`` helper threads, each holding one slot of a :class:`RangeBudget` shared by every blob of the run until the
consumer has passed it on: memory is at most ``slots × part_bytes`` plus one chunk per head, whatever the
layer size. A part whose connection breaks is asked for again from its own offset; a part answered
inconsistently ends the ranged read, and the rest of the blob comes as one stream from that part's offset.
Redirects (a CDN) are followed per request; credentials only ever go to the registry's own origin (see
:meth:`~arcgap.registry.client.RegistryClient.send`). Every byte still passes, in order, through
:func:`~arcgap.oci.digest.verified_chunks`: the last chunk is released only after size and digest match.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from arcgap.errors import Fault, RegistryError
from arcgap.oci.digest import Digest, Verifier, verified_chunks
from arcgap.registry.auth import repo_scope
from arcgap.registry.bodyread import body_chunks
from arcgap.registry.client import CHUNK_BYTES, RegistryClient

RANGE_SLOTS = 32  # default ahead-part slots of a run: the extra connections a source's client pool must allow
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class RangedOptions:
    """When and how a blob is split. ``slots`` bounds the parts fetched ahead across all blobs of a run."""

    # Smaller blobs: one stream. 8 MiB (4 parts) and not more: a release's app layers (tens of MiB) fetched one
    # connection each held the 16-image set at 15 % of a 40 ms / 0.05 % link with --jobs 4 (make bench WAN=1);
    # on a fast path the probe's first chunk turns such a blob back into one stream (one extra request).
    threshold_bytes: int = 8 << 20
    part_bytes: int = 2 << 20  # a part is one request; on a 2.5 MB/s loss-limited connection under a second
    window: int = 16  # helper connections of one blob
    ahead: int = 32  # parts past the head one blob may have asked for: a slow part does not idle the others
    slots: int = RANGE_SLOTS  # parts ahead in flight or waiting across every blob: the memory bound (x part_bytes)
    # A probe whose first chunk arrived at least this fast says one connection already fills the path (loopback, a
    # LAN): the rest comes as one stream, which costs less CPU (measured on loopback: 1.1 GB/s one stream,
    # 0.35 GB/s in ranges of 4 MiB). On a long path slow start alone keeps a first 512 KiB far below this
    # (10 segments in the first round trip).
    fast_bytes_per_s: float = 64e6


@dataclass
class RangeBudget:
    """Shared by every download of a run: the ahead-part slots, and the registries that ignored ``Range``."""

    options: RangedOptions = field(default_factory=RangedOptions)
    _slots: threading.Semaphore = field(init=False)
    _single: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._slots = threading.Semaphore(max(0, self.options.slots))

    def take(self) -> bool:
        return self._slots.acquire(blocking=False)

    def give(self) -> None:
        self._slots.release()

    def single(self, registry: str) -> bool:
        with self._lock:
            return registry in self._single

    def mark_single(self, registry: str) -> None:
        with self._lock:
            self._single.add(registry)


class _Inconsistent(Exception):
    """A ranged answer that does not name the bytes asked for: the blob goes on as one stream."""


class _Stopped(Exception):
    """The consumer went away: a helper stops reading."""


def stream_blob(client: RegistryClient, repository: str, digest: Digest, size_bytes: int, *, budget: RangeBudget,
                what: str = "") -> Iterator[bytes]:
    """The blob's bytes, verified by size and digest before the last chunk is released (as
    :meth:`RegistryClient.stream_blob`), fetched in parallel ranges when it is large and the source allows."""
    what = what or f"blob {digest} in {client.registry}/{repository}"
    o = budget.options
    if size_bytes < max(o.threshold_bytes, 2 * o.part_bytes) or budget.single(client.registry):
        return client.stream_blob(repository, digest, size_bytes, what=what)
    reader = _RangedRead(client, repository, digest, size_bytes, budget, what)
    return client.blamed(verified_chunks(reader.chunks(), Verifier(digest, size_bytes, what=what)), repository, digest)


def _check_range(resp: httpx.Response, start: int, end: int, size_bytes: int) -> None:
    """Raise :class:`_Inconsistent` unless ``resp`` is a 206 carrying exactly bytes ``start``–``end``."""
    if resp.status_code != 206:
        raise _Inconsistent(f"answered {resp.status_code} to a Range request")
    m = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
    if m is None or int(m.group(1)) != start or int(m.group(2)) != end or m.group(3) not in ("*", str(size_bytes)):
        raise _Inconsistent(f"Content-Range {resp.headers.get('content-range', '')[:80]!r} for bytes {start}-{end}")
    length = resp.headers.get("content-length")
    if length is not None and length.strip() != str(end - start + 1):
        raise _Inconsistent(f"Content-Length {length[:20]!r} for {end - start + 1} bytes")


class _RangedRead:
    def __init__(self, client: RegistryClient, repository: str, digest: Digest, size_bytes: int,
                 budget: RangeBudget, what: str) -> None:
        self.client = client
        self.repository = repository
        self.digest = digest
        self.size_bytes = size_bytes
        self.budget = budget
        self.what = what
        self.part_bytes = budget.options.part_bytes
        self.parts = -(-size_bytes // self.part_bytes)
        self._stop = threading.Event()

    def _get(self, headers: dict[str, str]) -> httpx.Response:
        return self.client.send(
            "GET", f"/v2/{self.repository}/blobs/{self.digest}",
            scopes=frozenset({repo_scope(self.repository, self.client.read_actions)}),
            what=f"downloading {self.what}", headers=headers, stream=True, follow_redirects=True)

    def _span(self, index: int) -> tuple[int, int]:
        start = index * self.part_bytes
        return start, min(start + self.part_bytes, self.size_bytes) - 1

    def _part(self, index: int, first: httpx.Response | None = None) -> Iterator[bytes]:
        """Part ``index``'s bytes, asked for again from the first missing byte after a broken connection."""
        start, end = self._span(index)
        offset = start
        clock = self.client.retry.clock(self.client.gave_up)  # one time budget for this part's tries
        resp = first
        while True:
            if resp is None:
                resp = self._get({"Range": f"bytes={offset}-{end}"})
            try:
                _check_range(resp, offset, end, self.size_bytes)
                # The ordinary read keeps the connection for the next part (a warm congestion window).
                for chunk in body_chunks(resp, CHUNK_BYTES, direct_min_bytes=end - offset + 2):
                    if self._stop.is_set():
                        raise _Stopped
                    if len(chunk) > end + 1 - offset:
                        raise _Inconsistent("a range answered with more bytes than asked for")
                    offset += len(chunk)
                    yield chunk
                if offset != end + 1:
                    raise httpx.RemoteProtocolError("a range answered with fewer bytes than asked for")
                return
            except httpx.TransportError as exc:
                if not clock.wait():
                    raise self.client.transport_error(exc, f"downloading {self.what}") from None
            finally:
                resp.close()
                resp = None

    def _whole_part(self, index: int) -> list[bytes]:
        return list(self._part(index))

    def _single(self, offset: int, first: httpx.Response | None = None, *, use_range: bool = True) -> Iterator[bytes]:
        """The blob from ``offset`` to its end as one stream; ``first`` a 200 already open (the whole body).

        ``use_range=False`` (a source whose ranges cannot be trusted): every request asks for the whole body and
        the bytes before ``offset`` are read and dropped.
        """
        clock = self.client.retry.clock(self.client.gave_up)  # one time budget for this part's tries
        resp = first
        while True:
            if resp is None:
                resp = self._get({"Range": f"bytes={offset}-"} if offset and use_range else {})
            try:
                skip = offset if resp.status_code == 200 else 0
                if resp.status_code == 206:
                    m = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
                    if m is None or int(m.group(1)) != offset:
                        raise self.client.make_error(
                            RegistryError, f"downloading {self.what}: the registry answered a resumed download "
                            f"with Content-Range {resp.headers.get('content-range', '')[:80]!r} for bytes {offset}-",
                            operation=f"downloading {self.what}", fault=Fault.MALFORMED, status=206)
                for chunk in body_chunks(resp, CHUNK_BYTES):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk, skip = chunk[skip:], 0
                    offset += len(chunk)
                    yield chunk
                return
            except httpx.TransportError as exc:
                if not clock.wait():
                    raise self.client.transport_error(exc, f"downloading {self.what}") from None
            finally:
                resp.close()
                resp = None

    def chunks(self) -> Iterator[bytes]:
        """Every byte in order (unverified: :func:`stream_blob` verifies)."""
        start, end = self._span(0)
        probe = self._get({"Range": f"bytes={start}-{end}"})
        try:
            _check_range(probe, start, end, self.size_bytes)
        except _Inconsistent:
            self.budget.mark_single(self.client.registry)
            if probe.status_code == 200:
                yield from self._single(0, probe, use_range=False)  # the whole body is coming: read it
                return
            probe.close()
            yield from self._single(0, use_range=False)
            return
        o = self.budget.options
        pool = ThreadPoolExecutor(max_workers=max(1, o.window), thread_name_prefix="arcgap-range")
        ahead: dict[int, Future[list[bytes]]] = {}
        submitted = 1  # the next part not yet asked for (part 0 is the probe)

        def top_up(head: int) -> None:
            nonlocal submitted
            while submitted < self.parts and submitted - head <= o.ahead and self.budget.take():
                ahead[submitted] = pool.submit(self._whole_part, submitted)
                submitted += 1

        began = time.monotonic()
        passed = 0  # bytes handed on: where one stream takes over should a part be answered inconsistently
        fast: bool | None = None  # decided on the probe's first chunk
        try:
            try:
                for chunk in self._part(0, probe):
                    passed += len(chunk)
                    if fast is None:
                        fast = passed >= o.fast_bytes_per_s * (time.monotonic() - began)
                    if not fast:
                        top_up(0)
                    yield chunk
                if fast:
                    yield from self._single(passed)  # one connection is fast enough here
                    return
                for index in range(1, self.parts):
                    top_up(index)
                    future = ahead.pop(index, None)
                    if future is None:  # no slot was free: the head part comes over this thread's connection
                        submitted = max(submitted, index + 1)
                        for chunk in self._part(index):
                            passed += len(chunk)
                            yield chunk
                        continue
                    try:
                        data = future.result()
                    finally:
                        self.budget.give()
                    for chunk in data:
                        passed += len(chunk)
                        yield chunk
                    del data
            except _Inconsistent:
                self.budget.mark_single(self.client.registry)
                self._release(pool, ahead)
                yield from self._single(passed, use_range=False)
        finally:
            self._release(pool, ahead)

    def _release(self, pool: ThreadPoolExecutor, ahead: dict[int, Future[list[bytes]]]) -> None:
        """Stop the helpers; each slot comes back when its part is done (at once for one never started)."""
        self._stop.set()
        for future in ahead.values():
            future.cancel()
            future.add_done_callback(lambda _f: self.budget.give())
        ahead.clear()
        pool.shutdown(wait=False, cancel_futures=True)
