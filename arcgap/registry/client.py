"""A small OCI Distribution client: raw manifest bytes, verified streamed blobs, resumable uploads.

Spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

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
from arcgap.oci.mediatypes import MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, is_index, is_manifest, sniff_media_type
from arcgap.oci.reference import api_host
from arcgap.registry.auth import Authenticator, repo_scope
from arcgap.registry.bodyread import RateWatch, Stalled, body_chunks, watch_body
from arcgap.registry.credentials import Credentials
from arcgap.registry.tlscause import EXPIRED, NOT_YET_VALID, OTHER_NAME, cause_of, verify_error
from arcgap.registry.transport import HostGate, RetryPolicy, StallPolicy, TLSOptions, make_http_client
from arcgap.registry.upload import NOT_ACTED, UPLOAD_CHUNK_BYTES, BlobUpload, Body, UploadTraits, storage_full
from arcgap.registry.uploadwatch import WATCHDOG, UploadWatch, WatchedBody

_T = TypeVar("_T")

CHUNK_BYTES = 512 * 1024  # measured: smaller chunks keep RSS low and are no slower
MAX_TAG_PAGES = 10_000  # a tags list longer than this is a registry that keeps linking to new pages
CATALOG_PAGE = 1000  # repositories a page: distribution 2.8 refuses n > 1000 (PAGINATION_NUMBER_INVALID)
MAX_CATALOG_PAGES = 10_000
CATALOG_SCOPE = "registry:catalog:*"


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
        stall: StallPolicy | None = None,
        upload_chunk_bytes: int = UPLOAD_CHUNK_BYTES,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.tls = tls or TLSOptions()
        self.retry = retry or RetryPolicy()
        self.stall = stall or StallPolicy()
        self.warn = warn or (lambda _text: None)  # a dropped stalled transfer is said here
        self.gate = HostGate(max_connections)  # fewer requests in flight while the host throttles
        self.gave_up = threading.Event()  # set once a request spent its whole retry budget: the others stop too
        self.base_url = f"{self.tls.scheme}://{api_host(registry)}"  # docker.io's API is registry-1.docker.io
        self._base = httpx.URL(self.base_url)
        self._spare_uploads: dict[str, str] = {}  # repository -> upload session started by prepare_push
        self._spare_lock = threading.Lock()
        self._http = make_http_client(registry, self.tls, max_connections=max_connections,
                                      read_timeout_s=self.stall.stall_s)
        self.auth = Authenticator(self._http, registry=registry, credentials=credentials)
        self._pinged = False
        self._ping_lock = threading.Lock()  # one GET /v2/ per client, whichever worker comes first
        self._ping_error: ArcgapError | None = None
        self._unsure_heads = 0  # HEADs of blobs answered 500, taken as missing (said once)
        # what the registry said about uploads, for every later upload
        self.upload_traits = UploadTraits(preferred_chunk=upload_chunk_bytes)
        self._offered: dict[tuple[str, Digest], str] = {}  # sessions refused mounts offered (202), not yet used
        self._offered_lock = threading.Lock()
        self._kept: dict[tuple[str, str], FetchedManifest] = {}  # check_manifest's answers, for get_manifest (once)
        self._kept_lock = threading.Lock()
        # A client that pushes asks for pull,push even to read, so one cached token serves every request.
        self.read_actions = "pull,push" if push else "pull"

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    def close(self) -> None:
        with self._spare_lock:
            spare, self._spare_uploads = self._spare_uploads, {}
        for repository, location in spare.items():
            self.cancel_upload(repository, location)
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------------

    def make_error(self, cls: type[ArcgapError], message: str, *, operation: str, fault: str, status: int = 0,
               codes: tuple[str, ...] = ()) -> ArcgapError:
        """A neutral error of this registry: no hint, the facts in ``detail``, this client as ``origin``."""
        return self._claim(cls(message, detail=RegistryDetail(self.registry, operation, fault, status, codes)))

    def _claim(self, exc: ArcgapError) -> ArcgapError:
        if exc.origin is None:
            exc.origin = self
        return exc

    def transport_error(self, exc: Exception, what: str) -> ArcgapError:
        text = str(exc)
        refused = verify_error(exc)
        if refused is not None:
            cause = cause_of(refused, self.registry)
            fault = {EXPIRED: Fault.TLS_EXPIRED, NOT_YET_VALID: Fault.TLS_EXPIRED, OTHER_NAME: Fault.TLS_OTHER_NAME,
                     }.get(cause.kind, Fault.TLS_UNTRUSTED)
            err = self.make_error(TLSError, f"{what}: {cause.text(self.registry)}", operation=what, fault=fault)
            if err.detail is not None:
                err.detail = dataclasses.replace(err.detail, names=cause.names)
            return err
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return self.make_error(TLSError, f"{what}: TLS certificate of {self.registry} not trusted",
                               operation=what, fault=Fault.TLS_UNTRUSTED)
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "SSL" in text:
            return self.make_error(TLSError, f"{what}: TLS handshake with {self.registry} failed ({text[:120]})",
                               operation=what, fault=Fault.TLS_HANDSHAKE)
        return self.make_error(
            NetworkError,
            f"{what}: cannot reach {self.base_url}: {type(exc).__name__}{': ' + text[:120] if text else ''}",
            operation=what, fault=Fault.UNREACHABLE,
        )

    def ping(self) -> None:
        """GET /v2/ once for every worker: learns the auth challenge and fails early on TLS or reachability
        problems. Workers that ask while it is under way wait for it; a failed ping fails them all alike."""
        if self._pinged:
            return
        with self._ping_lock:
            if self._ping_error is not None:
                raise self._ping_error
            if self._pinged:
                return
            try:
                self._ping()
            except ArcgapError as exc:
                self._ping_error = exc
                raise

    def _ping(self) -> None:
        resp = self.send("GET", "/v2/", scopes=frozenset(), what=f"connecting to {self.registry}", ping=True)
        if resp.status_code == 401:
            self.auth.set_challenge(resp.headers.get("www-authenticate"))
        elif resp.status_code >= 400:
            raise self.make_error(
                RegistryError,
                f"{self.registry} does not answer as a container registry (GET /v2/ → {resp.status_code})",
                operation=f"connecting to {self.registry}", fault=Fault.NOT_A_REGISTRY, status=resp.status_code,
            )
        self._pinged = True

    def check_login(self) -> str:
        """As ``docker login`` does: GET /v2/ anonymously for the challenge, then with the credentials (Basic, or
        a token fetched with them and no scope); returns the scheme the registry asked for (see
        :attr:`Authenticator.scheme`). Refused credentials raise AuthError."""
        self.ping()
        if self.auth.has_challenge:
            self.send("GET", "/v2/", scopes=frozenset(), what=f"login to {self.registry}")
        return self.auth.scheme

    def send(
        self,
        method: str,
        url: str,
        *,
        scopes: frozenset[str],
        what: str,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        ping: bool = False,
        ok: tuple[int, ...] = (),
        mutates: bool = False,
        at_once: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send with auth and retries; raise the mapped error unless the status is < 400 or in ``ok``.

        ``mutates``: the request changes state and the caller settles every outcome, asking the registry before
        anything is sent again: no retry after a broken connection or a retryable status, every status is
        returned (a lost answer raises NetworkError). A 401 or 403 that a fresh token cannot cure stops this
        client: every later request raises the same AuthError without being sent. A status in ``at_once`` is
        returned without a retry (the caller has a better answer to it than waiting).
        """
        if not ping:
            self.ping()
        full = httpx.URL(url) if url.startswith("http") else httpx.URL(self.base_url + url)
        if params:
            full = full.copy_merge_params(params)  # keep upload state already in the query
        refreshed = False
        clock = self.retry.clock(self.gave_up)
        connect_failures = 0
        while True:
            hdrs = dict(headers or {})
            auth = None
            if not ping and _same_origin(full, self._base):
                # Credentials go to the registry's own origin only: never to a CDN or another host it names.
                try:
                    auth = self.auth.header(scopes)
                except ArcgapError as exc:
                    raise self._claim(exc) from None
                if auth:
                    hdrs["Authorization"] = auth
            try:
                resp = self._exchange(method, full, hdrs, content, stream=stream, follow_redirects=follow_redirects,
                                      what=what)
            except httpx.TransportError as exc:
                err = self.transport_error(exc, what)
                # Refused connections get a short grace (a registry restarting), not the full budget; so does a
                # handshake that broke off (no request went out: an overloaded server or balancer answered it
                # with an alert), while a certificate refused is final.
                connect_failures += isinstance(exc, httpx.ConnectError)
                final_tls = isinstance(err, TLSError) and not (
                    err.detail is not None and err.detail.fault == Fault.TLS_HANDSHAKE
                    and isinstance(exc, httpx.ConnectError))
                if final_tls or mutates or connect_failures >= self.retry.connect_attempts or not clock.wait():
                    if not isinstance(err, TLSError) and not mutates:
                        err.message = f"{err.message} ({clock.gave_up()})"
                        err.args = (err.message,)
                    raise err from None
                continue
            status = resp.status_code
            if status in (401, 403) and not ping:
                sent = hdrs.get("Authorization", "")
                if refreshed or not self._curable(resp, sent):
                    if status in ok:
                        return resp  # the caller has another way (a refused tag list: one request per digest)
                    err = self.status_error(resp, what)
                    if isinstance(err, AuthError):
                        self.auth.refuse(err)  # the run stops: no other request goes out with these credentials
                    raise err
                # Token expired, or the challenge is new to us: learn it and try once more with a fresh token.
                if resp.headers.get("www-authenticate"):
                    self.auth.set_challenge(resp.headers.get("www-authenticate"))
                self.auth.invalidate(scopes, sent or None)
                refreshed = True
                if mutates and not (content is None or isinstance(content, (bytes, Body))):
                    return resp  # a streamed body cannot go again: the caller starts over
                resp.close()
                continue
            if status in at_once:
                return resp
            if status in self.retry.statuses and not mutates and not storage_full(resp):
                retry_after = resp.headers.get("retry-after")
                if clock.wait(retry_after):
                    resp.close()
                    continue
                raise self.status_error(resp, what, gave_up=clock.gave_up())
            if status < 400 or status in ok or ping or mutates:
                return resp
            raise self.status_error(resp, what)

    def _exchange(self, method: str, url: httpx.URL, headers: dict[str, str],
                  content: bytes | Iterable[bytes] | None, *, stream: bool, follow_redirects: bool,
                  what: str) -> httpx.Response:
        """One request through the host's gate; its body is watched for stalls and trickles (and read now,
        unless ``stream``), so a body at a byte a second ends as a timeout the caller retries or resumes; an
        upload's body and the wait for its answer are watched too (:mod:`arcgap.registry.uploadwatch`)."""
        upload = None
        if content is not None and not isinstance(content, (bytes, bytearray, memoryview, str)):  # an upload (blob)
            upload = UploadWatch(self.stall.stall_s, self.stall.min_bytes_per_s, what=what, warn=self.warn)
            content = WatchedBody(content, upload)
        req = self._http.build_request(method, url, headers=headers, content=content)
        self.gate.acquire()
        status: int | None = None
        if upload is not None:
            WATCHDOG.add(upload)
        try:
            resp = self._http.send(req, stream=True, follow_redirects=follow_redirects)
            status = resp.status_code
        finally:
            if upload is not None:
                WATCHDOG.remove(upload)
            self.gate.release(status)
        watch_body(resp, RateWatch(self.stall.stall_s, self.stall.min_bytes_per_s, what=f"the answer to {what}",
                                   warn=self.warn))
        if not stream:
            try:
                resp.read()
            except BaseException:
                resp.close()
                raise
        return resp

    def _curable(self, resp: httpx.Response, sent: str) -> bool:
        """Can a fresh token (or the credentials, when none were sent) turn this 401/403 around?"""
        if resp.status_code == 403:
            return sent.startswith("Bearer ")  # a token may have been cut short; a password refusal is final
        if not sent:
            return True  # the challenge was unknown (an anonymous /v2/): answer it
        header = resp.headers.get("www-authenticate") or ""
        return not (sent.startswith("Basic ") and header.lower().startswith("basic"))

    def error_codes(self, resp: httpx.Response) -> tuple[str, ...]:
        return _decode_errors(resp)[0]

    def status_error(self, resp: httpx.Response, what: str, *, gave_up: str = "") -> ArcgapError:
        codes, detail = _decode_errors(resp)
        resp.close()
        status = resp.status_code
        suffix = f": {detail}" if detail else ""
        message = f"{what}: {status} {resp.reason_phrase}{suffix}"
        kind: tuple[type[ArcgapError], str] = {
            401: (AuthError, Fault.UNAUTHORIZED), 403: (AuthError, Fault.DENIED), 404: (NotFoundError, Fault.NOT_FOUND),
        }.get(status, (RegistryError, Fault.ANSWER))
        if storage_full(resp):
            kind = (RegistryError, Fault.STORAGE_FULL)
        elif "DIGEST_INVALID" in codes:
            kind = (RegistryError, Fault.DIGEST_REFUSED)
        elif status in self.retry.statuses:
            kind, message = (NetworkError, Fault.TRANSIENT), f"{message} ({gave_up or 'gave up'})"
        return self.make_error(kind[0], message, operation=what, fault=kind[1], status=status, codes=codes)

    # -- manifests ----------------------------------------------------------------------------------------

    def check_manifest(self, repository: str, ref: str) -> bool:
        """Whether the registry has ``ref``: a GET whose answer the next ``get_manifest(..., reuse=True)`` of
        the same reference is served (once: the resolve), so checking that an image exists and then resolving it
        costs one round trip, not a HEAD and a GET. Only "not found" is False; any other failure is raised."""
        try:
            fetched = self.get_manifest(repository, ref, reuse=True)  # a check before it (discovery) answered
        except NotFoundError:
            return False
        with self._kept_lock:
            self._kept[(repository, ref)] = fetched
        return True

    def get_manifest(self, repository: str, ref: str, *, reuse: bool = False) -> FetchedManifest:
        """GET a manifest by tag or digest; the raw bytes are kept and their digest computed and checked.
        ``reuse``: the answer :meth:`check_manifest` kept for this reference, if any, is taken instead (once);
        every other caller asks the registry what the reference points at now."""
        if reuse:
            with self._kept_lock:
                kept = self._kept.pop((repository, ref), None)
            if kept is not None:
                return kept
        what = f"{self.registry}/{repository}:{ref}" if ":" not in ref else f"{self.registry}/{repository}@{ref}"
        resp = self.send(
            "GET",
            f"/v2/{repository}/manifests/{ref}",
            scopes=frozenset({repo_scope(repository, self.read_actions)}),
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
            raise self.transport_error(exc, f"fetching manifest {what}") from None
        finally:
            resp.close()
        digest = Digest.of(raw)
        if ref.startswith("sha256:") and str(digest) != ref:
            raise IntegrityError(f"manifest {what}: content hashes to {digest}", hint="the registry is serving "
                                 "content that does not match its digest; report it to the registry operator")
        header = resp.headers.get("docker-content-digest")
        if header:
            claimed = self._header_digest(header, f"fetching manifest {what}", resp.status_code)
            actual = digest if claimed.algorithm == digest.algorithm else Digest.of(raw, claimed.algorithm)
            if claimed != actual:
                raise IntegrityError(f"manifest {what}: registry says {header} but content hashes to {actual}")
        content_type = resp.headers.get("content-type", "").split(";")[0].strip()
        media_type = content_type if is_manifest(content_type) else (sniff_media_type(raw) or content_type)
        return FetchedManifest(raw=raw, media_type=media_type, digest=digest)

    def head_manifest(self, repository: str, ref: str) -> Digest | None:
        """The digest a tag points at, or None when the tag does not exist."""
        resp = self.send(
            "HEAD",
            f"/v2/{repository}/manifests/{ref}",
            scopes=frozenset({repo_scope(repository, self.read_actions)}),
            what=f"checking {self.registry}/{repository}:{ref}",
            headers={"Accept": MANIFEST_ACCEPT},
            ok=(404,),
        )
        if resp.status_code == 404:
            return None
        header = resp.headers.get("docker-content-digest")
        if header:
            return self._header_digest(header, f"checking {self.registry}/{repository}:{ref}", resp.status_code)
        return self.get_manifest(repository, ref).digest

    def _header_digest(self, header: str, what: str, status: int) -> Digest:
        """A ``Docker-Content-Digest`` header's digest; a malformed one is the registry's error."""
        try:
            return Digest.parse(header)
        except UsageError:  # the registry's answer is wrong, not the command line
            raise self.make_error(RegistryError, f"{what}: {self.registry} answered with a malformed "
                                  f"Docker-Content-Digest header {header[:80]!r}", operation=what,
                                  fault=Fault.MALFORMED, status=status) from None

    def put_manifest(self, repository: str, ref: str, raw: bytes, media_type: str, *, push_scope: bool = True) -> None:
        """PUT a manifest by tag or digest. An answer that never came (or a 5xx) is settled by asking
        what ``ref`` points at now: the PUT goes again only if it is not at this manifest's digest."""
        what = f"pushing manifest {self.registry}/{repository}{'@' if ref.startswith('sha256:') else ':'}{ref}"
        expected = Digest.of(raw)

        def stored(resp: httpx.Response) -> None:
            got = resp.headers.get("docker-content-digest")
            if got and got != str(expected):
                raise IntegrityError(f"{what}: registry stored it as {got}, expected {expected}")

        try:
            self._settled("PUT", f"/v2/{repository}/manifests/{ref}", what=what,
                          scopes=frozenset({repo_scope(repository, "pull,push")}),
                          request={"headers": {"Content-Type": media_type}, "content": raw},
                          answered=stored, happened=lambda: self.head_manifest(repository, ref) == expected,
                          when_happened=None)
        except RegistryError as exc:
            sparse = {"MANIFEST_UNKNOWN", "MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"}.intersection(exc.codes)
            if not (is_index(media_type) and exc.status in (400, 404) and sparse):
                raise
            # Children are pushed before their index: a child the registry does not know is one the bundle does
            # not carry (distribution 3.1 refuses such sparse indexes by default).
            raise self.make_error(
                RegistryError, f"{self.registry} refuses the index {expected} for {repository}:{ref}: it holds "
                f"platforms whose manifests are not pushed, and the registry wants every one ({exc.message})",
                operation=what, fault=Fault.SPARSE_INDEX, status=exc.status, codes=exc.codes) from None

    def _settled(
        self, method: str, path: str, *, what: str, scopes: frozenset[str], request: dict[str, object],
        answered: Callable[[httpx.Response], _T], happened: Callable[[], bool], when_happened: _T,
    ) -> _T:
        """A state-changing request, never sent again blindly: an answer under 400 goes to ``answered``; a
        refusal before acting (408/429) is retried; after a lost answer or a 5xx, ``happened()`` asks the
        registry first, and the request goes again only if it did not happen."""
        clock = self.retry.clock(self.gave_up)
        while True:
            try:
                resp = self.send(method, path, scopes=scopes, what=what, mutates=True, **request)  # type: ignore[arg-type]
            except NetworkError as exc:
                if isinstance(exc, TLSError) or not clock.wait():
                    raise
            else:
                status = resp.status_code
                if status < 400:
                    return answered(resp)
                if status not in (*NOT_ACTED, *self.retry.statuses) or storage_full(resp):
                    raise self.status_error(resp, what)
                if not clock.wait(resp.headers.get("retry-after")):
                    raise self.status_error(resp, what, gave_up=clock.gave_up())
                resp.close()
                if status in NOT_ACTED:
                    continue  # refused before anything happened
            if happened():
                return when_happened  # it happened; only the answer was lost

    def list_tags(self, repository: str, *, page_size: int | None = None,
                  ok: tuple[int, ...] = ()) -> list[str]:
        """Every tag of ``repository``, following ``Link: <…>; rel="next"`` pages (distribution 3.1 pages at
        1000 whatever ``n`` asks for, Harbor, …); ``page_size`` asks for ``n`` a page. A page answered with a
        status in ``ok`` raises its error without stopping this client (a 401 or 403 otherwise would)."""
        what = f"listing tags of {self.registry}/{repository}"
        url = f"/v2/{repository}/tags/list" + (f"?n={page_size}" if page_size else "")
        scopes = frozenset({repo_scope(repository, self.read_actions)})
        tags: list[str] = []
        for _, doc in self._pages(url, what=what, scopes=scopes, max_pages=MAX_TAG_PAGES, ok=ok):
            tags.extend(t for t in (doc.get("tags") or []) if isinstance(t, str))
        return tags

    def list_catalog(self, *, page_size: int = CATALOG_PAGE) -> list[str]:
        """Every repository of ``GET /v2/_catalog``, ``page_size`` a page, following ``Link`` rel="next".

        A registry whose pages repeat (it ignores ``last``) or never end is an error: a partial catalog would
        be taken for the whole. A registry that refuses ``n`` (400) is asked once more without it.
        """
        what = f"listing the repositories of {self.registry}"
        names: list[str] = []
        known: set[str] = set()
        pages = self._pages(f"/v2/_catalog?n={page_size}", what=what, scopes=frozenset({CATALOG_SCOPE}),
                            max_pages=MAX_CATALOG_PAGES, unsized="/v2/_catalog")
        for number, (url, doc) in enumerate(pages, start=1):
            page = [r for r in (doc.get("repositories") or []) if isinstance(r, str)]
            fresh = [r for r in page if r not in known]
            if page and not fresh:
                raise RegistryError(f"{what}: page {number} repeats earlier pages ({url})")
            known.update(fresh)
            names.extend(fresh)
        return names

    def _pages(self, url: str, *, what: str, scopes: frozenset[str], max_pages: int,
               unsized: str | None = None, ok: tuple[int, ...] = ()) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each page of a paged GET as (its URL, its JSON object), following ``Link`` rel="next" (RFC 8288).

        A page asked twice or more than ``max_pages`` pages is an error: the registry's pages do not end.
        ``unsized``: the URL to ask instead when the first page is refused with 400 (a registry refusing ``n``);
        it is asked once, with its own page size and links after it.
        """
        seen: set[str] = set()
        next_url: str | None = url
        while next_url:
            if next_url in seen or len(seen) >= max_pages:
                raise RegistryError(f"{what}: the registry's pages do not end (page {len(seen) + 1}: {next_url})")
            seen.add(next_url)
            try:
                resp = self.send("GET", next_url, scopes=scopes, what=what, ok=ok)
                if resp.status_code >= 400:  # a status in ``ok``: its error, this client not stopped
                    raise self.status_error(resp, what)
            except RegistryError as exc:
                if unsized is None or exc.status != 400 or len(seen) != 1:
                    raise
                next_url, unsized = unsized, None
                continue
            try:
                doc = resp.json()
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                raise RegistryError(f"{what}: the answer is not a JSON object")
            yield next_url, doc
            following = next_link(resp.headers.get("link", ""))
            next_url = None if following is None else (
                following if following.startswith(("http://", "https://")) else self.base_url + following)

    # -- blobs --------------------------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: Digest, *, push_scope: bool = False) -> bool:
        actions = "pull,push" if push_scope else "pull"
        resp = self.send(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            scopes=frozenset({repo_scope(repository, actions)}),
            what=f"checking blob {digest.short} in {self.registry}/{repository}",
            follow_redirects=True,
            ok=(404,),
            at_once=(500,),
        )
        if resp.status_code == 500:
            # distribution answers 500 for a blob it half wrote when its disk filled (an empty link file), and
            # keeps doing so; an upload of the blob repairs it. An upload is content-addressed and verified, so
            # taking an unsure answer for "missing" costs bytes, never correctness.
            with self._ping_lock:
                first, self._unsure_heads = not self._unsure_heads, self._unsure_heads + 1
            if first:
                self.warn(f"{self.registry}/{repository} answers 500 to a HEAD of blob {digest}: taken as missing "
                          "and uploaded again (a registry whose disk filled keeps such broken blobs until a new "
                          "upload repairs them)")
            return False
        return resp.status_code == 200

    def stream_blob(self, repository: str, digest: Digest, size_bytes: int, *, what: str = "") -> Iterator[bytes]:
        """Yield the blob's bytes; verified by size and digest before the last chunk is released.

        A connection lost mid-blob is resumed with a Range request from the bytes already passed on.
        """
        what = what or f"blob {digest} in {self.registry}/{repository}"
        chunks = verified_chunks(self._download(repository, digest, what), Verifier(digest, size_bytes, what=what))
        return self.blamed(chunks, repository, digest)

    def blamed(self, chunks: Iterator[bytes], repository: str, digest: Digest) -> Iterator[bytes]:
        """Bytes from this registry that fail their digest are the registry's fault, said with the digest."""
        try:
            yield from chunks
        except IntegrityError as exc:
            if exc.detail is not None:
                raise
            operation = f"downloading blob {digest} from {self.registry}/{repository}"
            err = self.make_error(IntegrityError, f"{self.registry} served {repository} blob {digest} with other "
                              f"content ({exc.message})", operation=operation, fault=Fault.BAD_CONTENT)
            err.hint = ""  # worded at the command line, from the fault: not "the bundle is damaged"
            raise err from None

    def _download(self, repository: str, digest: Digest, what: str) -> Iterator[bytes]:
        """The blob's raw bytes, resumed with a Range request after a lost connection (unverified)."""
        offset = 0
        clock = self.retry.clock(self.gave_up)
        while True:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            resp = self.send(
                "GET",
                f"/v2/{repository}/blobs/{digest}",
                scopes=frozenset({repo_scope(repository, self.read_actions)}),
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
                if isinstance(exc, (Stalled, httpx.ReadTimeout)):
                    self.warn(f"{what}: no progress ({exc}); dropped at {offset} bytes, resuming from there")
                if not clock.wait():
                    err = self.transport_error(exc, f"downloading {what}")
                    err.message = f"{err.message} ({clock.gave_up()})"
                    err.args = (err.message,)
                    raise err from None
            finally:
                resp.close()

    def prepare_push(self, repository: str, blob: Digest | None = None) -> None:
        """Open the first upload into ``repository`` now, and keep it for the first blob that needs one.

        A registry that will not take the repository says so here, before any blob moves: ECR does not create
        repositories on push (404 NAME_UNKNOWN), several hosted registries limit the path depth (NAME_INVALID).
        The session is the POST the first upload would send anyway; one left unused is cancelled at close().
        A repository that already holds ``blob`` (one the run needs there) exists: nothing is opened for it.
        """
        where = f"{self.registry}/{repository}"
        scopes = frozenset({repo_scope(repository, "pull,push")})
        if blob is not None:
            try:
                if self.blob_exists(repository, blob, push_scope=True):
                    return
            except RegistryError:
                pass  # a refused name is answered to a HEAD without a body: the POST below says why
        resp = self.send("POST", f"/v2/{repository}/blobs/uploads/", scopes=scopes,
                          what=f"starting an upload to {where}", ok=(400, 404))
        if resp.status_code in (400, 404):
            codes, detail = _decode_errors(resp)
            resp.close()
            said = f" ({detail})" if detail else ""
            operation = f"starting an upload to {where}"
            if "NAME_INVALID" in codes:
                raise self.make_error(RegistryError, f"{self.registry} refuses the repository name {repository}{said}",
                                  operation=operation, fault=Fault.NAME_REFUSED, status=resp.status_code,
                                  codes=codes)
            if resp.status_code == 404:
                raise self.make_error(
                    NotFoundError,
                    f"{where} does not exist and the registry does not create repositories on push{said}",
                    operation=operation, fault=Fault.NO_REPOSITORY, status=resp.status_code, codes=codes)
            raise self.status_error(resp, f"starting an upload to {where}")
        location = resp.headers.get("location")
        if location:
            self.upload_traits.learn(resp.headers)
            with self._spare_lock:
                previous = self._spare_uploads.pop(repository, None)
                self._spare_uploads[repository] = self.absolute_url(location, resp.request.url)
            if previous is not None:
                self.cancel_upload(repository, previous)

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        """Cross-repository mount; False when the registry would rather have the bytes.

        A registry that cannot mount answers 202 with a fresh upload session (distribution, Harbor): the next
        :meth:`upload_blob` of this blob into this repository uploads into it. A lost answer is settled by
        asking whether the repository holds the blob before the mount is sent again.
        """
        what = f"mounting blob {digest.short} into {self.registry}/{repository}"

        def mounted(resp: httpx.Response) -> bool:
            if resp.status_code == 201:
                return True
            if resp.status_code != 202:
                raise self.status_error(resp, what)
            location = resp.headers.get("location")
            if location:
                self.upload_traits.learn(resp.headers)
                with self._offered_lock:
                    stale = self._offered.pop((repository, digest), None)
                    self._offered[(repository, digest)] = self.absolute_url(location, resp.request.url)
                if stale is not None:
                    self.cancel_upload(repository, stale)
            return False

        return self._settled(
            "POST", f"/v2/{repository}/blobs/uploads/", what=what,
            scopes=frozenset({repo_scope(repository, "pull,push"), repo_scope(from_repository, "pull")}),
            request={"params": {"mount": str(digest), "from": from_repository}}, answered=mounted,
            happened=lambda: self.blob_exists(repository, digest, push_scope=True), when_happened=True)

    def take_offered_session(self, repository: str, digest: Digest) -> str | None:
        """The upload session a refused mount of ``digest`` into ``repository`` offered, once; else the one
        :meth:`prepare_push` opened for the repository's first upload."""
        with self._offered_lock:
            offered = self._offered.pop((repository, digest), None)
        if offered is not None:
            return offered
        with self._spare_lock:
            return self._spare_uploads.pop(repository, None)

    def absolute_url(self, location: str, relative_to: httpx.URL | None = None) -> str:
        """An upload ``Location`` as a URL: absolute ones as they are, relative ones resolved (RFC 3986) against
        the URL of the request they answered (``/v2/…`` against the registry, ``uuid?state`` against the path)."""
        return str((relative_to or self._base).join(location.strip()))


    def cancel_upload(self, repository: str, location: str) -> None:
        # Best effort: the registry purges abandoned uploads itself.
        with contextlib.suppress(ArcgapError):
            self.send("DELETE", location, scopes=frozenset({repo_scope(repository, "pull,push")}),
                       what="cancelling upload", ok=(404, 405, 400))

    def upload_blob(
        self,
        repository: str,
        digest: Digest,
        chunks: Iterable[bytes],
        *,
        what: str = "",
        size: int | None = None,
        reopen: Callable[[], Iterable[bytes]] | None = None,
    ) -> int:
        """Upload from ``chunks`` (which should verify themselves) and commit with the digest; returns the size.

        The states, and what a lost answer or a quirk of the registry changes, are in
        :mod:`arcgap.registry.upload`. ``size`` (when known) lets a streamed PUT declare its length;
        ``reopen`` gives the blob's bytes again from the start, should the registry lose the session after
        bytes were released. If ``chunks`` raises (a corrupt bundle), the upload is cancelled and nothing is
        committed.
        """
        what = what or f"blob {digest.short} to {self.registry}/{repository}"
        return BlobUpload(self, repository, digest, chunks, what=what, size=size, reopen=reopen).run()


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """Same scheme, host and port (RFC 6454): where the registry's credentials may go."""
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


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
