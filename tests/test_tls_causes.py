"""A refused registry certificate is named by its cause: expired (on its date), issued for another name, or by
an authority not trusted; each with its hint. A small TLS server on loopback with certificates from
devtools/pki.py (the handshake fails before any HTTP, so no registry is needed)."""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from arcgap.errors import Fault, TLSError
from arcgap.registry.client import RegistryClient
from arcgap.registry.transport import RetryPolicy, TLSOptions
from devtools.pki import CA, make_ca
from tests.e2e_helpers import arcgap
from tests.test_e2e_roundtrip import clean_env  # noqa: F401 (autouse fixture)


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve(cert: Path, key: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return make_ca(tmp_path / "ca")


@pytest.fixture
def expired(ca: CA, tmp_path: Path) -> Iterator[str]:
    when = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.timezone.utc)
    yield from _serve(*ca.issue_server_cert(tmp_path / "exp", not_after=when))


@pytest.fixture
def other_name(ca: CA, tmp_path: Path) -> Iterator[str]:
    yield from _serve(*ca.issue_server_cert(tmp_path / "other", dns=["registry.example"], only=True))


def _ping(host: str, ca_file: Path) -> TLSError:
    client = RegistryClient(host, tls=TLSOptions(ca_file=ca_file), retry=RetryPolicy(budget_s=1))
    with pytest.raises(TLSError) as info:
        client.ping()
    client.close()
    return info.value


def test_an_expired_certificate_names_its_date(expired: str, ca: CA) -> None:
    err = _ping(expired, ca.cert_path)
    assert err.detail is not None and err.detail.fault == Fault.TLS_EXPIRED
    assert err.message == f"connecting to {expired}: the TLS certificate of {expired} expired on 2026-03-04 05:06 UTC"


def test_a_certificate_for_another_name_names_the_names(other_name: str, ca: CA) -> None:
    err = _ping(other_name, ca.cert_path)
    assert err.detail is not None and err.detail.fault == Fault.TLS_OTHER_NAME
    assert err.detail.names == ("registry.example",)
    assert err.message.endswith(f"the TLS certificate of {other_name} is issued for registry.example, not 127.0.0.1")


def test_an_unknown_issuer_says_so(other_name: str, tmp_path: Path) -> None:
    stranger = make_ca(tmp_path / "stranger", common_name="someone else")
    err = _ping(other_name, stranger.cert_path)
    assert err.detail is not None and err.detail.fault == Fault.TLS_UNTRUSTED
    assert "issued by an authority that is not trusted (CN=arcgap test CA" in err.message


def test_the_command_line_says_cause_and_hint(capsys: pytest.CaptureFixture[str], expired: str, ca: CA) -> None:
    res = arcgap(capsys, "export", "x", "--source-registry", expired, "--source-ca-file", str(ca.cert_path),
                 "--source-repository", "r", "--source-tag", "v1", "-o", "/nonexistent/never.tar.zst", "-y")
    assert res.code != 0
    assert len(res.error_lines) == 2, res.err
    assert "expired on 2026-03-04 05:06 UTC" in res.error_lines[0]
    assert res.error_lines[1].startswith("hint: certificates are checked against this machine's clock")


class _Flaky:
    """A TLS server on loopback that drops the first ``drops`` connections before their handshake ends (an
    overloaded server or balancer), then answers ``GET /v2/`` with 200."""

    def __init__(self, cert: Path, key: Path, drops: int) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.drops = drops
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections <= self.drops:
                conn.recv(4096)  # the ClientHello, then the connection ends mid-handshake
                conn.close()
                continue
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += tls.recv(4096)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def _flaky(ca: CA, tmp_path: Path, drops: int) -> _Flaky:
    return _Flaky(*ca.issue_server_cert(tmp_path / f"flaky{drops}"), drops=drops)


def _ping_flaky(server: _Flaky, ca_file: Path) -> TLSError | None:
    """``ping`` against ``server`` trusting ``ca_file`` (3 connect tries, short waits): its TLSError or None."""
    client = RegistryClient(server.host, tls=TLSOptions(ca_file=ca_file),
                            retry=RetryPolicy(budget_s=5, base_delay_s=0.01, connect_attempts=3))
    try:
        client.ping()
        return None
    except TLSError as exc:
        return exc
    finally:
        client.close()
        server.close()


def test_a_handshake_broken_off_once_is_tried_again(ca: CA, tmp_path: Path) -> None:
    server = _flaky(ca, tmp_path, drops=1)
    assert _ping_flaky(server, ca.cert_path) is None
    assert server.connections == 2


def test_a_handshake_that_always_breaks_off_ends_after_the_connect_tries(ca: CA, tmp_path: Path) -> None:
    server = _flaky(ca, tmp_path, drops=100)
    err = _ping_flaky(server, ca.cert_path)
    assert err is not None and err.detail is not None and err.detail.fault == Fault.TLS_HANDSHAKE
    assert server.connections == 3


def test_a_refused_certificate_is_not_tried_again(ca: CA, tmp_path: Path) -> None:
    server = _flaky(make_ca(tmp_path / "other-ca"), tmp_path, drops=0)
    err = _ping_flaky(server, ca.cert_path)
    assert err is not None and err.detail is not None and err.detail.fault == Fault.TLS_UNTRUSTED
    assert server.connections == 2  # the refused handshake, and one to read the certificate the error names
