"""A small OCI Distribution client: raw manifest bytes, verified streamed blobs, resumable uploads.

Spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpx

from arcgap.errors import (
    ArcgapError,
    AuthError,
    Fault,
    IntegrityError,
    NetworkError,
    NotFoundError,
    RegistryDetail,
    RegistryError,
    TLSError,
    UsageError,
)
from arcgap.oci.digest import Digest, Verifier, verified_chunks
from arcgap.oci.mediatypes import MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, is_manifest, sniff_media_type
from arcgap.registry.auth import Authenticator, repo_scope
from arcgap.registry.bodyread import body_chunks
from arcgap.registry.credentials import Credentials
from arcgap.registry.transport import RetryPolicy, TLSOptions, make_http_client

CHUNK_BYTES = 512 * 1024  # measured: smaller chunks keep RSS low and are no slower
UPLOAD_CHUNK_BYTES = 16 * 1024 * 1024  # bounded memory per upload; each PATCH can be re-sent
MAX_TAG_PAGES = 10_000  # a tags list longer than this is a registry that keeps linking to new pages


@dataclass(frozen=True)
class FetchedManifest:
    raw: bytes
    media_type: str
    digest: Digest


def _decode_errors(resp: httpx.Response) -> tuple[tuple[str, ...], str]:
    """Codes and messages from the registry's ``{"errors": [{"code", "message"}]}`` body."""
    try:
        body = resp.read()
        doc = json.loads(body[:65536]) if body else {}
        errors = doc.get("errors") if isinstance(doc, dict) else None
    except (ValueError, httpx.HTTPError):
        return (), ""
    if not isinstance(errors, list):
        return (), ""
    codes, messages = [], []
    for err in errors:
        if isinstance(err, dict):
            code = str(err.get("code", ""))
            codes.append(code)
            msg = str(err.get("message", "")).strip()
            messages.append(f"{code}: {msg}" if msg else code)
    return tuple(codes), "; ".join(messages)


