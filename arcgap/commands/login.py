"""``arcgap login`` / ``arcgap logout``: check credentials against a registry with the registry client (GET /v2/
with them, as ``docker login`` does), then store or forget them where docker keeps them (config.json, or its
credential helper when one is configured: then never in plain text)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from arcgap.commands.settings import split_scheme
from arcgap.errors import AuthError, UsageError, option
from arcgap.oci.reference import api_host, validate_registry
from arcgap.registry.client import RegistryClient
from arcgap.registry.credentials import Credentials, erase_credentials, store_credentials
from arcgap.registry.transport import TLSOptions
from arcgap.util.secret import Secret


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


def verify_login(host: str, creds: Credentials, tls: TLSOptions) -> str:
    """Check ``creds`` at ``host`` with the registry client (:meth:`RegistryClient.check_login`); returns the
    scheme the registry asked for. Wrong credentials raise AuthError, worded for the login."""
    api = api_host(host)  # docker.io's API lives elsewhere
    with RegistryClient(api, credentials=creds, tls=tls, max_connections=2) as client:
        try:
            return client.check_login()
        except AuthError as exc:
            status = exc.detail.status if exc.detail is not None else 0
            said = f"{status} {HTTPStatus(status).phrase}" if status in (401, 403) else exc.message
            raise AuthError(f"login to {host} refused: {said}", hint="check the username and password") from None


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
