"""A small token server for distribution's ``auth.token`` (Bearer) mode, over HTTP or HTTPS.

``GET /token?service=S&scope=repository:a/b:pull,push&scope=…`` with optional Basic credentials answers
``{"token", "access_token", "expires_in", "issued_at"}``:

- the right user and password: every requested action is granted;
- no credentials: only ``pull`` is granted (anonymous pull, like public registries);
- wrong credentials: 401.

``POST /token`` (OAuth2 ``grant_type=password``, as containerd/dockerd may use) is answered the same way.
``GET /stats`` returns the counters as JSON (not counted itself).

Two ways to run it:

- :class:`TokenServer` -- in-process, on a daemon thread; ``requests_served`` and ``log`` are live.
- :class:`TokenServerProcess` -- ``python -m devtools.tokenserver …`` as a subprocess, optionally inside a
  network namespace (``ip netns exec NS …``) so clients inside it can reach the realm. Its counters are read
  over ``/stats``. The password is passed through the environment, never argv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from devtools.netns import netns_argv, run_in_netns
from devtools.pki import TokenSigner, load_token_signer
from devtools.procs import ManagedProcess, StartupError, free_port, wait_until
from devtools.tokens import TOKEN_TTL_S, Access, check_basic, grant, mint_token, parse_scope

PASSWORD_ENV = "ARCGAP_TOKENSERVER_PASSWORD"
DEFAULT_SERVICE = "arcgap-test-registry"
DEFAULT_ISSUER = "arcgap-test-token-issuer"
DISTRIBUTION_LEEWAY_S = 60  # distribution's token.Leeway: accepted this long past exp


@dataclass(frozen=True)
class TokenPolicy:
    """What the server signs with, for whom, and who may push."""

    signer: TokenSigner
    service: str = DEFAULT_SERVICE
    issuer: str = DEFAULT_ISSUER
    username: str = "arcuser"
    password: str = field(default="arc-secret-pass", repr=False)
    usable_s: int | None = None  # the registry accepts a token for this long (None: TOKEN_TTL_S)
    expires_in_s: int | None = None  # what clients are told (None: the truth); more than usable_s = a lie

    def mint(self, subject: str, access: Sequence[Access]) -> tuple[str, int, int]:
        """A token for ``access`` as this policy says: ``(jwt, expires_in told, issued_at)``."""
        ttl = TOKEN_TTL_S
        now = time.time()
        if self.usable_s is not None:
            # distribution accepts a token until DISTRIBUTION_LEEWAY_S past its exp (clock skew): date it back
            # so that it stops being accepted usable_s seconds from now.
            now += self.usable_s - DISTRIBUTION_LEEWAY_S - ttl
        token, _, iat = mint_token(self.signer, issuer=self.issuer, service=self.service, subject=subject,
                                   access=access, ttl=ttl, now=now)
        told = self.expires_in_s if self.expires_in_s is not None else (self.usable_s or ttl)
        return token, told, iat


@dataclass(frozen=True)
class TokenRequest:
    """One request to /token as the server saw it (``user`` None = anonymous; status 200 or 401)."""

    user: str | None
    scopes: tuple[str, ...]
    granted: tuple[Access, ...]
    status: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    policy: TokenPolicy
    ssl_context: ssl.SSLContext | None
    quiet: bool

    def init_state(self, policy: TokenPolicy, ssl_context: ssl.SSLContext | None, quiet: bool) -> None:
        self.policy = policy
        self.ssl_context = ssl_context
        self.quiet = quiet
        self.lock = threading.Lock()
        self.requests_served = 0
        self.tokens_issued = 0
        self.log: list[TokenRequest] = []

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(10)
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def record(self, entry: TokenRequest) -> None:
        with self.lock:
            self.requests_served += 1
            self.tokens_issued += entry.status == 200
            self.log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        url = urlsplit(self.path)
        if url.path == "/stats":
            with self.server.lock:
                stats = {
                    "requests_served": self.server.requests_served,
                    "tokens_issued": self.server.tokens_issued,
                }
            self._send_json(200, stats)
            return
        if url.path != "/token":
            self._send_json(404, {"error": "not found"})
            return
        query = parse_qs(url.query)
        self._answer(query.get("scope", []), self.headers.get("Authorization"), None)

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace")) if length else {}
        if url.path != "/token":
            self._send_json(404, {"error": "not found"})
            return
        if form.get("grant_type", [""])[0] != "password":
            self._send_json(400, {"error": "unsupported_grant_type"})
            return
        creds = (form.get("username", [""])[0], form.get("password", [""])[0])
        self._answer(form.get("scope", []), None, creds)

    def _answer(
        self, scopes: Sequence[str], auth_header: str | None, form_creds: tuple[str, str] | None
    ) -> None:
        policy = self.server.policy
        if form_creds is not None:
            user: str | None = form_creds[0]
            ok: bool | None = form_creds == (policy.username, policy.password)
        else:
            ok = check_basic(auth_header, policy.username, policy.password)
            user = policy.username if ok else None
        if ok is False:
            self.server.record(TokenRequest(None, tuple(scopes), (), 401))
            self._send_json(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]},
                {"WWW-Authenticate": 'Basic realm="arcgap-token-server"'},
            )
            return
        requested = [acc for scope in scopes for acc in parse_scope(scope)]
        granted = grant(requested, authenticated=bool(ok))
        token, expires_in, iat = policy.mint(user or "", granted)
        self.server.record(TokenRequest(user, tuple(scopes), tuple(granted), 200))
        issued_at = dt.datetime.fromtimestamp(iat, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._send_json(
            200, {"token": token, "access_token": token, "expires_in": expires_in, "issued_at": issued_at}
        )


def _server_ssl_context(tls: tuple[Path, Path] | None) -> ssl.SSLContext | None:
    if tls is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls[0]), str(tls[1]))
    return ctx


class TokenServer:
    """The token server on a daemon thread in this process (root network namespace)."""

    def __init__(
        self,
        policy: TokenPolicy,
        *,
        bind: str = "127.0.0.1",
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        quiet: bool = True,
    ) -> None:
        self.policy = policy
        self._httpd = _Server((bind, port or 0), _Handler)
        self._httpd.init_state(policy, _server_ssl_context(tls), quiet)
        self.host = f"{bind}:{self._httpd.server_address[1]}"
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="tokenserver", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def set_policy(self, policy: TokenPolicy) -> None:
        """Sign later tokens under ``policy`` (e.g. ``dataclasses.replace(server.policy, usable_s=2)``)."""
        self.policy = policy
        self._httpd.policy = policy

    @property
    def requests_served(self) -> int:
        """How many /token requests were answered (200 or 401) so far."""
        with self._httpd.lock:
            return self._httpd.requests_served

    @property
    def tokens_issued(self) -> int:
        with self._httpd.lock:
            return self._httpd.tokens_issued

    @property
    def log(self) -> list[TokenRequest]:
        """A copy of every /token request seen so far."""
        with self._httpd.lock:
            return list(self._httpd.log)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TokenServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TokenServerProcess:
    """The token server as a subprocess, optionally inside network namespace ``netns``."""

    def __init__(
        self,
        policy: TokenPolicy,
        log_file: Path,
        *,
        bind: str = "127.0.0.1",
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        netns: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.policy = policy
        self.netns = netns
        self.port = port or free_port()
        self.host = f"{bind}:{self.port}"
        self.scheme = "https" if tls else "http"
        self._tls = tls
        argv = [
            sys.executable, "-m", "devtools.tokenserver",
            "--bind", bind, "--port", str(self.port),
            "--signer-cert", str(policy.signer.cert_path), "--signer-key", str(policy.signer.key_path),
            "--service", policy.service, "--issuer", policy.issuer, "--username", policy.username,
        ]  # fmt: skip
        if tls:
            argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        project_root = str(Path(__file__).resolve().parent.parent)
        pythonpath = os.pathsep.join(p for p in (project_root, os.environ.get("PYTHONPATH", "")) if p)
        env = {PASSWORD_ENV: policy.password, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
        self.process = ManagedProcess(netns_argv(netns, argv), log_file, env=env)
        if wait_until(self._stats, timeout=timeout, alive=self.process.alive) is None:
            self.process.stop()
            raise StartupError(f"token server on {self.host} did not start:\n{self.process.tail()}")

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def _stats(self) -> dict[str, int]:
        verify: ssl.SSLContext | bool = False
        if self._tls:
            verify = ssl.create_default_context()
            verify.check_hostname = False
            verify.verify_mode = ssl.CERT_NONE

        def fetch() -> dict[str, int]:
            with httpx.Client(verify=verify, trust_env=False, timeout=2) as client:
                return client.get(f"{self.url}/stats").raise_for_status().json()

        return run_in_netns(self.netns, fetch)

    @property
    def requests_served(self) -> int:
        return int(self._stats()["requests_served"])

    @property
    def tokens_issued(self) -> int:
        return int(self._stats()["tokens_issued"])

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> TokenServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devtools.tokenserver``: serve until SIGTERM. Password from $ARCGAP_TOKENSERVER_PASSWORD."""
    ap = argparse.ArgumentParser(prog="python -m devtools.tokenserver", description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--signer-cert", type=Path, required=True)
    ap.add_argument("--signer-key", type=Path, required=True)
    ap.add_argument("--service", default=DEFAULT_SERVICE)
    ap.add_argument("--issuer", default=DEFAULT_ISSUER)
    ap.add_argument("--username", default="arcuser")
    ap.add_argument("--tls-cert", type=Path)
    ap.add_argument("--tls-key", type=Path)
    args = ap.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        ap.error(f"set ${PASSWORD_ENV}")
    policy = TokenPolicy(
        signer=load_token_signer(args.signer_cert, args.signer_key),
        service=args.service,
        issuer=args.issuer,
        username=args.username,
        password=password,
    )
    tls = (args.tls_cert, args.tls_key) if args.tls_cert and args.tls_key else None
    httpd = _Server((args.bind, args.port), _Handler)
    httpd.init_state(policy, _server_ssl_context(tls), quiet=False)
    print(f"token server listening on {args.bind}:{args.port}", flush=True)

    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
