"""``arcgap login`` / ``arcgap logout``: check credentials against a registry (GET /v2/ with them, as
``docker login`` does), then store or forget them where docker keeps them (config.json, or its credential
helper when one is configured: then never in plain text)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from arcgap.commands.settings import split_scheme
from arcgap.errors import ArcgapError, AuthError, NetworkError, RegistryError, TLSError, UsageError, option
from arcgap.oci.reference import validate_registry
from arcgap.registry.auth import Authenticator, parse_challenge
from arcgap.registry.credentials import Credentials, erase_credentials, store_credentials
from arcgap.registry.transport import TLSOptions, make_http_client
from arcgap.util.secret import Secret

DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class LoginResult:
    registry: str
    username: str
    stored_in: str  # the credential helper (docker-credential-…) or the config file
    helper: bool  # True: the secret went to a credential helper, config.json only records the login
    auth: str  # what the registry asked for: "basic", "bearer" or "none" (it let anyone in)

    def to_dict(self) -> dict[str, Any]:
        return {"command": "login", "registry": self.registry, "username": self.username,
                "stored_in": self.stored_in, "helper": self.helper, "plain_text": not self.helper,
                "auth": self.auth}


@dataclass(frozen=True)
class LogoutResult:
    registry: str
    removed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"command": "logout", "registry": self.registry, "removed": self.removed}


def registry_host(registry: str) -> tuple[str, bool | None]:
    """``http://host:5000/`` → (``host:5000``, plain_http=True); a bare host keeps None (HTTPS)."""
    host, plain = split_scheme(registry.strip())
    if not host:
        raise UsageError("no registry given", hint="arcgap login registry.example.com:5000")
    validate_registry(host)
    return host, plain


def _transport_error(exc: Exception, host: str) -> ArcgapError:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return TLSError(f"logging in to {host}: TLS certificate not trusted",
                        hint=f"give the registry's CA with {option('ca_file')} (or /etc/docker/certs.d/{host}/ca.crt)")
    if "SSL" in text or "record layer" in text:
        return TLSError(f"logging in to {host}: TLS handshake failed ({text[:120]})",
                        hint=f"use {option('plain_http')} (or http://HOST) if the registry speaks plain HTTP")
    return NetworkError(f"logging in to {host}: cannot reach it: {type(exc).__name__}",
                        hint="check the registry's name and port and the network path to it")


def verify_login(host: str, creds: Credentials, tls: TLSOptions) -> str:
    """GET /v2/ anonymously for the challenge, then with the credentials (Basic, or a Bearer token fetched
    with them); returns the scheme the registry asked for. Wrong credentials raise AuthError."""
    api = DOCKER_HUB_API if host in DOCKER_HUB_NAMES else host  # docker.io's API lives elsewhere
    url = f"{tls.scheme}://{api}/v2/"
    with make_http_client(api, tls, max_connections=2) as http:
        try:
            first = http.get(url)
            if first.status_code == 200:
                return "none"
            if first.status_code != 401:
                raise RegistryError(f"{host} does not answer as a container registry (GET /v2/ → "
                                    f"{first.status_code})", status=first.status_code,
                                    hint="check the registry's name and port")
            challenge = parse_challenge(first.headers.get("www-authenticate", ""))
            scheme = challenge.scheme if challenge else "unknown"
            auth = Authenticator(http, registry=host, credentials=creds)
            auth.set_challenge(first.headers.get("www-authenticate"))
            try:
                header = auth.header(frozenset())
            except AuthError as exc:
                raise AuthError(f"login to {host} refused: {exc.message}",
                                hint="check the username and password") from None
            second = http.get(url, headers={"Authorization": header} if header else {})
        except httpx.TransportError as exc:
            raise _transport_error(exc, host) from None
    if second.status_code in (401, 403):
        raise AuthError(f"login to {host} refused: {second.status_code} {second.reason_phrase}",
                        hint="check the username and password")
    if second.status_code != 200:
        raise RegistryError(f"login to {host}: GET /v2/ answered {second.status_code}", status=second.status_code)
    return scheme


def login(
    registry: str, *, username: str, password: Secret, tls: TLSOptions, environ: Mapping[str, str] | None = None,
) -> LoginResult:
    """Check the credentials at the registry, then store them as ``docker login`` does."""
    host, _ = registry_host(registry)
    if not username:
        raise UsageError("no username given", hint=f"pass {option('username')}, or answer the prompt")
    if not password:
        raise UsageError("empty password", hint=f"pipe it with {option('password_stdin')}, or answer the prompt")
    creds = Credentials(username, password, source="login")
    scheme = verify_login(host, creds, tls)
    stored = store_credentials(host, creds, environ=environ)
    helper = stored.startswith("docker-credential-")
    return LoginResult(host, username, stored, helper, scheme)


def logout(registry: str, *, environ: Mapping[str, str] | None = None) -> LogoutResult:
    host, _ = registry_host(registry)
    return LogoutResult(host, erase_credentials(host, environ=environ))


def tls_for(plain_from_url: bool | None, *, plain_http: bool, insecure: bool, ca_file: Path | None) -> TLSOptions:
    plain = plain_http or bool(plain_from_url)
    if ca_file is not None and not ca_file.is_file():
        raise UsageError(f"CA file {ca_file} does not exist", hint=f"check {option('ca_file')}")
    if plain and (insecure or ca_file is not None):
        raise UsageError(f"{option('plain_http')} cannot be combined with TLS options")
    return TLSOptions(plain_http=plain, insecure=insecure, ca_file=ca_file)
