"""The distribution token spec, minus HTTP: scopes, grants, and ES256 JWTs the registry will accept.

Distribution 2.8 (``auth.token``) verifies a JWT whose header carries ``x5c`` (the signing certificate,
base64 DER) chaining to ``rootcertbundle``, and whose claims are ``iss``, ``sub``, ``aud`` (a string: the
service), ``exp``, ``nbf``, ``iat``, ``jti`` and ``access: [{type, name, actions}]``.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from devtools.pki import TokenSigner

TOKEN_TTL_S = 300
ANONYMOUS_ACTIONS = frozenset({"pull"})


@dataclass(frozen=True)
class Access:
    """One ``access`` entry: e.g. type "repository", name "arcdata/arc-dns", actions ("pull", "push")."""

    type: str
    name: str
    actions: tuple[str, ...]

    def as_claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def parse_scope(scope: str) -> list[Access]:
    """Parse one ``scope`` parameter (``type:name:actions``; several may be space-separated).

    The name may itself contain ':' (e.g. a registry host with a port), so split on the first and last.
    """
    out: list[Access] = []
    for item in scope.split():
        rtype, sep1, rest = item.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep1 and sep2 and rtype and name):
            continue
        out.append(Access(rtype, name, tuple(a for a in actions.split(",") if a)))
    return out


def grant(requested: Iterable[Access], *, authenticated: bool) -> list[Access]:
    """Authenticated users get every action they ask for; anonymous users get ``pull`` only.

    Entries left without actions are dropped; entries for the same resource are merged.
    """
    merged: dict[tuple[str, str], list[str]] = {}
    for acc in requested:
        actions = merged.setdefault((acc.type, acc.name), [])
        for action in acc.actions:
            allowed = authenticated or action in ANONYMOUS_ACTIONS
            if allowed and action not in actions:
                actions.append(action)
    return [Access(t, n, tuple(a)) for (t, n), a in merged.items() if a]


def check_basic(header: str | None, username: str, password: str) -> bool | None:
    """None when there is no Basic header, True for the right user and password, False otherwise."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, pw = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user, username) and hmac.compare_digest(pw, password)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_jwt(signer: TokenSigner, claims: dict[str, object]) -> str:
    """Compact JWS, ES256 (raw r||s signature), header with ``x5c`` = [the signer's certificate]."""
    header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(signer.cert_der).decode("ascii")]}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    der = signer.key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def mint_token(
    signer: TokenSigner,
    *,
    issuer: str,
    service: str,
    subject: str,
    access: Sequence[Access],
    ttl: int = TOKEN_TTL_S,
    now: float | None = None,
) -> tuple[str, int, int]:
    """A signed token for ``access``; returns ``(jwt, expires_in, issued_at_epoch)``."""
    iat = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "iss": issuer,
        "sub": subject,
        "aud": service,
        "exp": iat + ttl,
        "nbf": iat - 10,
        "iat": iat,
        "jti": uuid.uuid4().hex,
        "access": [a.as_claim() for a in access],
    }
    return sign_jwt(signer, claims), ttl, iat


def decode_claims(token: str) -> dict[str, object]:
    """The (unverified) claims of a compact JWT, for tests' assertions."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
