"""A small fault-injecting HTTP proxy in front of a real (plain HTTP) registry, for retry, resume and quirk tests.

Rules (:class:`Fault`) are matched in order against ``METHOD /path?query``; each fires ``times`` times (on
every ``every``-th match, if set) and either answers with a status (optional Retry-After), resets the
connection, lets the request through and breaks it half-way (response body cut, request body cut, answer
lost), or plays a quirk of another registry (a mount answered with a fresh upload session, as Harbor does;
answer headers replaced, dropped or added, such as ``OCI-Chunk-Min-Length``). ``body_over`` / ``body_under``
narrow a rule to large or small request bodies (a per-request size limit is ``Fault(…, status=413,
body_over=LIMIT)``). ``rewrite`` replaces text in every answer header (a token realm pointing at another
proxy). Proxy-wide knobs slow every request (``latency_s``) or every body (``throttle_bytes_per_s``), answer a
random share of all requests with 429 (``Retry-After: 1``) or 503 (``chaos_share``, seeded by
``chaos_seed``), and
:meth:`FaultProxy.pause` refuses all connections for a while, as a restarting registry does. Every request is
logged with its headers and body sizes (``seen`` on arrival; ``requests`` once handled, a moment after the
client has its answer: ``wait_idle()`` first)."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from devtools.procs import free_port

FaultKind = Literal["status", "reset", "cut_response", "cut_request", "lose_response", "headers",
                    "mount_as_upload", "trickle", "corrupt"]
_ERROR_CODES = {405: "UNSUPPORTED", 413: "SIZE_INVALID", 416: "BLOB_UPLOAD_INVALID", 429: "TOOMANYREQUESTS"}
_PIPE_CHUNK = 64 * 1024


@dataclass
class Fault:
    """What to do to matching requests, ``times`` times.

    - ``kind="status"`` (default): answer ``status`` (with ``Retry-After`` when given) instead of forwarding;
      ``status=0`` is a reset, kept for older tests;
    - ``"reset"``: close the connection without answering (the registry never sees the request);
    - ``"cut_response"``: forward, send the headers and ``after_bytes`` of the body, then close;
    - ``"cut_request"``: send the registry the headers and ``after_bytes`` of the request body, then close
      both connections (the registry keeps a partial upload, the client sees a reset);
    - ``"lose_response"``: forward the whole request, then close without answering (it happened, unseen);
    - ``"headers"``: forward, and answer with ``response_headers`` (lower-case name → value; "" drops it);
    - ``"trickle"``: forward, send ``after_bytes`` of the body at once, then the rest a byte every
      ``1/trickle_bytes_per_s`` seconds (a body that never stalls long enough for a read timeout);
    - ``"corrupt"``: forward, with one byte of the answer's body changed (at ``after_bytes``);
    - ``"mount_as_upload"``: forward a mount ``POST …/blobs/uploads/?mount=…&from=…`` without its query: the
      registry opens a fresh upload session and answers 202 (Harbor's answer to a mount it cannot do).

    ``delay_s`` waits before acting; the first ``skip`` matching requests pass untouched (aim at the N-th);
    ``every`` fires on the N-th, 2N-th, … match only (give ``times`` room); ``header`` narrows the match to
    requests with that header matching a regex (``("content-range", "^[1-9]")``: a later chunk of an upload,
    whichever upload it is, however the client's threads interleave); ``body_over`` / ``body_under`` to
    requests whose body is larger / smaller than that many bytes.
    """

    pattern: str  # regex on "METHOD /path?query"
    status: int = 503
    times: int = 1
    retry_after: str | None = None
    kind: FaultKind = "status"
    after_bytes: int = 0
    delay_s: float = 0.0
    skip: int = 0
    hits: int = 0
    header: tuple[str, str] | None = None  # (lower-case name, regex on its value)
    response_headers: dict[str, str] = field(default_factory=dict)  # kind="headers": replaced in the answer
    every: int = 0
    body_over: int | None = None
    body_under: int | None = None
    matched: int = 0  # requests that matched (``every`` counts these)
    trickle_bytes_per_s: float = 1.0
    code: str = ""  # kind="status": the errors[].code of the answer ("" → one that fits the status)
    message: str = "injected fault"  # ... and its message

    def matches(self, line: str, headers: dict[str, str] | None = None, body_bytes: int = 0) -> bool:
        if self.hits >= self.times or re.search(self.pattern, line) is None:
            return False
        if self.header is not None and re.search(self.header[1], (headers or {}).get(self.header[0], "")) is None:
            return False
        if self.body_over is not None and body_bytes <= self.body_over:
            return False
        if self.body_under is not None and body_bytes >= self.body_under:
            return False
        if self.skip:
            self.skip -= 1
            return False
        self.matched += 1
        return not self.every or self.matched % self.every == 0


@dataclass(frozen=True)
class SeenRequest:
    line: str  # "METHOD /path?query"
    headers: dict[str, str]  # lower-case names
    request_bytes: int
    response_bytes: int  # body bytes actually sent back
    fault: str | None  # the fault's kind, when one fired
    status: int = 0  # what the client was answered (0: no answer)


@dataclass
class FaultProxy:
    upstream: str  # "127.0.0.1:PORT"
    faults: list[Fault] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    latency_s: float = 0.0  # before every forwarded request
    throttle_bytes_per_s: int | None = None  # request and response bodies trickle at this rate
    latency_pattern: str = ""  # regex: only matching requests are delayed ("" = all)
    rewrite: dict[str, str] = field(default_factory=dict)  # old → new, in every answer header's value
    chaos_share: float = 0.0  # this share of all requests is answered 429 (Retry-After: 1) or 503, at random
    chaos_seed: int = 0

    def __post_init__(self) -> None:
        self.port = free_port("127.0.0.1")
        self.host = f"127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.chaos = random.Random(self.chaos_seed)
        self.chaos_hits = 0
        self.requests: list[SeenRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests it handled at once
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._start()

    # -- control ----------------------------------------------------------------------------------------

    def _start(self) -> None:
        self._server = _QuietServer(("127.0.0.1", self.port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="faultproxy")
        self._thread.start()

    def pause(self) -> None:
        """Stop listening and reset every open connection: clients get resets, then connection refused."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        with self.lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def resume(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            self._start()

    def stop(self) -> None:
        self.pause()

    # -- what happened ----------------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being handled (a killed client's last request still finishes here)."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.in_flight:
            raise TimeoutError(f"{self.in_flight} requests still in flight")

    def count(self, pattern: str) -> int:
        """Requests matching ``pattern`` that arrived (answered or not yet)."""
        with self.lock:
            return sum(1 for line in self.seen if re.search(pattern, line))

    def completed(self, pattern: str) -> int:
        """Requests matching ``pattern`` the registry answered with success and the client got in full."""
        return sum(1 for r in self.matching(pattern) if 200 <= r.status < 300 and r.fault is None)

    def matching(self, pattern: str) -> list[SeenRequest]:
        with self.lock:
            return [r for r in self.requests if re.search(pattern, r.line)]

    def request_bytes(self, pattern: str) -> int:
        """Request body bytes clients sent in requests matching ``pattern`` (uploads)."""
        return sum(r.request_bytes for r in self.matching(pattern))

    def response_bytes(self, pattern: str) -> int:
        """Response body bytes sent back for requests matching ``pattern`` (downloads)."""
        return sum(r.response_bytes for r in self.matching(pattern))


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up mid-answer are expected here


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with proxy.lock:
                proxy._connections.add(self.connection)

        def finish(self) -> None:
            with proxy.lock:
                proxy._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def _reset(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def _answer(self, fault: Fault) -> int:
            self.send_response(fault.status)
            if fault.retry_after:
                self.send_header("Retry-After", fault.retry_after)
            code = fault.code or _ERROR_CODES.get(fault.status, "UNAVAILABLE" if fault.status >= 500 else "DENIED")
            payload = json.dumps({"errors": [{"code": code, "message": fault.message}]}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command == "HEAD":  # a HEAD answer carries headers only
                return 0
            self.wfile.write(payload)
            return len(payload)

        def _upstream_headers(self) -> dict[str, str]:
            skip = ("host", "connection", "transfer-encoding", "content-length")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            headers["Host"] = proxy.upstream
            return headers

        def _cut_request(self, body: bytes, keep: int) -> None:
            """Send the registry the headers and ``keep`` body bytes with the full length declared, then hang up."""
            conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self._upstream_headers().items():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            conn.send(body[:keep])
            time.sleep(0.2)  # let the registry store what it got before it sees the end of the connection
            conn.close()
            self._reset()

        def _send_response(self, resp: http.client.HTTPResponse, fault: Fault | None) -> int:
            length_header = resp.getheader("Content-Length")
            data: bytes | None = None
            if self.command != "HEAD" and length_header is None:
                data = resp.read()  # chunked upstream: small JSON documents; re-send with a length
            self.send_response(resp.status)
            replaced = fault.response_headers if fault is not None and fault.kind == "headers" else {}
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in replaced]
            for k, v in [*kept, *((k, v) for k, v in replaced.items() if v)]:
                if k.lower() in ("transfer-encoding", "connection", "content-length"):
                    continue
                if k.lower() == "location":
                    v = v.replace(proxy.upstream, proxy.host)
                for old, new in proxy.rewrite.items():
                    v = v.replace(old, new)
                self.send_header(k, v)
            total = len(data) if data is not None else int(length_header or 0)
            self.send_header("Content-Length", str(total))
            self.end_headers()
            if self.command == "HEAD":
                return 0
            limit = fault.after_bytes if fault is not None and fault.kind == "cut_response" else None
            if fault is not None and fault.kind == "trickle":
                return self._trickle(resp, fault)
            sent = 0
            pending = data
            while True:
                chunk, pending = (pending, b"") if pending is not None else (resp.read(_PIPE_CHUNK), None)
                if not chunk:
                    break
                if fault is not None and fault.kind == "corrupt" and sent <= fault.after_bytes < sent + len(chunk):
                    at = fault.after_bytes - sent
                    chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1:]
                if limit is not None and sent + len(chunk) >= limit:
                    self.wfile.write(chunk[: limit - sent])
                    self.wfile.flush()
                    sent = limit
                    self._reset()
                    return sent
                self.wfile.write(chunk)
                sent += len(chunk)
                if proxy.throttle_bytes_per_s:
                    self.wfile.flush()
                    time.sleep(len(chunk) / proxy.throttle_bytes_per_s)
            return sent

        def _trickle(self, resp: http.client.HTTPResponse, fault: Fault) -> int:
            sent = 0
            while chunk := resp.read(_PIPE_CHUNK):
                fast = max(0, min(len(chunk), fault.after_bytes - sent))
                self.wfile.write(chunk[:fast])
                self.wfile.flush()
                sent += fast
                for i in range(fast, len(chunk)):
                    time.sleep(1.0 / fault.trickle_bytes_per_s)
                    self.wfile.write(chunk[i:i + 1])
                    self.wfile.flush()
                    sent += 1
            return sent

        def _handle(self) -> None:
            line = f"{self.command} {self.path}"
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = _read_body(self)
            with proxy.lock:
                proxy.in_flight += 1
                proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                proxy.seen.append(line)
                fault = next((f for f in proxy.faults if f.matches(line, headers, len(body))), None)
                if fault:
                    fault.hits += 1
                elif proxy.chaos_share and proxy.chaos.random() < proxy.chaos_share:
                    proxy.chaos_hits += 1
                    fault = (Fault(".", status=429, retry_after="1") if proxy.chaos.random() < 0.5
                             else Fault(".", status=503))
            kind = None if fault is None else ("reset" if fault.kind == "status" and fault.status == 0
                                               else fault.kind)
            sent = status = 0
            try:
                if fault is not None and fault.delay_s:
                    time.sleep(fault.delay_s)
                if kind == "reset":
                    self._reset()
                    return
                if kind == "status":
                    sent, status = self._answer(fault), fault.status  # type: ignore[union-attr]
                    return
                if kind == "cut_request":
                    self._cut_request(body, fault.after_bytes)  # type: ignore[union-attr]
                    return
                if proxy.latency_s and re.search(proxy.latency_pattern, line):
                    time.sleep(proxy.latency_s)
                if proxy.throttle_bytes_per_s and body:
                    time.sleep(len(body) / proxy.throttle_bytes_per_s)  # a slow uplink
                path = self.path
                if kind == "mount_as_upload":
                    path = path.split("?", 1)[0]  # no mount: the registry opens a plain upload session (202)
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    try:
                        conn.request(self.command, path, body=body or None, headers=self._upstream_headers())
                        resp = conn.getresponse()
                    except OSError:  # the registry is down: what a reverse proxy says then
                        self.send_error(502, "upstream unreachable")
                        status = 502
                        return
                    if kind == "lose_response":
                        resp.read()
                        self._reset()
                        return
                    sent = self._send_response(resp, fault)
                    status = resp.status
                finally:
                    conn.close()
            finally:
                with proxy.lock:
                    proxy.in_flight -= 1
                    proxy.requests.append(SeenRequest(line, headers, len(body), sent, kind, status))

        do_GET = do_PUT = do_POST = do_PATCH = do_HEAD = do_DELETE = _handle

    return Handler
