"""devtools.faultproxy: each fault does what it says, against a tiny local upstream (no registry needed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from devtools.faultproxy import Fault, FaultProxy

BODY = bytes(range(256)) * 4096  # 1 MiB


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: list[tuple[str, int]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        start = int(self.headers.get("Range", "bytes=0-")[6:].rstrip("-") or 0)
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(BODY) - start))
        self.end_headers()
        self.wfile.write(BODY[start:])

    def do_PUT(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        data = b""
        while len(data) < length:
            chunk = self.rfile.read(length - len(data))
            if not chunk:
                break
            data += chunk
        _Upstream.received.append((self.path, len(data)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    _Upstream.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    p = FaultProxy(f"127.0.0.1:{server.server_address[1]}")
    yield p
    p.stop()
    server.shutdown()
    server.server_close()


def test_forwards_whole_bodies_and_logs_them(proxy: FaultProxy) -> None:
    resp = httpx.get(f"http://{proxy.host}/blob")
    assert resp.content == BODY
    proxy.wait_idle()  # the log entry is written just after the client has the whole answer
    (seen,) = proxy.matching("^GET /blob$")
    assert (seen.status, seen.response_bytes, seen.fault) == (200, len(BODY), None)
    assert proxy.completed("^GET ") == 1


def test_cut_response_sends_exactly_after_bytes(proxy: FaultProxy) -> None:
    proxy.faults.append(Fault("^GET ", kind="cut_response", after_bytes=300_000))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"http://{proxy.host}/blob")
    resp = httpx.get(f"http://{proxy.host}/blob", headers={"Range": "bytes=300000-"})
    assert resp.status_code == 206 and resp.content == BODY[300_000:]
    proxy.wait_idle()
    first, second = proxy.matching("^GET ")
    assert (first.response_bytes, first.fault) == (300_000, "cut_response")
    assert second.headers["range"] == "bytes=300000-"


def test_skip_aims_at_the_nth_request_and_reset_answers_nothing(proxy: FaultProxy) -> None:
    proxy.faults.append(Fault("^GET ", kind="reset", skip=1))
    assert httpx.get(f"http://{proxy.host}/a").status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"http://{proxy.host}/b")
    assert httpx.get(f"http://{proxy.host}/c").status_code == 200
    proxy.wait_idle()
    assert [r.fault for r in proxy.requests] == [None, "reset", None]


def test_cut_request_gives_the_upstream_part_of_the_body(proxy: FaultProxy) -> None:
    proxy.faults.append(Fault("^PUT ", kind="cut_request", after_bytes=1000))
    with pytest.raises(httpx.TransportError):
        httpx.put(f"http://{proxy.host}/up", content=b"x" * 5000)
    proxy.wait_idle()
    time.sleep(0.2)
    assert _Upstream.received == [("/up", 1000)]


def test_lose_response_forwards_then_hangs_up(proxy: FaultProxy) -> None:
    proxy.faults.append(Fault("^PUT ", kind="lose_response"))
    with pytest.raises(httpx.TransportError):
        httpx.put(f"http://{proxy.host}/commit", content=b"y" * 100)
    proxy.wait_idle()
    assert _Upstream.received == [("/commit", 100)]


def test_status_fault_with_retry_after(proxy: FaultProxy) -> None:
    proxy.faults.append(Fault("^GET ", status=429, retry_after="3", times=2))
    for _ in range(2):
        resp = httpx.get(f"http://{proxy.host}/x")
        assert resp.status_code == 429 and resp.headers["retry-after"] == "3"
    assert httpx.get(f"http://{proxy.host}/x").status_code == 200


def test_throttle_and_latency_slow_things_down(proxy: FaultProxy) -> None:
    proxy.latency_s = 0.2
    proxy.throttle_bytes_per_s = 2_000_000
    t0 = time.monotonic()
    assert httpx.get(f"http://{proxy.host}/blob").content == BODY
    assert time.monotonic() - t0 > 0.2 + 0.4  # 1 MiB at 2 MB/s ≈ 0.5 s


def test_pause_refuses_connections_and_resume_listens_again(proxy: FaultProxy) -> None:
    proxy.pause()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{proxy.host}/x")
    proxy.resume()
    assert httpx.get(f"http://{proxy.host}/x").status_code == 200


def test_upstream_down_is_a_502(proxy: FaultProxy) -> None:
    proxy.upstream = "127.0.0.1:9"  # discard port: nothing listens
    assert httpx.get(f"http://{proxy.host}/x").status_code == 502


def test_every_fires_on_each_nth_match_only(proxy: FaultProxy) -> None:
    proxy.faults.append(Fault("^GET ", status=503, every=3, times=100))
    statuses = [httpx.get(f"http://{proxy.host}/x").status_code for _ in range(7)]
    assert statuses == [200, 200, 503, 200, 200, 503, 200]


def test_body_over_and_under_narrow_to_request_sizes(proxy: FaultProxy) -> None:
    proxy.faults += [Fault("^PUT ", status=413, body_over=1000, times=100),
                     Fault("^PUT ", status=416, body_under=100, times=100)]
    sizes = (50, 100, 1000, 1001)
    assert [httpx.put(f"http://{proxy.host}/up", content=b"z" * n).status_code for n in sizes] == [416, 201, 201, 413]
    assert _Upstream.received == [("/up", 100), ("/up", 1000)]


def test_mount_as_upload_forwards_without_the_query(proxy: FaultProxy) -> None:
    proxy.faults.append(Fault("^PUT ", kind="mount_as_upload"))
    assert httpx.put(f"http://{proxy.host}/v2/r/blobs/uploads/?mount=sha256:ab&from=s", content=b"q").status_code \
        == 201
    assert _Upstream.received == [("/v2/r/blobs/uploads/", 1)]
