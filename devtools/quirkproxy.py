"""A proxy in front of a real registry that behaves like registries we cannot run here (MCR, ECR, hosted ones).

Each quirk is a knob on :class:`QuirkProxy` (all off by default; tests may change them between runs):

- ``cdn_redirect``: a blob ``GET`` the registry answers 200 is answered ``307`` to a second origin (another
  loopback port, :class:`Cdn`) that serves the bytes, as MCR serves layers from a CDN; the CDN logs the headers it
  was sent (``cdn.requests``), so a test can assert that no ``Authorization`` reached it;
- ``strip_manifest_digest``: no ``Docker-Content-Digest`` header on manifest answers;
- ``location``: upload ``Location`` headers ``"relative"`` (``/v2/…``), ``"path-relative"`` (relative to the
  request's path, no leading slash) or ``"absolute"`` (``http://proxy/v2/…``); ``None`` leaves them as they are;
- ``tag_page_size``: tags lists answered in pages of at most this many tags (or the client's ``n``), with a
  ``Link: <…>; rel="next"`` header (absolute URL when ``absolute_links``);
- ``existing_repositories``: when a set, only those repositories exist and none is created on push (ECR): every
  request naming another repository is answered ``404 NAME_UNKNOWN`` ("repository … does not exist");
- ``max_path_depth``: repository names with more ``/``-separated parts are answered ``400 NAME_INVALID``;
- ``hold``: ``(regex, seconds)``: the first request matching the regex waits that long before it is forwarded
  (a slow step mid-run, e.g. long enough for short-lived tokens to expire).

Every request is logged (``requests``: line, lower-case headers, the status the client got).
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, quote, urlsplit

from devtools.procs import free_port

LocationStyle = Literal["relative", "path-relative", "absolute"]
_NAME_RE = re.compile(r"^/v2/(?P<name>.+?)/(?:blobs|manifests|tags)/")


@dataclass(frozen=True)
class Seen:
    line: str  # "METHOD /path?query"
    headers: dict[str, str]  # lower-case names
    status: int  # what the client was answered


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up are expected


def _serve(handler: type[BaseHTTPRequestHandler], name: str) -> tuple[_Server, int]:
    port = free_port("127.0.0.1")
    server = _Server(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name=name).start()
    return server, port


class Cdn:
    """The other origin blob redirects point at: serves stored bytes (``Range: bytes=N-`` honoured), logs requests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.blobs: dict[str, bytes] = {}
        self.requests: list[Seen] = []
        cdn = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                key = urlsplit(self.path).path.split("/")[2] if self.path.count("/") >= 2 else ""
                with cdn.lock:
                    data = cdn.blobs.get(key)
                rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                status = 404 if data is None else 206 if rng else 200
                body = b"" if data is None else data[int(rng.group(1)):] if rng else data
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                if rng and data is not None:
                    self.send_header("Content-Range", f"bytes {rng.group(1)}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                self.wfile.write(body)
                with cdn.lock:
                    cdn.requests.append(Seen(f"GET {self.path}", {k.lower(): v for k, v in self.headers.items()},
                                             status))

        self._server, self.port = _serve(Handler, "quirkproxy-cdn")
        self.host = f"127.0.0.1:{self.port}"

    def put(self, data: bytes) -> str:
        key = secrets.token_hex(8)
        with self.lock:
            self.blobs[key] = data
        return key

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class QuirkProxy:
    upstream: str  # "127.0.0.1:PORT"
    upstream_scheme: str = "http"
    ca_file: Path | None = None  # to trust an https upstream
    cdn_redirect: bool = False
    strip_manifest_digest: bool = False
    location: LocationStyle | None = None
    tag_page_size: int = 0
    absolute_links: bool = False
    existing_repositories: set[str] | None = None
    max_path_depth: int = 0
    hold: tuple[str, float] | None = None
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.cdn = Cdn()
        self._ssl = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        self._server, self.port = _serve(_handler_for(self), "quirkproxy")
        self.host = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.cdn.stop()

    def __enter__(self) -> QuirkProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def matching(self, pattern: str) -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if re.search(pattern, r.line)]

    def count(self, pattern: str) -> int:
        return len(self.matching(pattern))

    def _connect(self) -> http.client.HTTPConnection:
        if self.upstream_scheme == "https":
            return http.client.HTTPSConnection(self.upstream, timeout=60, context=self._ssl)
        return http.client.HTTPConnection(self.upstream, timeout=60)

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the request upstream; the answer's status, headers and whole body."""
        conn = self._connect()
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = b"" if method == "HEAD" else resp.read()
            return resp.status, resp.getheaders(), data
        finally:
            conn.close()

    def rewrite_url(self, value: str) -> str:
        """An upstream URL as the client must see it: at the proxy."""
        return value.replace(f"{self.upstream_scheme}://{self.upstream}", f"http://{self.host}")


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


