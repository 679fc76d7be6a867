"""A small HTTP proxy that adds the OCI 1.1 referrers API in front of a registry that has none (distribution).

Everything is forwarded as is. A manifest PUT whose body names a ``subject`` is remembered once the upstream
accepted it, and answered with ``OCI-Subject``; ``GET /v2/<name>/referrers/<digest>`` answers an image index of
the remembered referrers of that digest (``?artifactType=`` filters), ``page_size`` entries a page with a
``Link`` rel="next" header, so paging is exercised too. Loopback only; for tests.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[a-z0-9]+:[a-f0-9]+)$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class ReferrersProxy:
    def __init__(self, upstream: str, *, page_size: int = 2) -> None:
        self.upstream = upstream.rstrip("/")
        self.page_size = page_size
        self.known: dict[tuple[str, str], list[dict[str, object]]] = {}  # (name, subject) → descriptors
        self.lock = threading.Lock()
        self.requests: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                proxy.handle(self)

            do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.client = httpx.Client(timeout=30.0)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        with self.lock:
            self.requests.append(f"{h.command} {url.path}")
        m = _REFERRERS.match(url.path)
        if m and h.command == "GET":
            return self._referrers(h, m["name"], m["digest"], parse_qs(url.query))
        body = h.rfile.read(int(h.headers.get("content-length") or 0)) if h.command in ("PUT", "POST", "PATCH") \
            else None
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        resp = self.client.request(h.command, self.upstream + h.path, headers=headers, content=body)
        extra: dict[str, str] = {}
        m = _MANIFEST.match(url.path)
        if m and h.command == "PUT" and resp.status_code == 201 and body:
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            subject = doc.get("subject") if isinstance(doc, dict) else None
            if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
                import hashlib
                entry: dict[str, object] = {"mediaType": h.headers.get("content-type", ""),
                                            "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "size": len(body)}
                kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
                if isinstance(kind, str):
                    entry["artifactType"] = kind
                with self.lock:
                    listed = self.known.setdefault((m["name"], subject["digest"]), [])
                    if entry["digest"] not in {e["digest"] for e in listed}:
                        listed.append(entry)
                extra["OCI-Subject"] = subject["digest"]
        h.send_response(resp.status_code)
        for k, v in resp.headers.items():
            if k.lower() not in _HOP:
                h.send_header(k, v)
        for k, v in extra.items():
            h.send_header(k, v)
        # A HEAD answer has no body, but its Content-Length is the manifest's size: clients take the descriptor
        # (media type, digest, size) from it, and notation compares it with the one it signed.
        size = resp.headers.get("content-length", "0") if h.command == "HEAD" else str(len(resp.content))
        h.send_header("Content-Length", size)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(resp.content)

    def _referrers(self, h: BaseHTTPRequestHandler, name: str, digest: str, query: dict[str, list[str]]) -> None:
        with self.lock:
            listed = list(self.known.get((name, digest), []))
        kinds = query.get("artifactType")
        if kinds:
            listed = [e for e in listed if e.get("artifactType") in kinds]
        start = int(query.get("start", ["0"])[0])
        page = listed[start:start + self.page_size]
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": page}).encode()
        h.send_response(200)
        h.send_header("Content-Type", OCI_INDEX)
        h.send_header("Content-Length", str(len(body)))
        if start + self.page_size < len(listed):
            h.send_header("Link", f'</v2/{name}/referrers/{digest}?start={start + self.page_size}>; rel="next"')
        h.end_headers()
        h.wfile.write(body)
