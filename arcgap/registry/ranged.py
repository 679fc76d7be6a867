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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import httpx

from arcgap.errors import Fault, RegistryError
from arcgap.oci.digest import Digest, Verifier, verified_chunks
from arcgap.registry.auth import repo_scope
from arcgap.registry.bodyread import body_chunks
from arcgap.registry.client import CHUNK_BYTES, RegistryClient
from arcgap.registry.pathrtt import path_rtt_s

# Default ahead-part slots of a run (x part_bytes: its memory bound for parts), at least its helper connections. A part
# at the head of the write order that is slow to come (a loss, a retransmission timeout) leaves the other parts
# finishing behind it until every slot holds one: with 64 (64 MiB) the link idled for up to a second (on the 40 ms /
# 0.05 % / 400 Mbit bench path, one traced round fell to 3 parts in flight and 13-28 MB/s for a second); with 128 the
# 22-image set reached 75-82 % of that link (median 80 %) instead of 65-81 % (median 75 %; make bench WAN=1, 6 rounds
# each beside curl-16r), for 205-266 MiB peak RSS instead of 197-205.
RANGE_SLOTS = 128
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class RangedOptions:
    """When and how a blob is split. ``slots`` bounds the parts fetched ahead across all blobs of a run."""

    # Smaller blobs: one stream. A release's app layers (tens of MiB) fetched one connection each held the
    # 16-image set at 15 % of a 40 ms / 0.05 % link with --jobs 4 (make bench WAN=1). 2 MiB (2 parts), not
    # 8: the set's five 3.9 MB layers took 3-5 s each on one connection (1 MB/s), two of them the run's last
    # bytes; with 2 MiB the 22-image set reached 82.6-84.8 % of that link against 80.4-84.1 % (4 rounds each).
    # On a fast path the probe's first chunk turns such a blob back into one stream (one extra request).
    threshold_bytes: int = 2 << 20
    # A part is one request: on a 2 MB/s loss-limited connection about half a second. A part hit by a loss or a
    # retransmission timeout holds back every part behind it until it is written: 1 MiB parts in 64 slots
    # held the 22-image set at 73-77 % of a 40 ms / 0.05 % / 400 Mbit link, 2 MiB parts in 48 slots at 57-62 %
    # (96 slots of 1 MiB: 62-70 %, all with a reserve of 8; make bench WAN=1, one after the other, loaded machine).
    part_bytes: int = 1 << 20
    # Helper connections of a run, shared by every blob: a part goes to the first free one, earliest blob first.
    # 16 held the 1 GiB layer at 33 MB/s of a 50 MB/s link (40 ms / 0.05 %; one connection: 2-3.5 MB/s).
    window: int = 32
    ahead: int = RANGE_SLOTS  # parts past the head one blob may have asked for: a slow part does not idle the others
    # Parts ahead in flight or waiting across every blob: the memory bound (x part_bytes). More than ``window``:
    # a part slow to arrive (a lost segment, a retransmission timeout) leaves the other connections working.
    slots: int = RANGE_SLOTS
    # Slots only the earliest blob may take: blobs behind it, waiting for their turn to be written, hold their
    # finished parts until then and never hold so many that the one being written runs on fewer connections than
    # the helpers. With 8, six 15 MiB blobs behind an 80 MiB one held 56 slots, and for 3 s that one ran on ~12
    # connections (28-35 MB/s of 50); with 32 (= window) the 22-image set went from 71.5-76.1 % of a 40 ms /
    # 0.05 % / 400 Mbit link to 75.9-79.8 % (make bench WAN=1, 3 rounds each, one after the other).
    reserve: int = 32
    # The part being written that its helper has not finished this long after the blob's thread began waiting
    # for it: the rest is asked for by that thread (parts of 2 MiB take 0.3-1 s on the 40 ms / 0.05 % bench
    # path; a lost SYN or segment stalls one for seconds while every slot fills up behind it).
    hedge_s: float = 1.0
    # A probe over a path whose round trip (the least RTT the kernel saw on the connection, arcgap.registry.pathrtt)
    # is at most this says one connection already fills the path (loopback, a LAN): the blob goes on as one stream,
    # which costs less CPU (measured on loopback: 1.1 GB/s one stream, 0.35 GB/s in ranges of 4 MiB), and so does
    # every later blob of that registry. A path of 2 ms at 0.05 % loss still carries ~40 MB/s over one connection.
    near_rtt_s: float | None = 0.002  # None: judged by the first chunk's speed only
    # Where the RTT is not known (not Linux, a proxy): a probe whose first chunk arrived at least this fast
    # says the same, for this blob only (a warm connection on a long path may deliver one chunk in a burst). On
    # a long path slow start alone keeps a fresh connection's first 512 KiB far below this (10 segments in the
    # first round trip). By speed alone the RTT is not judged: on a busy 2-core machine a loopback probe's first
    # chunk took 12-43 ms, and a blob judged slow fills every range slot (64 MiB) ahead of the writer.
    fast_bytes_per_s: float = 64e6


