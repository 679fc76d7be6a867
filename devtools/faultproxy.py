"""A small fault-injecting HTTP proxy in front of a real (plain HTTP) registry, for retry tests.

Rules are matched in order against ``METHOD path``; each rule fires ``times`` times, answering with a status
(and optional Retry-After) instead of forwarding, or cutting the connection. Everything else is forwarded.
"""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devtools.procs import free_port


@dataclass
class Fault:
    pattern: str  # regex on "METHOD /path?query"
    status: int = 503  # 0: reset the connection without answering
    times: int = 1
    retry_after: str | None = None
    hits: int = 0

    def matches(self, line: str) -> bool:
        return self.hits < self.times and re.search(self.pattern, line) is not None


@dataclass
class FaultProxy:
    upstream: str  # "127.0.0.1:PORT"
    faults: list[Fault] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port("127.0.0.1")
        self.host = f"127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                line = f"{self.command} {self.path}"
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.seen.append(line)
                    fault = next((f for f in proxy.faults if f.matches(line)), None)
                    if fault:
                        fault.hits += 1
                if fault is not None:
                    if fault.status == 0:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self.send_response(fault.status)
                    if fault.retry_after:
                        self.send_header("Retry-After", fault.retry_after)
                    payload = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"injected fault"}]}'
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":  # a HEAD answer carries headers only
                        self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                headers["Host"] = proxy.upstream
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() in ("transfer-encoding", "connection", "content-length"):
                        continue
                    if k.lower() == "location":
                        v = v.replace(proxy.upstream, proxy.host)
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_PATCH = do_HEAD = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def count(self, pattern: str) -> int:
        with self.lock:
            return sum(1 for line in self.seen if re.search(pattern, line))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
