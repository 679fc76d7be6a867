"""Tag lists across pages: the Link header parser, and RegistryClient.list_tags against a paging server.

distribution 2.8 (the registry the e2e tests run) answers a tags list in one page, so paging is exercised
against a small HTTP server here that pages like distribution v3 and Harbor do.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from arcgap.errors import RegistryError
from arcgap.registry.client import RegistryClient, next_link
from arcgap.registry.transport import TLSOptions


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('</v2/a/tags/list?n=2&last=b>; rel="next"', "/v2/a/tags/list?n=2&last=b"),
        ("</v2/a/tags/list?last=b>; rel=next", "/v2/a/tags/list?last=b"),
        ('<https://r.example/v2/a/tags/list?last=b>; rel="next"', "https://r.example/v2/a/tags/list?last=b"),
        ('</first>; rel="first", </v2/next?x=1,2>; rel="next"', "/v2/next?x=1,2"),
        ('</p>; title="a; b"; rel="prev next"', "/p"),
        ('</p>; rel="prev"', None),
        ("", None),
        ("garbage", None),
    ],
)
def test_next_link(header: str, expected: str | None) -> None:
    assert next_link(header) == expected


TAGS = [f"v{i:03d}" for i in range(7)]


class _Pager(BaseHTTPRequestHandler):
    mode = "pages"  # or "loop" (the next page is always the first) or "html"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        if url.path == "/v2/":
            self._send(200, b"{}")
            return
        if self.mode == "html":
            self._send(200, b"<html>not a registry</html>", content_type="text/html")
            return
        query = parse_qs(url.query)
        last = query.get("last", [""])[0]
        start = TAGS.index(last) + 1 if last else 0
        page = TAGS[start:start + 3]
        links = {}
        if self.mode == "loop":
            links["Link"] = f'<{url.path}?n=3>; rel="next"'
        elif start + 3 < len(TAGS):
            links["Link"] = f'<{url.path}?n=3&last={page[-1]}>; rel="next"'
        self._send(200, json.dumps({"name": "arc/x", "tags": page}).encode(), extra=links)

    def _send(self, status: int, body: bytes, *, content_type: str = "application/json",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def pager() -> Iterator[tuple[str, type[_Pager]]]:
    handler = type("Pager", (_Pager,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _client(host: str) -> RegistryClient:
    return RegistryClient(host, tls=TLSOptions(plain_http=True))


def test_every_page_is_read(pager: tuple[str, type[_Pager]]) -> None:
    host, _ = pager
    assert _client(host).list_tags("arc/x") == TAGS


def test_pages_that_never_end_are_an_error(pager: tuple[str, type[_Pager]]) -> None:
    host, handler = pager
    handler.mode = "loop"
    with pytest.raises(RegistryError) as info:
        _client(host).list_tags("arc/x")
    assert "pages do not end" in info.value.message


def test_a_tags_list_that_is_not_json_is_a_registry_error(pager: tuple[str, type[_Pager]]) -> None:
    host, handler = pager
    handler.mode = "html"
    with pytest.raises(RegistryError) as info:
        _client(host).list_tags("arc/x")
    assert info.value.message.endswith("the answer is not a JSON object")
