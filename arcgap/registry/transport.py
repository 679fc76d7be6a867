"""How arcgap reaches one registry: URL scheme, TLS trust, timeouts and the retry policy."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from arcgap.errors import LocalIOError

DOCKER_CERTS_DIR = Path("/etc/docker/certs.d")
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class TLSOptions:
    """Per-registry transport choice. An explicit ``ca_file`` wins over environment CA variables."""

    plain_http: bool = False  # speak http:// (registries on a trusted network without TLS)
    insecure: bool = False  # https:// without certificate verification
    ca_file: Path | None = None
    certs_dir: Path = DOCKER_CERTS_DIR  # docker's <dir>/<host:port>/ca.crt convention

    @property
    def scheme(self) -> str:
        return "http" if self.plain_http else "https"


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures only: connection errors, 408, 429 (Retry-After honoured), 5xx."""

    attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    statuses: frozenset[int] = field(default=RETRY_STATUSES)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), self.max_delay_s)
            except ValueError:
                pass  # an HTTP-date: fall back to backoff
        return min(self.base_delay_s * (2 ** (attempt - 1)), self.max_delay_s)


def ssl_context(host: str, tls: TLSOptions) -> ssl.SSLContext:
    """Build the trust for ``host``: explicit CA file, else certs.d/<host>, else the system store."""
    try:
        if tls.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if tls.ca_file is not None:
            # cafile= loads only this CA: SSL_CERT_FILE / REQUESTS_CA_BUNDLE cannot override it.
            return ssl.create_default_context(cafile=str(tls.ca_file))
        host_dir = tls.certs_dir / host
        if host_dir.is_dir():
            ctx = ssl.create_default_context()
            for ca in sorted(host_dir.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(ca))
            for cert in sorted(host_dir.glob("*.cert")):
                key = cert.with_suffix(".key")
                if key.exists():
                    ctx.load_cert_chain(str(cert), str(key))
            return ctx
        return ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise LocalIOError(
            f"cannot load TLS trust for {host}: {exc}", hint="check the --*-ca-file path and that it is PEM"
        ) from None


def make_http_client(host: str, tls: TLSOptions, *, max_connections: int = 8) -> httpx.Client:
    verify: ssl.SSLContext | bool = False if tls.plain_http else ssl_context(host, tls)
    return httpx.Client(
        verify=verify,
        timeout=httpx.Timeout(connect=15.0, read=120.0, write=120.0, pool=300.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        headers={"User-Agent": "arcgap", "Accept-Encoding": "identity"},
        trust_env=True,  # proxies; CA variables don't matter because verify is an explicit context
    )
