"""arcgap.registry.pathrtt: the kernel's RTT of the connection a response came over."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from arcgap.registry.pathrtt import path_rtt_s


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"abc")


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/x"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO is Linux's")
def test_loopback_rtt_is_known_and_short(url: str) -> None:
    with httpx.Client(trust_env=False) as client, client.stream("GET", url) as resp:
        rtt = path_rtt_s(resp)
        resp.read()
    assert rtt is not None and 0 < rtt < 0.002


def test_rtt_is_not_trusted_through_a_proxy(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a proxy the kernel's RTT would be the proxy's: not known."""
    with httpx.Client(trust_env=False) as client, client.stream("GET", url) as resp:
        monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        assert path_rtt_s(resp) is None
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        assert path_rtt_s(resp) is not None or not sys.platform.startswith("linux")
        resp.read()


def test_a_response_with_no_socket_has_no_rtt() -> None:
    assert path_rtt_s(httpx.Response(200, content=b"x", request=httpx.Request("GET", "http://h/x"))) is None
