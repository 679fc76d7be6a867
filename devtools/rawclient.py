"""A minimal OCI Distribution client on plain httpx, independent of arcgap: the tests' oracle and pusher.

It answers ``WWW-Authenticate`` challenges itself: Basic (send the credentials) and Bearer (fetch a token
from the realm with the request's scopes, anonymously or with Basic credentials, cache it per scope set).
An explicit CA file always wins over the environment (``trust_env=False``; ``SSL_CERT_FILE`` and
friends are ignored). With ``netns``, every request is sent from a thread inside that network namespace.
"""

from __future__ import annotations

import base64
import re
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from devtools.netns import run_in_netns

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPES = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)
ACCEPT_MANIFESTS = ", ".join(MANIFEST_MEDIA_TYPES)

_PARAM_RE = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
_TOKEN_MARGIN_S = 10.0


class RegistryHTTPError(RuntimeError):
    """An unexpected HTTP status from the registry or its token server."""

    def __init__(self, response: httpx.Response, what: str) -> None:
        self.status_code = response.status_code
        self.body = response.text[:500]
        super().__init__(f"{what}: HTTP {response.status_code} {self.body}")


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``('bearer', {'realm': …, 'service': …, 'scope': …})`` from one WWW-Authenticate value."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for key, value in _PARAM_RE.findall(rest):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key.lower()] = value
    return scheme.lower(), params


def _basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def repo_scope(repository: str, actions: str = "pull") -> str:
    return f"repository:{repository}:{actions}"