# Connections a source's pool allows beyond --jobs for ranged reads: the helpers, and as many blobs' own threads
# reading their head parts (the claims ahead). Not the slots: a slot also holds a finished part, which holds no
# connection, and every extra connection is one more a throttling registry's gate has to halve away.
RANGE_CONNECTIONS = 2 * RangedOptions().window


class RangeBudget:
    """Shared by every download of a run: the ahead-part slots, the helper connections (threads) and the
    registries that ignored ``Range``.

    A free slot goes to the earliest blob (in the order its download began, or ``order`` given to
    :func:`stream_blob`) that has a part left to ask for: parts are asked for in write order across blobs, so
    the blob being written is never starved by the ones queued behind it.
    """

    def __init__(self, options: RangedOptions | None = None) -> None:
        self.options = options or RangedOptions()
        self._free = max(0, self.options.slots)
        self._single: set[str] = set()  # registries that ignore Range or answer it inconsistently
        self._fast: set[str] = set()  # registries whose probe showed one connection fills the path
        self._lock = threading.Lock()
        self._readers: list[_RangedRead] = []  # ranged downloads that may want parts, earliest first
        self._tickets = 0
        self._pool: ThreadPoolExecutor | None = None

    def take(self) -> bool:
        """One slot, if one is free (not through the dispatcher)."""
        with self._lock:
            if self._free <= 0:
                return False
            self._free -= 1
            return True

    def give(self) -> None:
        with self._lock:
            self._free += 1
            self._dispatch()

    def single(self, registry: str) -> bool:
        with self._lock:
            return registry in self._single

    def mark_single(self, registry: str) -> None:
        with self._lock:
            self._single.add(registry)

    def fast(self, registry: str) -> bool:
        with self._lock:
            return registry in self._fast

    def mark_fast(self, registry: str) -> None:
        """A probe showed ``registry`` a short path away (one connection fills it): later blobs skip the probe."""
        with self._lock:
            self._fast.add(registry)

    def ticket(self) -> int:
        with self._lock:
            self._tickets += 1
            return self._tickets

    def close(self) -> None:
        """Stop the helper threads once their current parts end (parts not begun are dropped)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _join(self, reader: _RangedRead) -> None:
        with self._lock:
            self._readers.append(reader)
            self._readers.sort(key=lambda r: r.order)

    def _ready(self, reader: _RangedRead) -> None:
        with self._lock:
            reader.ranged = True
            self._dispatch()

    def _leave(self, reader: _RangedRead) -> None:
        with self._lock:
            if reader in self._readers:
                self._readers.remove(reader)
            self._dispatch()

    def _advance(self, reader: _RangedRead, index: int) -> Future[list[bytes]] | None:
        """``reader`` is at part ``index``: its future, or None when no helper was asked (read it yourself)."""
        with self._lock:
            reader.head = index
            future = reader.ahead.pop(index, None)
            if future is None:
                reader.submitted = max(reader.submitted, index + 1)
            self._dispatch()
            return future

    def _dispatch(self) -> None:
        """Hand free slots to the earliest readers wanting parts (the lock held)."""
        o = self.options
        while self._free > 0:
            first = True  # no earlier blob may still want parts: the reserve is this one's
            for reader in self._readers:
                if reader.wants(o.ahead) and (first or self._free > o.reserve):
                    break
                first = first and reader.asked_all()
            else:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=max(1, o.window), thread_name_prefix="arcgap-range")
            self._free -= 1
            index = reader.submitted
            reader.submitted += 1
            reader.ahead[index] = self._pool.submit(reader.whole_part, index)


class _Inconsistent(Exception):
    """A ranged answer that does not name the bytes asked for: the blob goes on as one stream."""


class _Stopped(Exception):
    """The consumer went away: a helper stops reading."""


def stream_blob(client: RegistryClient, repository: str, digest: Digest, size_bytes: int, *, budget: RangeBudget,
                what: str = "", order: int | None = None) -> Iterator[bytes]:
    """The blob's bytes, verified by size and digest before the last chunk is released (as
    :meth:`RegistryClient.stream_blob`), fetched in parallel ranges when it is large and the source allows.

    ``order``: the blob's place in the run's write order (lower first served with parts); default: when the
    download began."""
    what = what or f"blob {digest} in {client.registry}/{repository}"
    o = budget.options
    # A registry that ignores Range, or one a short path away (loopback, a LAN), serves every blob as one stream.
    if (size_bytes < max(o.threshold_bytes, 2 * o.part_bytes) or budget.single(client.registry)
            or budget.fast(client.registry)):
        return client.stream_blob(repository, digest, size_bytes, what=what)
    reader = _RangedRead(client, repository, digest, size_bytes, budget, what,
                         budget.ticket() if order is None else order)
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
                 budget: RangeBudget, what: str, order: int) -> None:
        self.client = client
        self.order = order
        self.repository = repository
        self.digest = digest
        self.size_bytes = size_bytes
        self.budget = budget
        self.what = what
        self.part_bytes = budget.options.part_bytes
        self.parts = -(-size_bytes // self.part_bytes)
        self._stop = threading.Event()
        # Under the budget's lock: the part being read, the next part not yet asked for (part 0 is the probe),
        # and the parts asked of helpers, each holding one slot until passed on.
        self.head = 0
        self.submitted = 1
        self.ahead: dict[int, Future[list[bytes]]] = {}
        self.ranged = False  # the probe said: parts over helpers
        # Helpers' parts: the chunks so far; the parts this thread took over (under _taking).
        self._taking = threading.Lock()
        self._got: dict[int, list[bytes]] = {}
        self._dropped: set[int] = set()

    def asked_all(self) -> bool:
        """No part left to ask a helper for, now or later."""
        return self._stop.is_set() or (self.ranged and self.submitted >= self.parts)

    def wants(self, ahead: int) -> bool:
        return (self.ranged and not self._stop.is_set() and self.submitted < self.parts
                and self.submitted - self.head <= ahead)

    def _get(self, headers: dict[str, str]) -> httpx.Response:
        return self.client.send(
            "GET", f"/v2/{self.repository}/blobs/{self.digest}",
            scopes=frozenset({repo_scope(self.repository, self.client.read_actions)}),
            what=f"downloading {self.what}", headers=headers, stream=True, follow_redirects=True)

    def _span(self, index: int) -> tuple[int, int]:
        start = index * self.part_bytes
        return start, min(start + self.part_bytes, self.size_bytes) - 1

    def _part(self, index: int, first: httpx.Response | None = None, *, helper: bool = False,
              skip: int = 0) -> Iterator[bytes]:  # fmt: skip
        """Part ``index``'s bytes after its first ``skip``, asked for again from the first missing byte after a
        broken connection; a ``helper`` stops when the blob's own thread took the part over."""
        start, end = self._span(index)
        offset = start + skip
        if offset > end:
            return
        clock = self.client.retry.clock(self.client.gave_up)  # one time budget for this part's tries
        resp = first
        while True:
            if resp is None:
                resp = self._get({"Range": f"bytes={offset}-{end}"})
            try:
                _check_range(resp, offset, end, self.size_bytes)
                # The ordinary read keeps the connection for the next part (a warm congestion window).
                for chunk in body_chunks(resp, CHUNK_BYTES, direct_min_bytes=end - offset + 2):
                    if self._stop.is_set() or (helper and index in self._dropped):
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

    def whole_part(self, index: int) -> list[bytes]:
        """Part ``index`` read by a helper; stops (:class:`_Stopped`) once the blob's own thread took it over."""
        got: list[bytes] = []
        with self._taking:
            self._got[index] = got
        for chunk in self._part(index, helper=True):
            with self._taking:
                if index in self._dropped:
                    raise _Stopped
                got.append(chunk)
        return got

    def _wait(self, index: int, future: Future[list[bytes]], hedge_s: float) -> tuple[list[bytes], bool]:
        """Part ``index`` from its helper, its slot given back: ``(chunks, True)``; or ``(first chunks, False)``
        when this thread should read the rest itself: the helper had not begun (the part is the one being
        written: it waits for no queue), or ``hedge_s`` went by without the part done (a lost SYN or segment
        costs a retransmission timeout of a second or more, a connection that lost a segment runs at half its
        rate, while every slot fills up behind it). A part taken over keeps the bytes its helper had; the
        helper stops at its next chunk and its slot comes back when it ends."""
        waited = time.monotonic()
        while True:
            if future.cancel():
                self.budget.give()
                return [], False
            done, _ = wait([future], timeout=min(0.05, hedge_s))
            if done:
                with self._taking:
                    self._got.pop(index, None)  # the future holds the chunks; passed on, they are gone
                try:
                    return future.result(), True
                finally:
                    self.budget.give()
            if time.monotonic() - waited >= hedge_s:
                with self._taking:
                    self._dropped.add(index)
                    kept = self._got.pop(index, [])[:]
                future.add_done_callback(lambda _f: self.budget.give())
                return kept, False

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
        self.budget._join(self)  # in line from now: blobs behind this one leave it the reserved slots
        try:
            yield from self._chunks()
        finally:
            self._release()

    def _chunks(self) -> Iterator[bytes]:
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
        began = time.monotonic()
        passed = 0  # bytes handed on: where one stream takes over should a part be answered inconsistently
        rtt = path_rtt_s(probe) if o.near_rtt_s is not None else None
        # Decided by the path's RTT when known (and remembered for the registry), else on the probe's first chunk.
        fast: bool | None = None if rtt is None or o.near_rtt_s is None else rtt <= o.near_rtt_s
        if fast:
            self.budget.mark_fast(self.client.registry)
        if fast is not None:
            self._decided(fast)
        try:
            for chunk in self._part(0, probe):
                passed += len(chunk)
                if fast is None:
                    fast = passed >= o.fast_bytes_per_s * (time.monotonic() - began)
                    self._decided(fast)
                yield chunk
            if fast:
                yield from self._single(passed)  # one connection is fast enough here
                return
            for index in range(1, self.parts):
                future = self.budget._advance(self, index)
                data, whole = ([], False) if future is None else self._wait(index, future, o.hedge_s)
                kept = 0
                for chunk in data:
                    passed += len(chunk)
                    kept += len(chunk)
                    yield chunk
                del data
                if not whole:  # no helper has (all of) it: the rest comes over this thread's connection
                    for chunk in self._part(index, skip=kept):
                        passed += len(chunk)
                        yield chunk
        except _Inconsistent:
            self.budget.mark_single(self.client.registry)
            self._release()
            yield from self._single(passed, use_range=False)

    def _decided(self, fast: bool) -> None:
        if fast:
            self.budget._leave(self)  # one stream: wants no slot
        else:
            self.budget._ready(self)  # helpers start on the next parts at once

    def _release(self) -> None:
        """Stop the helpers; each slot comes back when its part is done (at once for one never started)."""
        self._stop.set()
        self.budget._leave(self)
        with self.budget._lock:
            futures = list(self.ahead.values())
            self.ahead.clear()
        with self._taking:
            self._got.clear()
        for future in futures:
            future.cancel()
            future.add_done_callback(lambda _f: self.budget.give())