def _handler_for(proxy: QuirkProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            length = next((v for k, v in headers if k.lower() == "content-length"), None)
            self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _refusal(self, name: str) -> tuple[int, bytes] | None:
            depth = name.count("/") + 1
            if proxy.max_path_depth and depth > proxy.max_path_depth:
                return 400, _error_body("NAME_INVALID", f"invalid repository name {name}: more than "
                                        f"{proxy.max_path_depth} path components")
            if proxy.existing_repositories is not None and name not in proxy.existing_repositories:
                return 404, _error_body("NAME_UNKNOWN", f"The repository with name '{name}' does not exist in "
                                        "the registry")
            return None

        def _handle(self) -> None:
            line = f"{self.command} {self.path}"
            seen_headers = {k.lower(): v for k, v in self.headers.items()}
            body = self._body()
            status = self._answer(line, body)
            with proxy.lock:
                proxy.requests.append(Seen(line, seen_headers, status))

        def _answer(self, line: str, body: bytes) -> int:
            url = urlsplit(self.path)
            match = _NAME_RE.match(url.path)
            name = match.group("name") if match else ""
            refusal = self._refusal(name) if name else None
            if refusal is not None:
                self._reply(refusal[0], [("Content-Type", "application/json")], refusal[1])
                return refusal[0]
            with proxy.lock:
                hold = proxy.hold if proxy.hold and re.search(proxy.hold[0], line) else None
                if hold:
                    proxy.hold = None  # once
            if hold:
                time.sleep(hold[1])
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "connection", "content-length", "transfer-encoding")}
            headers["Host"] = proxy.upstream
            if body:
                headers["Content-Length"] = str(len(body))
            paged = bool(proxy.tag_page_size) and self.command == "GET" and url.path.endswith("/tags/list")
            upstream_path = url.path if paged else self.path  # pages are cut here, from the whole list
            try:
                status, resp_headers, data = proxy.forward(self.command, upstream_path, headers, body)
            except OSError:
                self._reply(502, [], b"upstream unreachable")
                return 502
            resp_headers = [(k, proxy.rewrite_url(v) if k.lower() in ("location", "link") else v)
                            for k, v in resp_headers]
            if "/manifests/" in url.path and proxy.strip_manifest_digest:
                resp_headers = [(k, v) for k, v in resp_headers if k.lower() != "docker-content-digest"]
            if "/blobs/uploads" in url.path and proxy.location is not None:
                resp_headers = [(k, self._location(v) if k.lower() == "location" else v) for k, v in resp_headers]
            if paged and status == 200:
                resp_headers, data = self._page(url.path, url.query, resp_headers, data)
            blob_get = self.command == "GET" and "/blobs/sha256:" in url.path
            if blob_get and proxy.cdn_redirect and status == 200:
                key = proxy.cdn.put(data)
                status, resp_headers, data = 307, [("Location", f"http://{proxy.cdn.host}/cdn/{key}/"
                                                    f"{url.path.rsplit('/', 1)[1]}?se=1&sig={key}")], b""
            self._reply(status, resp_headers, data)
            return status

        def _location(self, value: str) -> str:
            parts = urlsplit(value)
            path_query = parts.path + (f"?{parts.query}" if parts.query else "")
            if proxy.location == "absolute":
                return f"http://{proxy.host}{path_query}"
            if proxy.location == "path-relative":
                base = urlsplit(self.path).path.rsplit("/", 1)[0] + "/"
                if parts.path.startswith(base):
                    return path_query[len(base):]
            return path_query

        def _page(self, path: str, query: str, headers: list[tuple[str, str]], data: bytes
                  ) -> tuple[list[tuple[str, str]], bytes]:
            doc = json.loads(data)
            tags = sorted(doc.get("tags") or [])
            params = parse_qs(query)
            size = int(params.get("n", [proxy.tag_page_size])[0])
            last = params.get("last", [""])[0]
            start = next((i for i, t in enumerate(tags) if t > last), len(tags)) if last else 0
            page = tags[start:start + size]
            headers = [(k, v) for k, v in headers if k.lower() not in ("link", "content-length")]
            if start + size < len(tags):
                nxt = f"{path}?n={size}&last={quote(page[-1])}"
                if proxy.absolute_links:
                    nxt = f"http://{proxy.host}{nxt}"
                headers.append(("Link", f'<{nxt}>; rel="next"'))
            return headers, json.dumps({"name": doc.get("name"), "tags": page}).encode()

        do_GET = do_PUT = do_POST = do_PATCH = do_HEAD = do_DELETE = _handle

    return Handler