def make_verify(url: str, ca_file: Path | None) -> ssl.SSLContext | bool:
    """The ``verify`` for httpx: the CA file alone when given, the system store for https, False for http."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    return ssl.create_default_context() if url.startswith("https://") else False


class RawClient:
    """Registry API calls with challenge handling. Thread-safe; close() when done (or use ``with``)."""

    def __init__(
        self,
        url: str,
        *,
        ca_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        netns: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.base = url.rstrip("/")
        self.netns = netns
        self._creds = (username, password or "") if username else None
        self._http = httpx.Client(verify=make_verify(self.base, ca_file), trust_env=False, timeout=timeout)
        self._lock = threading.Lock()
        self._basic = False
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self.tokens_fetched = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------------
    def _send(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return run_in_netns(self.netns, self._http.request, method, url, **kwargs)

    def _abs(self, path_or_url: str | httpx.URL) -> httpx.URL:
        return httpx.URL(self.base + "/").join(path_or_url)

    def _cached_auth(self, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            if self._basic and self._creds:
                return _basic_header(*self._creds)
            token = self._tokens.get(scopes)
        if token and token[1] > time.monotonic():
            return f"Bearer {token[0]}"
        return None

    def _fetch_token(self, params: Mapping[str, str], scopes: tuple[str, ...]) -> str:
        realm = params.get("realm")
        if not realm:
            raise RuntimeError("Bearer challenge without a realm")
        query: list[tuple[str, str]] = [("service", params["service"])] if "service" in params else []
        query += [("scope", s) for s in scopes]
        auth = httpx.BasicAuth(*self._creds) if self._creds else None
        resp = self._send("GET", realm, params=query, auth=auth)
        if resp.status_code != 200:
            raise RegistryHTTPError(resp, f"token from {realm}")
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        ttl = float(body.get("expires_in") or 60)
        with self._lock:
            self._tokens[scopes] = (token, time.monotonic() + max(ttl - _TOKEN_MARGIN_S, 1.0))
            self.tokens_fetched += 1
        return f"Bearer {token}"

    def _answer(self, challenge: str, scopes: tuple[str, ...]) -> str | None:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if not self._creds:
                return None
            with self._lock:
                self._basic = True
            return _basic_header(*self._creds)
        if scheme == "bearer":
            if not scopes and params.get("scope"):
                scopes = tuple(params["scope"].split())
            return self._fetch_token(params, scopes)
        return None

    def request(
        self,
        method: str,
        path_or_url: str | httpx.URL,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        replayable: bool = True,
    ) -> httpx.Response:
        """Send a request, answering one 401 challenge. ``replayable=False`` (streamed bodies) never resends:
        authenticate with a small replayable request on the same scopes first."""
        url = self._abs(path_or_url)
        scope_key = tuple(scopes)
        hdrs = dict(headers or {})
        auth = self._cached_auth(scope_key)
        if auth:
            hdrs["Authorization"] = auth
        resp = self._send(method, url, headers=hdrs, content=content)
        challenge = resp.headers.get("WWW-Authenticate")
        if resp.status_code != 401 or not challenge or not replayable:
            return resp
        auth = self._answer(challenge, scope_key)
        if auth is None:
            return resp
        hdrs["Authorization"] = auth
        return self._send(method, url, headers=hdrs, content=content)

    # -- API helpers -----------------------------------------------------------------------------------
    def ping(self) -> int:
        """Status of an unauthenticated ``GET /v2/`` (200, or 401 when auth is on)."""
        return self._send("GET", self._abs("/v2/")).status_code

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str]:
        """The exact manifest bytes and their Content-Type."""
        resp = self.request(
            "GET",
            f"/v2/{repo}/manifests/{ref}",
            scopes=[repo_scope(repo)],
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        if resp.status_code != 200:
            raise RegistryHTTPError(resp, f"GET manifest {repo}:{ref}")
        return resp.content, resp.headers.get("Content-Type", "").split(";")[0].strip()

    def manifest_digest(self, repo: str, ref: str) -> str | None:
        """``Docker-Content-Digest`` of a HEAD on the manifest, or None when it does not exist."""
        resp = self.request(
            "HEAD",
            f"/v2/{repo}/manifests/{ref}",
            scopes=[repo_scope(repo)],
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise RegistryHTTPError(resp, f"HEAD manifest {repo}:{ref}")
        return resp.headers.get("Docker-Content-Digest")

    def delete_manifest(self, repo: str, digest: str) -> None:
        resp = self.request("DELETE", f"/v2/{repo}/manifests/{digest}", scopes=[repo_scope(repo, "delete")])
        if resp.status_code not in (202, 404):
            raise RegistryHTTPError(resp, f"DELETE manifest {repo}@{digest}")

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=[repo_scope(repo)])
        if resp.status_code not in (200, 404):
            raise RegistryHTTPError(resp, f"HEAD blob {repo}@{digest}")
        return resp.status_code == 200

    def get_blob(self, repo: str, digest: str) -> bytes:
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", scopes=[repo_scope(repo)])
        if resp.status_code != 200:
            raise RegistryHTTPError(resp, f"GET blob {repo}@{digest}")
        return resp.content

    def list_tags(self, repo: str) -> list[str]:
        """All tags of ``repo`` (following ``Link`` pagination); [] when the repository does not exist."""
        tags: list[str] = []
        next_url: str | httpx.URL | None = f"/v2/{repo}/tags/list"
        while next_url is not None:
            resp = self.request("GET", next_url, scopes=[repo_scope(repo)])
            if resp.status_code == 404:
                return []
            if resp.status_code != 200:
                raise RegistryHTTPError(resp, f"GET tags of {repo}")
            tags += resp.json().get("tags") or []
            next_url = resp.links.get("next", {}).get("url")
        return tags

    def catalog(self) -> list[str]:
        """Every repository (``/v2/_catalog``, following ``Link``; distribution caps ``n`` at 1000)."""
        repos: list[str] = []
        next_url: str | httpx.URL | None = "/v2/_catalog?n=1000"
        while next_url is not None:
            resp = self.request("GET", next_url, scopes=["registry:catalog:*"])
            if resp.status_code != 200:
                raise RegistryHTTPError(resp, "GET catalog")
            repos += resp.json().get("repositories") or []
            next_url = resp.links.get("next", {}).get("url")
        return repos
