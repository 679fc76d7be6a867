"""A blob response's body in chunks of ``chunk_bytes``, read with as little Python work per byte as possible.

httpx hands a body over through httpcore and h11: 64 KiB at a time, each piece appended to and cut out of
h11's buffer. For a 505 MB export that path cost 0.6–0.7 s of CPU in four download threads and held the GIL
for much of it, where ``recv_into`` a buffer costs 0.13 s (measured here, loopback, 2 cores). So once httpx
has sent the request, followed redirects, handled auth and parsed the headers, :func:`body_chunks` takes
the bytes h11 has already buffered (the first piece httpx yields) and reads the rest of a large body straight
from the connection's socket into fresh buffers: one copy from the kernel, one to make the chunk immutable.

It does that only where the socket carries the body as it is: HTTP/1.1, no content encoding, a
``Content-Length``, and a plain TCP socket or a TLS socket whose TLS state is the one httpcore reads through
(not TLS inside an HTTPS proxy's tunnel). Anything else goes the ordinary way, joined into ``chunk_bytes``
pieces. The connection is closed after a body read this way (httpcore cannot know the body was read), so
bodies under ``direct_min_bytes`` keep the ordinary path and their connection. Nothing here verifies
anything: callers pass every chunk through :func:`arcgap.oci.digest.verified_chunks`, which catches any byte
this got wrong. Socket errors and timeouts surface as the httpx errors the caller's retry logic handles.

:class:`RateWatch` is the stall and trickle watchdog: the read timeout only bounds one read, so a body sent a
byte a second would be waited on forever; a body slower than a minimum rate over a window raises
:class:`Stalled` (an ``httpx.ReadTimeout``), and the caller resumes from the bytes it holds.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator

import httpx

DIRECT_MIN_BYTES = 1 << 20  # below this, keep the connection for the next request


class Stalled(httpx.ReadTimeout):
    """A body slower than the minimum rate over the watch window: dropped, to be resumed."""


# A window whose rate is under this many times the minimum is said (once per transfer) before it is dropped:
# at the defaults, under 4 KiB/s over 60 s. A transfer that ends within one window is never said to be slow.
SLOW_FACTOR = 4


def pace(window_bytes: int, elapsed_s: float, min_bytes_per_s: int) -> str:
    """The verdict on one full watch window: "stalled" (under the minimum rate: drop and resume), "slow" (under
    :data:`SLOW_FACTOR` times it: worth a warning) or "ok"."""
    rate = window_bytes / max(elapsed_s, 1e-9)
    if rate < min_bytes_per_s:
        return "stalled"
    if rate < min_bytes_per_s * SLOW_FACTOR:
        return "slow"
    return "ok"


class RateWatch:
    """Raises :class:`Stalled` once a window of ``window_s`` passes with fewer than ``min_bytes_per_s``
    per second arriving. A silent connection is the read timeout's (set to the same window). A window slower
    than :data:`SLOW_FACTOR` times the minimum is said through ``warn``, once per transfer."""

    def __init__(self, window_s: float, min_bytes_per_s: int, *, what: str = "the body",
                 warn: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.min_bytes_per_s = min_bytes_per_s
        self.min_bytes = min_bytes_per_s * window_s
        self.what = what
        self.warn = warn
        self.warned = False
        self.total_bytes = 0
        self._clock = clock
        self._start = clock()
        self._bytes = 0

    def feed(self, n_bytes: int) -> None:
        self.total_bytes += n_bytes
        self._bytes += n_bytes
        now = self._clock()
        if now - self._start < self.window_s:
            return
        elapsed = now - self._start
        verdict = pace(self._bytes, elapsed, self.min_bytes_per_s)
        if verdict == "stalled":
            rate = self._bytes / elapsed
            raise Stalled(f"{self.what} arrived at {rate:.0f} B/s for {elapsed:.0f} s")
        if verdict == "slow" and self.warn is not None and not self.warned:
            self.warned = True
            self.warn(f"{self.what} is slow: {self._bytes / elapsed:,.0f} B/s over the last {elapsed:.0f} s, "
                      f"{self.total_bytes:,} bytes so far (dropped and resumed below {self.min_bytes_per_s:,} B/s)")
        self._start, self._bytes = now, 0


class WatchedStream(httpx.SyncByteStream):
    """A response's raw stream fed through a :class:`RateWatch` (``resp.stream = WatchedStream(...)``)."""

    def __init__(self, inner: httpx.SyncByteStream, watch: RateWatch) -> None:
        self.inner = inner
        self.watch = watch

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.inner:
            self.watch.feed(len(piece))
            yield piece

    def close(self) -> None:
        self.inner.close()


