"""Blob uploads: the session state machine of one upload, and what a lost answer or a registry's quirks change.

One attempt at an upload goes through these states::

    OPEN    POST /v2/<repo>/blobs/uploads/ -> a session Location (or the session a refused mount offered)
    SEND    PATCH the next chunk (Content-Range) -> the next Location; while more than a chunk is left
    COMMIT  PUT <Location>?digest=... with the last bytes -> 201: the blob exists
    DONE

The happy path adds no request: POST + PUT for a blob up to one chunk, POST + PATCH... + PUT above. Nothing
that changes state is sent again without asking the registry first, because an answer can be lost after the
registry acted (a load balancer that times out on the way back):

- a PATCH without an answer (broken connection, 500/502/503/504) or answered 416: GET the session's status. Its
  Range says how much the registry holds; what it lacks goes again, to the Location the status gave;
- a commit without an answer (or 500/502/503/504): HEAD the blob. There: DONE. Else the session's status
  decides: intact, the PUT goes again; gone, RESTART;
- a session that is gone (404, BLOB_UPLOAD_UNKNOWN or BLOB_UPLOAD_INVALID: distribution refuses a session
  whose offset moved behind the client's back, one already committed, and every session after a restart):
  HEAD the blob (the lost answer may have been a commit's), else RESTART: a new session from byte 0 when the
  bytes can be had again (none released yet, or the caller's ``reopen``), at most MAX_RESTARTS times;
  otherwise one clean error, and the rerun skips what landed;
- 408 and 429 are refusals before anything happened: the same request goes again after the delay.

The POST that opens a session is retried like a read: a session nobody commits is invisible, and purged.

What a registry says about uploads is learnt once per client (:class:`UploadTraits`) and used by every later
upload: ``OCI-Chunk-Min-Length`` (chunks grow to it), ``OCI-Chunk-Max-Length`` and ``413`` (requests shrink
below the refused size), and a PATCH refused with 405 or 501 (no chunked upload: the rest of the blob goes
in one streamed PUT).
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from arcgap.errors import ArcgapError, Fault, NetworkError, RegistryError
from arcgap.oci.digest import Digest
from arcgap.registry.auth import repo_scope
from arcgap.registry.transport import RetryClock, RetryPolicy

UPLOAD_CHUNK_BYTES = 16 * 1024 * 1024  # bounded memory per upload: one chunk (and one reader chunk) is held
MIN_REQUEST_BYTES = 64 * 1024  # 413s do not shrink requests below this: such a registry is broken, not strict
MAX_CHUNK_BYTES = 64 * 1024 * 1024  # a larger OCI-Chunk-Min-Length is served by one streamed PUT, not held
MAX_RESTARTS = 5  # new sessions for one blob before giving up
GONE_CODES = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})
_NO_SPACE = ("no space left on device", "errno 28", "enospc", "disk quota exceeded", "errno 122")


def storage_full(resp: httpx.Response) -> bool:
    """A 5xx whose body says the registry's storage is full (distribution puts the OS error in ``detail``):
    sending again cannot help until someone makes room."""
    if resp.status_code < 500:
        return False
    try:
        text = resp.read()[:65536].decode("utf-8", "replace").lower()
    except httpx.HTTPError:
        return False
    return any(s in text for s in _NO_SPACE)


NOT_ACTED = frozenset({408, 429})  # refused before anything happened: safe to send again after the delay
MAYBE_ACTED = frozenset({500, 502, 503, 504})  # failed somewhere, maybe after acting: ask before re-sending
NO_CHUNKS = frozenset({405, 501})  # PATCH not allowed or not implemented


class Body:
    """A re-iterable request body over a list of chunks: re-sendable, never joined into one copy."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)


