"""Registry clients per side: one pool of clients for the source and one for the target, and the link from a
registry's neutral error back to the side whose client raised it (the command line words the hint by side)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from arcgap.commands.options import NetworkOptions, SideOptions
from arcgap.commands.settings import Endpoint
from arcgap.errors import ArcgapError, UsageError, option
from arcgap.registry.client import RegistryClient
from arcgap.registry.credentials import Credentials, lookup_credentials
from arcgap.registry.transport import RetryPolicy, StallPolicy, TLSOptions
from arcgap.registry.upload import UPLOAD_CHUNK_BYTES


def _credentials(endpoint: Endpoint, registry: str, environ: Mapping[str, str]) -> Credentials | None:
    """Explicit username/password for the endpoint's own registry; otherwise docker/podman stored logins."""
    if registry == endpoint.registry and endpoint.username is not None and endpoint.password is not None:
        return Credentials(endpoint.username, endpoint.password, source="options")
    return lookup_credentials(registry, environ=environ)


class ClientPool:
    """One side's clients, one per registry host, created on first use, with the endpoint's TLS choice for its
    own host. Images named by full reference may live on other hosts: those use stored logins."""

    def __init__(
        self, endpoint: Endpoint, tls: TLSOptions, *, max_connections: int, environ: Mapping[str, str],
        network: NetworkOptions | None = None, warn: Callable[[str], None] | None = None,
    ) -> None:
        network = network or NetworkOptions()
        self.retry = RetryPolicy(budget_s=network.retry_budget_s)
        if network.retry_base_delay_s is not None:
            self.retry = dataclasses.replace(self.retry, base_delay_s=network.retry_base_delay_s)
        self.stall = StallPolicy(stall_s=network.stall_s, min_bytes_per_s=network.min_bytes_per_s)
        chunk = network.upload_chunk_bytes
        self.upload_chunk_bytes = UPLOAD_CHUNK_BYTES if chunk is None else chunk
        self.warn = warn
        self.endpoint = endpoint
        self.side = endpoint.role
        self.environ = environ
        self.tls = tls
        self.max_connections = max_connections
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def __call__(self, registry: str) -> RegistryClient:
        with self._lock:
            client = self._clients.get(registry)
            if client is None:
                tls = self.tls if registry == self.endpoint.registry else TLSOptions()
                client = RegistryClient(
                    registry,
                    push=self.side == "target",
                    credentials=_credentials(self.endpoint, registry, self.environ),
                    tls=tls,
                    max_connections=self.max_connections,
                    retry=self.retry,
                    stall=self.stall,
                    upload_chunk_bytes=self.upload_chunk_bytes,
                    warn=self.warn,
                )
                self._clients[registry] = client
            return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        """Close every client; an error one of them raised learns this pool's side (for the hint)."""
        self.close()
        if isinstance(exc, ArcgapError) and exc.side is None and exc.origin is not None:
            with self._lock:
                if any(c is exc.origin for c in self._clients.values()):
                    exc.side = self.side


SPARE_CONNECTIONS = 4  # beyond --jobs: the questions (blob checks, token fetches) asked beside the copies


def registry_side(
    endpoint: Endpoint, given: SideOptions, *, jobs: int, environ: Mapping[str, str],
    network: NetworkOptions | None = None, warn: Callable[[str], None] | None = None, extra_connections: int = 0,
) -> ClientPool:
    """One side's registry clients from that side's options (its TLS choice), ``jobs`` copies in flight, with the
    run's retry budget and stall limits (``network``)."""
    return ClientPool(endpoint, side_tls(endpoint, ca_file=given.ca_file, insecure=given.insecure),
                      max_connections=jobs + SPARE_CONNECTIONS + extra_connections, environ=environ,
                      network=network, warn=warn)


def side_tls(endpoint: Endpoint, *, ca_file: Path | None, insecure: bool) -> TLSOptions:
    if ca_file is not None and not ca_file.is_file():
        raise UsageError(f"CA file {ca_file} does not exist", hint=f"check {option(endpoint.role + '.ca_file')}")
    if endpoint.plain_http and (insecure or ca_file):
        raise UsageError(f"{option(endpoint.role + '.plain_http')} cannot be combined with TLS options")
    return TLSOptions(plain_http=endpoint.plain_http, insecure=insecure, ca_file=ca_file)
