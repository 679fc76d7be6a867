"""Registry authentication by challenge: anonymous, Basic, and Bearer tokens scoped per repository.

Errors are neutral (a :class:`~arcgap.errors.RegistryDetail`, no hint): the caller knows whose credentials
these are and says what to check.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from dataclasses import dataclass

import httpx

from arcgap.errors import AuthError, Fault, NetworkError, RegistryDetail
from arcgap.registry.credentials import Credentials

_PARAM_RE = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
TOKEN_MARGIN_S = 10.0


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-case: "basic" or "bearer"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """Parse one ``WWW-Authenticate`` value; quoted values may contain commas (``scope="…:pull,push"``)."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {}
    for key, value in _PARAM_RE.findall(rest):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key.lower()] = value
    return Challenge(scheme.lower(), params)


def repo_scope(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


class Authenticator:
    """Holds one registry's challenge and a cache of tokens keyed by their scope set. Thread-safe."""

    def __init__(self, http: httpx.Client, *, registry: str, credentials: Credentials | None) -> None:
        self._http = http
        self.registry = registry
        self._credentials = credentials
        self._challenge: Challenge | None = None
        self._tokens: dict[frozenset[str], tuple[str, float]] = {}
        self._fetching: dict[frozenset[str], threading.Lock] = {}
        self._lock = threading.Lock()
        self.tokens_fetched = 0
        self._refusal: AuthError | None = None  # set once: every later request stops before it is sent

    def __repr__(self) -> str:
        return f"Authenticator(registry={self.registry!r})"

    def _refused(self, message: str, *, fault: str = Fault.CREDENTIALS, status: int = 0) -> AuthError:
        """The credentials are missing or refused (``Fault.CREDENTIALS``), or the auth exchange broke."""
        return AuthError(message, detail=RegistryDetail(self.registry, f"authenticating to {self.registry}", fault,
                                                        status))

    def set_challenge(self, header: str | None) -> None:
        with self._lock:
            self._challenge = parse_challenge(header) if header else None

    @property
    def has_challenge(self) -> bool:
        return self._challenge is not None

    @property
    def scheme(self) -> str:
        """What the registry asked for: "basic", "bearer", or "none" (no challenge: it lets anyone in)."""
        challenge = self._challenge
        return challenge.scheme if challenge is not None else "none"

    def refuse(self, err: AuthError) -> None:
        """The credentials were refused in a way a fresh token cannot cure: stop every later request with ``err``."""
        with self._lock:
            if self._refusal is None:
                self._refusal = err

    def check_refused(self) -> None:
        """Raise the first refusal again (a new exception each time: several threads may raise it at once)."""
        refusal = self._refusal
        if refusal is not None:
            raise AuthError(refusal.message, hint=refusal.hint, detail=refusal.detail)

    def invalidate(self, scopes: frozenset[str], refused: str | None = None) -> None:
        """Forget the token for ``scopes`` (the registry refused it: expired or revoked).

        With ``refused`` (the Authorization value the registry turned down), only that token is forgotten: when
        parallel requests all meet the same expired token, the first fetches a new one and the rest use it.
        """
        with self._lock:
            cached = self._tokens.get(scopes)
            if cached is not None and (refused is None or refused == "Bearer " + cached[0]):
                del self._tokens[scopes]

    def header(self, scopes: frozenset[str]) -> str | None:
        """The Authorization value for a request needing ``scopes`` (None: anonymous access)."""
        self.check_refused()
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self._credentials
            if creds is None or creds.identity_token:
                raise self._refused(f"{self.registry} requires a username and password")
            raw = f"{creds.username}:{creds.password.reveal()}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if challenge.scheme == "bearer":
            return "Bearer " + self._token(challenge, scopes)
        raise self._refused(f"{self.registry} asks for unsupported authentication {challenge.scheme!r}",
                            fault=Fault.ANSWER)

    def _token(self, challenge: Challenge, scopes: frozenset[str]) -> str:
        with self._lock:
            key_lock = self._fetching.setdefault(scopes, threading.Lock())
        with key_lock:  # parallel requests for the same scopes wait for one token instead of each fetching
            self.check_refused()
            with self._lock:
                cached = self._tokens.get(scopes)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            token, lifetime = self._fetch_token(challenge, scopes)
            with self._lock:
                self._tokens[scopes] = (token, time.monotonic() + max(lifetime - TOKEN_MARGIN_S, 1.0))
            return token

    def _fetch_token(self, challenge: Challenge, scopes: frozenset[str]) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm:
            raise self._refused(f"{self.registry} sent a Bearer challenge without a realm", fault=Fault.ANSWER)
        service = challenge.params.get("service")
        creds = self._credentials
        query: list[tuple[str, str]] = []
        if service:
            query.append(("service", service))
        query.extend(("scope", s) for s in sorted(scopes))
        try:
            if creds is not None and creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.password.reveal(),
                    "client_id": "arcgap",
                    "scope": " ".join(sorted(scopes)),
                }
                if service:
                    form["service"] = service
                resp = self._http.post(realm, data=form)
            else:
                auth = (creds.username, creds.password.reveal()) if creds is not None else None
                resp = self._http.get(realm, params=query, auth=auth)
        except httpx.TransportError as exc:
            raise NetworkError(
                f"cannot reach the token server of {self.registry} ({httpx.URL(realm).host}): "
                f"{type(exc).__name__}",
                hint="check that the token server named by the registry is reachable from here",
                detail=RegistryDetail(self.registry, f"authenticating to {self.registry}", Fault.UNREACHABLE),
            ) from None
        self.tokens_fetched += 1
        if resp.status_code in (401, 403):
            who = f"user {creds.username!r}" if creds else "anonymous access"
            err = self._refused(f"{self.registry}: the token server refused {who} ({resp.status_code})",
                                status=resp.status_code)
            self.refuse(err)  # the same credentials would be refused for any other scope too
            raise err
        if resp.status_code != 200:
            raise self._refused(f"{self.registry}: token server answered {resp.status_code}", status=resp.status_code)
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError):
            token = None
            lifetime = 0.0
        if not isinstance(token, str) or not token:
            raise self._refused(f"{self.registry}: the token server's answer holds no token", fault=Fault.ANSWER)
        return token, lifetime