class Client(Protocol):
    """What an upload needs of :class:`arcgap.registry.client.RegistryClient`."""

    registry: str
    retry: RetryPolicy
    gave_up: threading.Event
    upload_traits: UploadTraits

    def send(
        self, method: str, url: str, *, scopes: frozenset[str], what: str,
        headers: dict[str, str] | None = ..., content: bytes | Iterable[bytes] | None = ...,
        params: dict[str, str] | None = ..., ok: tuple[int, ...] = ..., mutates: bool = ...,
    ) -> httpx.Response: ...

    def status_error(self, resp: httpx.Response, what: str) -> ArcgapError: ...

    def make_error(self, cls: type[ArcgapError], message: str, *, operation: str, fault: str, status: int = 0,
               codes: tuple[str, ...] = ()) -> ArcgapError: ...

    def error_codes(self, resp: httpx.Response) -> tuple[str, ...]: ...

    def absolute_url(self, location: str, relative_to: httpx.URL | None = None) -> str: ...

    def cancel_upload(self, repository: str, location: str) -> None: ...

    def take_offered_session(self, repository: str, digest: Digest) -> str | None: ...

    def blob_exists(self, repository: str, digest: Digest, *, push_scope: bool = False) -> bool: ...


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


@dataclass
class UploadTraits:
    """What one registry said about uploads, learnt once and used by every later upload. Thread-safe.
    ``preferred_chunk`` is our own size per PATCH, before what the registry said."""

    preferred_chunk: int = UPLOAD_CHUNK_BYTES
    min_chunk: int = 0  # OCI-Chunk-Min-Length
    max_request: int | None = None  # OCI-Chunk-Max-Length, or below the smallest request refused with 413
    chunked: bool = True  # False once a PATCH was refused with 405/501
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def chunk_bytes(self) -> int | None:
        """Bytes per PATCH, or None: send the rest of the blob in one streamed PUT."""
        if not self.chunked:
            return None
        size = self.preferred_chunk
        if self.max_request is not None:
            size = min(size, self.max_request)
        size = max(size, self.min_chunk)  # the registry's minimum wins over our preference
        return None if size > MAX_CHUNK_BYTES else size

    def learn(self, headers: httpx.Headers) -> None:
        """Read the OCI-Chunk-Min-Length / OCI-Chunk-Max-Length a session's answer carries."""
        low, high = _int_header(headers, "oci-chunk-min-length"), _int_header(headers, "oci-chunk-max-length")
        with self._lock:
            if low is not None:
                self.min_chunk = max(self.min_chunk, low)
            if high is not None:
                self.max_request = high if self.max_request is None else min(self.max_request, high)

    def too_large(self, refused: int) -> bool:
        """A request of ``refused`` bytes got 413: halve the requests. False when they cannot get smaller."""
        if refused <= MIN_REQUEST_BYTES:
            return False
        with self._lock:
            smaller = max(refused // 2, MIN_REQUEST_BYTES)
            self.max_request = smaller if self.max_request is None else min(self.max_request, smaller)
        return True

    def no_chunks(self) -> None:
        with self._lock:
            self.chunked = False


class _Window:
    """The blob's bytes read from the caller and not yet held by the registry; what was released is counted."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._source = iter(chunks)
        self._chunks: deque[bytes] = deque()
        self.held = 0
        self.read = 0  # bytes taken from the source
        self.released = 0  # bytes the registry acknowledged, dropped from memory
        self.ended = False
        self.consumed = False  # handed to a streamed request: these bytes cannot be sent again

    @property
    def restartable(self) -> bool:
        """Every byte from 0 is still here (or still to come from the source)."""
        return self.released == 0 and not self.consumed

    def fill(self, want: int) -> None:
        while self.held < want and not self.ended:
            try:
                chunk = next(self._source)
            except StopIteration:
                self.ended = True
                break
            if chunk:
                self._chunks.append(chunk)
                self.held += len(chunk)
                self.read += len(chunk)

    def head(self, size: int) -> list[bytes]:
        """The first ``size`` held bytes, as the reader's own chunks (the one straddling the end is split)."""
        out: list[bytes] = []
        taken = 0
        i = 0
        while taken < size and i < len(self._chunks):
            chunk = self._chunks[i]
            if taken + len(chunk) > size:
                cut = size - taken
                self._chunks[i] = chunk[cut:]
                self._chunks.insert(i, chunk[:cut])
                chunk = self._chunks[i]
            out.append(chunk)
            taken += len(chunk)
            i += 1
        return out

    def release(self, size: int) -> None:
        """The registry holds the first ``size`` held bytes: let them go."""
        self.held -= size
        self.released += size
        while size:
            chunk = self._chunks[0]
            if len(chunk) <= size:
                self._chunks.popleft()
                size -= len(chunk)
            else:
                self._chunks[0] = chunk[size:]
                size = 0

    def rest(self) -> Iterator[bytes]:
        """Every byte still to send, held ones first, then the source's: for one streamed request."""
        self.consumed = True
        while self._chunks:
            chunk = self._chunks.popleft()
            self.held -= len(chunk)
            yield chunk
        for chunk in self._source:
            self.read += len(chunk)
            yield chunk
        self.ended = True

    def drain(self) -> None:
        """Read the source to its end (it verifies itself), sending nothing: the registry already has the blob."""
        self._chunks.clear()
        self.held = 0
        for chunk in self._source:
            self.read += len(chunk)
        self.ended = True

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


class _Gone(Exception):
    """The session is gone (or its state unknowable): only a new one can go on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BlobUpload:
    """One blob into one repository, through as many sessions as it takes (see the module docstring)."""

    def __init__(self, client: Client, repository: str, digest: Digest, chunks: Iterable[bytes], *, what: str,
                 size: int | None = None, reopen: Callable[[], Iterable[bytes]] | None = None) -> None:
        self.client = client
        self.repository = repository
        self.digest = digest
        self.what = what
        self.size = size
        self.reopen = reopen
        self.traits = client.upload_traits
        self.scopes = frozenset({repo_scope(repository, "pull,push")})
        self.window = _Window(chunks)
        self.location: str | None = None  # the open session, if any
        self.sent = 0  # bytes the registry holds in the open session
        self._clock: RetryClock | None = None  # the retry budget since the last progress
        self.last_trouble = ""

    # -- the whole upload ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Upload and commit; returns the blob's size. Whatever fails, the open session is cancelled."""
        restarts = 0
        try:
            while True:
                try:
                    self._attempt()
                    return self.window.read
                except _Gone as gone:
                    self.location = None
                    if self.client.blob_exists(self.repository, self.digest, push_scope=True):
                        self.window.drain()  # a lost commit's answer, most likely: the blob is there
                        return self.window.read
                    restarts += 1
                    if restarts > MAX_RESTARTS:
                        raise self._lost(f"{gone.reason}; {MAX_RESTARTS} new sessions lost too") from None
                    if not self.window.restartable:
                        if self.reopen is None:
                            raise self._lost(gone.reason) from None
                        self.window.close()
                        self.window = _Window(self.reopen())
        except BaseException:
            if self.location is not None:
                self.client.cancel_upload(self.repository, self.location)
            self.window.close()
            raise

    def _lost(self, reason: str) -> ArcgapError:
        what = f"uploading {self.what}"
        err = self.client.make_error(NetworkError, f"{what}: the registry lost the upload after {self.window.released} "
                                 f"bytes ({reason})", operation=what, fault=Fault.UNREACHABLE)
        err.hint = ("the registry restarted or the connection broke mid-chunk; run the same command again: "
                    "blobs already at the target are skipped")
        return err

    def _attempt(self) -> None:
        self._open()
        while True:
            chunk = self.traits.chunk_bytes()
            if chunk is None:
                self._commit_streamed()
                return
            self.window.fill(chunk + 1)  # one byte more than a chunk tells whether this is the last one
            if self.window.ended and self.window.held <= chunk:
                if self._commit():
                    return
                continue  # 413: the last bytes go in smaller chunks
            self._patch(chunk)

    # -- OPEN ---------------------------------------------------------------------------------------------

    def _open(self) -> None:
        self.sent = 0
        self._clock = None
        offered = self.client.take_offered_session(self.repository, self.digest)
        if offered is not None:  # a refused mount's session (Harbor, distribution): upload into it
            self.location = offered
            return
        resp = self.client.send("POST", f"/v2/{self.repository}/blobs/uploads/", scopes=self.scopes,
                                 what=f"starting upload of {self.what}")
        location = resp.headers.get("location")
        if not location:
            what = f"starting upload of {self.what}"
            raise self.client.make_error(RegistryError, f"{what}: registry gave no upload location", operation=what,
                                     fault=Fault.MALFORMED, status=resp.status_code)
        self.traits.learn(resp.headers)
        self.location = self.client.absolute_url(location, resp.request.url)

    # -- the requests that change state ------------------------------------------------------------------

    def _try(self, method: str, what: str, *, content: bytes | Iterable[bytes], headers: dict[str, str],
             params: dict[str, str] | None = None) -> httpx.Response | None:
        """One state-changing request, sent once; None when its answer never came."""
        assert self.location is not None
        try:
            return self.client.send(method, self.location, scopes=self.scopes, what=what, headers=headers,
                                     content=content, params=params, mutates=True)
        except NetworkError as exc:
            self.last_trouble = exc.message
            return None

    def _gone(self, resp: httpx.Response) -> bool:
        return resp.status_code == 404 or bool(GONE_CODES.intersection(self.client.error_codes(resp)))

    def _trouble(self, reason: str, retry_after: str | None = None) -> None:
        """An unclear outcome: wait, and give up once the retry policy's time budget is spent."""
        self.last_trouble = reason
        if self._clock is None:
            self._clock = self.client.retry.clock(self.client.gave_up)
        if not self._clock.wait(retry_after):
            what = f"uploading {self.what}"
            raise self.client.make_error(NetworkError, f"{what}: {reason} ({self._clock.gave_up()})",
                                     operation=what, fault=Fault.TRANSIENT)

    def _patch(self, chunk: int) -> None:
        """Send the next chunk; on return the window and ``sent`` say where the session stands."""
        body = self.window.head(chunk)
        size = sum(len(c) for c in body)
        start = self.sent
        resp = self._try("PATCH", f"uploading {self.what}", content=Body(body), headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + size - 1}",
            "Content-Length": str(size),
        })
        body.clear()  # httpx requests linger in reference cycles until the GC runs: free the chunks now
        if resp is not None:
            status = resp.status_code
            if 200 <= status < 300:
                self.location = self.client.absolute_url(resp.headers.get("location") or self.location or "",
                                                      resp.request.url)
                self.window.release(size)
                self.sent += size
                self._clock = None
                return
            if status == 413:
                if not self.traits.too_large(size):
                    raise self.client.status_error(resp, f"uploading {self.what}")
                return  # the same bytes again, in smaller chunks
            if status in NO_CHUNKS or "UNSUPPORTED" in self.client.error_codes(resp):
                self.traits.no_chunks()  # every later upload to this registry goes in one PUT too
                return
            if self._gone(resp):
                raise _Gone(f"{status} {' '.join(self.client.error_codes(resp)) or resp.reason_phrase}")
            if status in NOT_ACTED:
                self._trouble(f"{status} {resp.reason_phrase}", resp.headers.get("retry-after"))
                return
            if status != 416 and status not in MAYBE_ACTED or storage_full(resp):
                raise self.client.status_error(resp, f"uploading {self.what}")
            self._trouble(f"{status} {resp.reason_phrase}")
        else:
            self._trouble(f"no answer to a chunk ({self.last_trouble})")
        self._resync()

    def _commit(self) -> bool:
        """PUT the last bytes with the digest. True when the blob exists; False after a 413 (smaller chunks)."""
        while True:
            body = self.window.head(self.window.held)
            size = self.window.held
            resp = self._try("PUT", f"committing {self.what}", content=Body(body),
                             params={"digest": str(self.digest)},
                             headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
            body.clear()
            if resp is not None:
                status = resp.status_code
                if 200 <= status < 300:
                    self._check_digest(resp)
                    self.window.release(size)
                    self.sent += size
                    self.location = None
                    return True
                if status == 413:
                    if not self.traits.too_large(size):
                        raise self.client.status_error(resp, f"committing {self.what}")
                    return False
                if self._gone(resp):
                    raise _Gone(f"{status} {' '.join(self.client.error_codes(resp)) or resp.reason_phrase}")
                if status in NOT_ACTED:
                    self._trouble(f"{status} {resp.reason_phrase}", resp.headers.get("retry-after"))
                    continue
                if status not in MAYBE_ACTED or storage_full(resp):
                    raise self.client.status_error(resp, f"committing {self.what}")
                self._trouble(f"{status} {resp.reason_phrase}")
            else:
                self._trouble(f"no answer to the commit ({self.last_trouble})")
            # The commit may have happened: ask for the blob before sending anything again.
            if self.client.blob_exists(self.repository, self.digest, push_scope=True):
                self.window.release(self.window.held)
                self.location = None
                return True
            self._resync()

    def _commit_streamed(self) -> None:
        """The rest of the blob in one PUT, streamed from the source (no chunked upload, or huge chunks)."""
        headers = {"Content-Type": "application/octet-stream"}
        if self.size is not None:
            headers["Content-Length"] = str(self.size - self.sent)
        resp = self._try("PUT", f"committing {self.what}", content=self.window.rest(),
                         params={"digest": str(self.digest)}, headers=headers)
        if resp is not None and 200 <= resp.status_code < 300:
            self._check_digest(resp)
            self.location = None
            return
        if resp is not None and resp.status_code < 500 and resp.status_code not in (401, 404, *NOT_ACTED) \
                and not self._gone(resp):
            raise self.client.status_error(resp, f"committing {self.what}")  # a refusal, 413 included
        # The body cannot be sent again: ask (in run) whether the blob is there, else start over.
        reason = "no answer" if resp is None else f"{resp.status_code} {resp.reason_phrase}"
        raise _Gone(f"{reason} to a streamed commit")

    def _check_digest(self, resp: httpx.Response) -> None:
        got = resp.headers.get("docker-content-digest")
        if got and got.startswith(f"{self.digest.algorithm}:") and got != str(self.digest):
            what = f"committing {self.what}"
            raise self.client.make_error(RegistryError, f"{what}: the registry says it stored {got}", operation=what,
                                     fault=Fault.MALFORMED, status=resp.status_code)

    # -- asking the registry -----------------------------------------------------------------------------

    def _resync(self) -> None:
        """GET the session's status: release what the registry holds, or raise _Gone."""
        assert self.location is not None
        resp = self.client.send("GET", self.location, scopes=self.scopes, what=f"asking how far {self.what} got",
                                 ok=(400, 404))
        if resp.status_code in (400, 404) or self._gone(resp):
            raise _Gone(f"{resp.status_code} {' '.join(self.client.error_codes(resp)) or resp.reason_phrase}")
        rng = resp.headers.get("range", "").strip()
        first, _, last = rng.partition("-")
        if first != "0" or not last.isdigit():
            raise _Gone(f"the upload's status has no usable Range ({rng!r})")
        # distribution answers "0-0" for an empty upload (and for a 1-byte one): read it as empty.
        have = 0 if (rng == "0-0" and self.sent == 0) else int(last) + 1
        if not self.sent <= have <= self.sent + self.window.held:
            raise _Gone(f"the registry holds {have} bytes of an upload at {self.sent}")
        if have > self.sent:
            self.window.release(have - self.sent)
            self.sent = have
        self.location = self.client.absolute_url(resp.headers.get("location") or self.location, resp.request.url)