class _Body:
    """A re-iterable request body over a list of chunks: re-sendable on retry, never joined into one copy."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)


def _upload_lost(exc: ArcgapError) -> bool:
    """A 404 or BLOB_UPLOAD_* answer on an upload location: the registry no longer knows the session."""
    codes = getattr(exc, "codes", ())
    return isinstance(exc, NotFoundError) or "BLOB_UPLOAD_UNKNOWN" in codes or "BLOB_UPLOAD_INVALID" in codes


def _drop_prefix(chunks: list[bytes], n: int) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        if n >= len(chunk):
            n -= len(chunk)
            continue
        out.append(chunk[n:] if n else chunk)
        n = 0
    return out


class RegistryClient:
    """One registry host. Safe to share between threads (httpx pool + locked token cache).

    Its errors are neutral: each carries a :class:`~arcgap.errors.RegistryDetail` and this client as
    ``origin``, and no hint; the layer that knows what the registry is for (source or target) explains them.
    """

    def __init__(
        self,
        registry: str,
        *,
        push: bool = False,
        credentials: Credentials | None = None,
        tls: TLSOptions | None = None,
        retry: RetryPolicy | None = None,
        max_connections: int = 8,
    ) -> None:
        self.registry = registry
        self.tls = tls or TLSOptions()
        self.retry = retry or RetryPolicy()
        self.base_url = f"{self.tls.scheme}://{registry}"
        self._http = make_http_client(registry, self.tls, max_connections=max_connections)
        self.auth = Authenticator(self._http, registry=registry, credentials=credentials)
        self._pinged = False
        # A client that pushes asks for pull,push even to read, so one cached token serves every request.
        self._read_actions = "pull,push" if push else "pull"

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------------

    def _error(self, cls: type[ArcgapError], message: str, *, operation: str, fault: str, status: int = 0,
               codes: tuple[str, ...] = ()) -> ArcgapError:
        """A neutral error of this registry: no hint, the facts in ``detail``, this client as ``origin``."""
        return self._claim(cls(message, detail=RegistryDetail(self.registry, operation, fault, status, codes)))

    def _claim(self, exc: ArcgapError) -> ArcgapError:
        if exc.origin is None:
            exc.origin = self
        return exc

    def _transport_error(self, exc: Exception, what: str) -> ArcgapError:
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return self._error(TLSError, f"{what}: TLS certificate of {self.registry} not trusted",
                               operation=what, fault=Fault.TLS_UNTRUSTED)
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "SSL" in text:
            return self._error(TLSError, f"{what}: TLS handshake with {self.registry} failed ({text[:120]})",
                               operation=what, fault=Fault.TLS_HANDSHAKE)
        return self._error(
            NetworkError,
            f"{what}: cannot reach {self.base_url}: {type(exc).__name__}{': ' + text[:120] if text else ''}",
            operation=what, fault=Fault.UNREACHABLE,
        )

    def ping(self) -> None:
        """GET /v2/ once: learns the auth challenge and fails early on TLS or reachability problems."""
        if self._pinged:
            return
        resp = self._send("GET", "/v2/", scopes=frozenset(), what=f"connecting to {self.registry}", ping=True)
        if resp.status_code == 401:
            self.auth.set_challenge(resp.headers.get("www-authenticate"))
        elif resp.status_code >= 400:
            raise self._error(
                RegistryError,
                f"{self.registry} does not answer as a container registry (GET /v2/ → {resp.status_code})",
                operation=f"connecting to {self.registry}", fault=Fault.NOT_A_REGISTRY, status=resp.status_code,
            )
        self._pinged = True

    def _send(
        self,
        method: str,
        url: str,
        *,
        scopes: frozenset[str],
        what: str,
        headers: dict[str, str] | None = None,
        content: bytes | _Body | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        ping: bool = False,
        ok: tuple[int, ...] = (),
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send with auth and retries; raise the mapped error unless the status is < 400 or in ``ok``."""
        if not ping:
            self.ping()
        full = httpx.URL(url) if url.startswith("http") else httpx.URL(self.base_url + url)
        if params:
            full = full.copy_merge_params(params)  # keep upload state already in the query
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            hdrs = dict(headers or {})
            if not ping:
                try:
                    auth = self.auth.header(scopes)
                except ArcgapError as exc:
                    raise self._claim(exc) from None
                if auth and httpx.URL(self.base_url).host == full.host:
                    hdrs["Authorization"] = auth
            try:
                req = self._http.build_request(method, full, headers=hdrs, content=content)
                resp = self._http.send(req, stream=stream, follow_redirects=follow_redirects)
            except httpx.TransportError as exc:
                err = self._transport_error(exc, what)
                # Refused connections get a short grace (a registry restarting), not the full backoff.
                limit = min(3, self.retry.attempts) if isinstance(exc, httpx.ConnectError) else self.retry.attempts
                if isinstance(err, TLSError) or attempt >= limit or not idempotent:
                    raise err from None
                time.sleep(self.retry.delay(attempt))
                continue
            status = resp.status_code
            if status == 401 and not ping and not refreshed:
                # Token expired or challenge changed: learn it again and retry once with a fresh token.
                self.auth.set_challenge(resp.headers.get("www-authenticate"))
                self.auth.invalidate(scopes)
                resp.close()
                refreshed = True
                continue
            if status in self.retry.statuses and attempt < self.retry.attempts:
                delay = self.retry.delay(attempt, resp.headers.get("retry-after"))
                resp.close()
                time.sleep(delay)
                continue
            if status < 400 or status in ok or ping:
                return resp
            raise self._status_error(resp, what)

    def _status_error(self, resp: httpx.Response, what: str) -> ArcgapError:
        codes, detail = _decode_errors(resp)
        resp.close()
        status = resp.status_code
        suffix = f": {detail}" if detail else ""
        message = f"{what}: {status} {resp.reason_phrase}{suffix}"
        kind: tuple[type[ArcgapError], str] = {
            401: (AuthError, Fault.UNAUTHORIZED), 403: (AuthError, Fault.DENIED), 404: (NotFoundError, Fault.NOT_FOUND),
        }.get(status, (RegistryError, Fault.ANSWER))
        if status in self.retry.statuses:
            kind, message = (NetworkError, Fault.TRANSIENT), f"{message} (gave up after {self.retry.attempts} attempts)"
        return self._error(kind[0], message, operation=what, fault=kind[1], status=status, codes=codes)

    # -- manifests ----------------------------------------------------------------------------------------

    def get_manifest(self, repository: str, ref: str) -> FetchedManifest:
        """GET a manifest by tag or digest; the raw bytes are kept and their digest computed and checked."""
        what = f"{self.registry}/{repository}:{ref}" if ":" not in ref else f"{self.registry}/{repository}@{ref}"
        resp = self._send(
            "GET",
            f"/v2/{repository}/manifests/{ref}",
            scopes=frozenset({repo_scope(repository, self._read_actions)}),
            what=f"fetching manifest {what}",
            headers={"Accept": MANIFEST_ACCEPT},
            stream=True,
        )
        try:
            raw = b""
            for chunk in resp.iter_bytes():
                raw += chunk
                if len(raw) > MAX_MANIFEST_BYTES:
                    raise RegistryError(f"{what}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
        except httpx.TransportError as exc:
            raise self._transport_error(exc, f"fetching manifest {what}") from None
        finally:
            resp.close()
        digest = Digest.of(raw)
        if ref.startswith("sha256:") and str(digest) != ref:
            raise IntegrityError(f"manifest {what}: content hashes to {digest}", hint="the registry is serving "
                                 "content that does not match its digest; report it to the registry operator")
        header = resp.headers.get("docker-content-digest")
        if header and header.startswith("sha256:") and header != str(digest):
            raise IntegrityError(f"manifest {what}: registry says {header} but content hashes to {digest}")
        content_type = resp.headers.get("content-type", "").split(";")[0].strip()
        media_type = content_type if is_manifest(content_type) else (sniff_media_type(raw) or content_type)
        return FetchedManifest(raw=raw, media_type=media_type, digest=digest)

    def head_manifest(self, repository: str, ref: str) -> Digest | None:
        """The digest a tag points at, or None when the tag does not exist."""
        resp = self._send(
            "HEAD",
            f"/v2/{repository}/manifests/{ref}",
            scopes=frozenset({repo_scope(repository, self._read_actions)}),
            what=f"checking {self.registry}/{repository}:{ref}",
            headers={"Accept": MANIFEST_ACCEPT},
            ok=(404,),
        )
        if resp.status_code == 404:
            return None
        header = resp.headers.get("docker-content-digest")
        if header:
            try:
                return Digest.parse(header)
            except UsageError:  # the registry's answer is wrong, not the command line
                what = f"checking {self.registry}/{repository}:{ref}"
                raise self._error(RegistryError, f"{what}: {self.registry} answered with a malformed "
                                  f"Docker-Content-Digest header {header[:80]!r}", operation=what,
                                  fault=Fault.MALFORMED, status=resp.status_code) from None
        return self.get_manifest(repository, ref).digest

    def put_manifest(self, repository: str, ref: str, raw: bytes, media_type: str, *, push_scope: bool = True) -> None:
        what = f"pushing manifest {self.registry}/{repository}{'@' if ref.startswith('sha256:') else ':'}{ref}"
        resp = self._send(
            "PUT",
            f"/v2/{repository}/manifests/{ref}",
            scopes=frozenset({repo_scope(repository, "pull,push")}),
            what=what,
            headers={"Content-Type": media_type},
            content=raw,
        )
        expected = str(Digest.of(raw))
        got = resp.headers.get("docker-content-digest")
        if got and got != expected:
            raise IntegrityError(f"{what}: registry stored it as {got}, expected {expected}")

    def list_tags(self, repository: str) -> list[str]:
        """Every tag of ``repository``, following ``Link: <…>; rel="next"`` pages (distribution v3, Harbor, …)."""
        what = f"listing tags of {self.registry}/{repository}"
        tags: list[str] = []
        url: str | None = f"/v2/{repository}/tags/list"
        seen: set[str] = set()
        while url:
            if url in seen or len(seen) >= MAX_TAG_PAGES:
                raise RegistryError(f"{what}: the registry's pages do not end (page {len(seen) + 1}: {url})")
            seen.add(url)
            resp = self._send("GET", url, scopes=frozenset({repo_scope(repository, self._read_actions)}), what=what)
            try:
                doc = resp.json()
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                raise RegistryError(f"{what}: the answer is not a JSON object")
            tags.extend(t for t in (doc.get("tags") or []) if isinstance(t, str))
            following = next_link(resp.headers.get("link", ""))
            url = None if following is None else (
                following if following.startswith(("http://", "https://")) else self.base_url + following)
        return tags

    # -- blobs --------------------------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: Digest, *, push_scope: bool = False) -> bool:
        actions = "pull,push" if push_scope else "pull"
        resp = self._send(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            scopes=frozenset({repo_scope(repository, actions)}),
            what=f"checking blob {digest.short} in {self.registry}/{repository}",
            follow_redirects=True,
            ok=(404,),
        )
        return resp.status_code == 200

    def stream_blob(self, repository: str, digest: Digest, size_bytes: int, *, what: str = "") -> Iterator[bytes]:
        """Yield the blob's bytes; verified by size and digest before the last chunk is released.

        A connection lost mid-blob is resumed with a Range request from the bytes already passed on.
        """
        what = what or f"blob {digest} in {self.registry}/{repository}"
        return verified_chunks(self._download(repository, digest, what), Verifier(digest, size_bytes, what=what))

    def _download(self, repository: str, digest: Digest, what: str) -> Iterator[bytes]:
        """The blob's raw bytes, resumed with a Range request after a lost connection (unverified)."""
        offset = 0
        attempt = 0
        while True:
            attempt += 1
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            resp = self._send(
                "GET",
                f"/v2/{repository}/blobs/{digest}",
                scopes=frozenset({repo_scope(repository, self._read_actions)}),
                what=f"downloading {what}",
                headers=headers,
                stream=True,
                follow_redirects=True,
            )
            try:
                skip = offset if (offset and resp.status_code == 200) else 0  # server ignored Range
                for chunk in _body_chunks(resp):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk = chunk[skip:]
                        skip = 0
                    offset += len(chunk)
                    yield chunk
                return
            except httpx.TransportError as exc:
                if attempt >= self.retry.attempts:
                    raise self._transport_error(exc, f"downloading {what}") from None
                time.sleep(self.retry.delay(attempt))
            finally:
                resp.close()

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        """Cross-repository mount; False when the registry would rather have the bytes."""
        resp = self._send(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            scopes=frozenset({repo_scope(repository, "pull,push"), repo_scope(from_repository, "pull")}),
            what=f"mounting blob {digest.short} into {self.registry}/{repository}",
            params={"mount": str(digest), "from": from_repository},
        )
        if resp.status_code == 201:
            return True
        location = resp.headers.get("location")
        if location:
            self._cancel_upload(repository, location)
        return False

    def _absolute(self, location: str) -> str:
        return location if location.startswith("http") else self.base_url + location

    def _cancel_upload(self, repository: str, location: str) -> None:
        # Best effort: the registry purges abandoned uploads itself.
        with contextlib.suppress(ArcgapError):
            self._send("DELETE", self._absolute(location), scopes=frozenset({repo_scope(repository, "pull,push")}),
                       what="cancelling upload", ok=(404, 405, 400))

    def upload_blob(self, repository: str, digest: Digest, chunks: Iterable[bytes], *, what: str = "") -> int:
        """Upload from ``chunks`` (which should verify themselves) and commit with the digest.

        Data goes out in PATCH requests of at most UPLOAD_CHUNK_BYTES, each re-sendable on transient
        failure; the final PUT carries the digest. If ``chunks`` raises (a corrupt bundle), the upload is
        cancelled and nothing is committed. Returns the number of bytes sent.
        """
        what = what or f"blob {digest.short} to {self.registry}/{repository}"
        scopes = frozenset({repo_scope(repository, "pull,push")})
        location = self._start_upload(repository, what)
        sent = 0
        buf: list[bytes] = []  # the reader's own chunks, not copied: one pending PATCH worth
        buffered = 0
        try:
            for chunk in chunks:
                buf.append(chunk)
                buffered += len(chunk)
                if buffered >= UPLOAD_CHUNK_BYTES:
                    try:
                        location = self._patch(repository, location, buf, sent, what)
                    except (NotFoundError, RegistryError) as exc:
                        if not _upload_lost(exc):
                            raise
                        if sent:
                            raise self._lost(exc, what, sent) from None
                        # The first chunk: every byte is still here, so start a new upload once.
                        location = self._start_upload(repository, what)
                        try:
                            location = self._patch(repository, location, buf, 0, what)
                        except (NotFoundError, RegistryError) as again:
                            raise self._lost(again, what, 0) from None
                    sent += buffered
                    # Clear in place: httpx request objects linger in reference cycles until the GC runs,
                    # and they point at this list; emptying it frees the chunks now.
                    buf.clear()
                    buffered = 0
        except BaseException:
            self._cancel_upload(repository, location)
            raise
        for fresh_start in (False, True):
            try:
                self._send(
                    "PUT",
                    self._start_upload(repository, what) if fresh_start else location,
                    scopes=scopes,
                    what=f"committing {what}",
                    params={"digest": str(digest)},
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(buffered)},
                    content=_Body(buf),
                )
                break
            except (NotFoundError, RegistryError) as exc:
                if not _upload_lost(exc):
                    raise
                # A retried PUT finds its session used up when the first one committed and only the answer
                # was lost; a restarted registry forgets sessions (distribution signs them with its secret).
                if self.blob_exists(repository, digest, push_scope=True):
                    break
                if sent or fresh_start:
                    raise self._lost(exc, what, sent) from None
        buf.clear()  # as above: the finished request may linger in a cycle; drop its chunks now
        return sent + buffered

    def _start_upload(self, repository: str, what: str) -> str:
        scopes = frozenset({repo_scope(repository, "pull,push")})
        resp = self._send("POST", f"/v2/{repository}/blobs/uploads/", scopes=scopes, what=f"starting upload of {what}")
        if not resp.headers.get("location"):
            raise RegistryError(f"starting upload of {what}: registry gave no upload location")
        return self._absolute(resp.headers["location"])

    def _lost(self, exc: ArcgapError, what: str, sent: int) -> NetworkError:
        return NetworkError(
            f"uploading {what}: the registry lost the upload after {sent} bytes ({type(exc).__name__})",
            hint="the registry restarted or the connection broke mid-chunk; run the same command again: "
            "blobs already at the target are skipped",
        )

    def _patch(self, repository: str, location: str, chunks: list[bytes], start: int, what: str) -> str:
        scopes = frozenset({repo_scope(repository, "pull,push")})
        size = sum(len(c) for c in chunks)
        for attempt in range(1, self.retry.attempts + 1):
            try:
                resp = self._send(
                    "PATCH",
                    location,
                    scopes=scopes,
                    what=f"uploading {what}",
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{start}-{start + size - 1}",
                        "Content-Length": str(size),
                    },
                    content=_Body(chunks),
                    idempotent=False,
                    ok=(416,),
                )
                if resp.status_code != 416:
                    return self._absolute(resp.headers.get("location") or location)
                resp.close()
            except NetworkError:
                if attempt == self.retry.attempts:
                    raise
            # The registry may have kept part of the chunk: ask where it stands and resend the rest.
            status = self._send("GET", location, scopes=scopes, what=f"resuming {what}", ok=(404,))
            if status.status_code == 404:
                # distribution keeps the offset in the signed _state: once part of the chunk landed, the
                # location we hold is refused (BLOB_UPLOAD_INVALID) and the session cannot be resumed.
                raise self._status_error(status, f"resuming {what}")
            rng = status.headers.get("range", "")
            if status.status_code == 204 and rng.startswith("0-"):
                # distribution answers "0-0" for an empty upload (and for a 1-byte one): read it as empty.
                have = 0 if rng == "0-0" else int(rng[2:]) + 1 if rng[2:].isdigit() else start
                if have > start:
                    chunks = _drop_prefix(chunks, have - start)
                    size -= have - start
                    start = have
            location = self._absolute(status.headers.get("location") or location)
            if size <= 0:
                return location
        raise RegistryError(f"uploading {what}: the registry did not accept the chunk at offset {start}")


def _body_chunks(resp: httpx.Response) -> Iterator[bytes]:
    """A blob response's bytes in pieces of ``CHUNK_BYTES`` (the last may be shorter); see bodyread."""
    return body_chunks(resp, CHUNK_BYTES)


def next_link(header: str) -> str | None:
    """The ``rel="next"`` target of an RFC 8288 ``Link`` header (``<url>; rel="next"``, several comma-separated
    links, ``rel`` quoted or not, among other relation types), or None."""
    for match in re.finditer(r"<([^>]*)>([^,<]*)", header):
        for param in match.group(2).split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').lower().split():
                return match.group(1).strip()
    return None