def watch_body(resp: httpx.Response, watch: RateWatch) -> None:
    """Watch ``resp``'s body (opened with ``stream=True``, not read yet) for stalls and trickles."""
    if isinstance(resp.stream, httpx.SyncByteStream):
        resp.stream = WatchedStream(resp.stream, watch)


def body_chunks(resp: httpx.Response, chunk_bytes: int, *, direct_min_bytes: int = DIRECT_MIN_BYTES) -> Iterator[bytes]:
    """The body of ``resp`` (opened with ``stream=True``) in pieces of ``chunk_bytes`` (the last may be shorter).

    A content-encoded response (a CDN that gzips on the fly) goes through httpx's decoder, so the bytes are
    always the blob itself.
    """
    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        yield from joined(resp.iter_bytes(), chunk_bytes)
        return
    length = resp.headers.get("content-length", "")
    sock = _plain_socket(resp) if length.isdigit() and int(length) >= direct_min_bytes else None
    raw = resp.iter_raw()
    if sock is None:
        yield from joined(raw, chunk_bytes)
        return
    first = next(raw, b"")  # everything the HTTP parser read past the headers: the socket holds the rest
    remaining = int(length) - len(first)
    if remaining <= 0:
        yield from joined([first, *raw], chunk_bytes)
        return
    yield from _direct(sock, first, remaining, chunk_bytes, getattr(resp.stream, "watch", None))


def network_info(resp: httpx.Response, name: str) -> object | None:
    """``get_extra_info(name)`` of the connection ``resp`` arrived on (httpcore's network stream), or None."""
    info = getattr(resp.extensions.get("network_stream"), "get_extra_info", None)
    return info(name) if info is not None else None


def _plain_socket(resp: httpx.Response) -> socket.socket | None:
    """The socket the body arrives on, when reading it directly gives the body's bytes; else None."""
    if resp.http_version != "HTTP/1.1":
        return None
    sock, tls = network_info(resp, "socket"), network_info(resp, "ssl_object")
    if not isinstance(sock, socket.socket):
        return None
    if isinstance(sock, ssl.SSLSocket):
        return sock if tls is not None and tls is getattr(sock, "_sslobj", None) else None
    return sock if tls is None else None


def _direct(sock: socket.socket, first: bytes, remaining: int, chunk_bytes: int, watch: RateWatch | None
            ) -> Iterator[bytes]:
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    fill = len(first)
    if fill >= chunk_bytes:
        yield first
        fill = 0
    else:
        view[:fill] = first
    while remaining:
        want = min(chunk_bytes - fill, remaining)
        try:
            n = sock.recv_into(view[fill:fill + want])
            if n == 0:
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
            fill += n
            remaining -= n
            if watch is not None:
                watch.feed(n)
        except (OSError, httpx.TransportError) as exc:
            failure = exc if isinstance(exc, httpx.TransportError) else \
                httpx.ReadTimeout(f"reading the body: {exc}") if isinstance(exc, TimeoutError) else \
                httpx.ReadError(f"reading the body: {exc}")
            if fill:
                yield bytes(view[:fill])  # the caller resumes after the bytes it holds
            raise failure from None
        if fill == chunk_bytes or not remaining:
            yield bytes(view[:fill])
            fill = 0


def joined(pieces: Iterable[bytes], chunk_bytes: int) -> Iterator[bytes]:
    """``pieces`` joined into chunks of at least ``chunk_bytes`` (except the last), with one copy."""
    held: list[bytes] = []
    size = 0
    feed = iter(pieces)
    while True:
        try:
            piece = next(feed)
        except StopIteration:
            break
        except httpx.TransportError:
            if held:
                yield b"".join(held)  # the caller resumes after the bytes it holds
            raise
        if not held and len(piece) >= chunk_bytes:
            yield piece
            continue
        held.append(piece)
        size += len(piece)
        if size >= chunk_bytes:
            yield b"".join(held)
            held.clear()
            size = 0
    if held:
        yield b"".join(held)
