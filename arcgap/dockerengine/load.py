"""The Docker Engine as a :class:`~arcgap.transfer.sink.Sink`: ``import --engine docker`` is the same copy as into a
registry (placement, publish order, the tag check, the tally), with ``docker load`` and ``docker push`` below.

Every blob placed is written, verified on the way, into one ``docker load`` upload (an OCI layout tar); the
manifests pushed by digest go into it too. The first tag to move closes the upload with a ``manifest.json`` naming
each image for the target, waits for the engine to load it, and from then on a tag is ``docker push``. dockerd
unpacks the whole upload before it loads anything, so a failure before the first tag cuts the upload and nothing is
loaded. Nothing is held in memory beyond a few chunks in the pipe and the manifests.

The engine keeps one store: a blob written once is in every repository (a mount is always granted). The classic
image store holds one platform per image and re-compresses layers on push, so the digest under a tag may differ
from the bundle's: :meth:`EngineSink.put_manifest` returns the digest the engine reports, and the tag check
re-reads the target through the engine against that.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from arcgap.bundle import tarstream
from arcgap.bundle.dockercompat import DOCKER_LOAD_INDEX_NAME, chosen_platforms, docker_load_json, host_platform
from arcgap.bundle.format import INDEX_NAME, LAYOUT_NAME, TableOfContents
from arcgap.bundle.reader import BundleReader
from arcgap.dockerengine import check_events, docker_engine_error
from arcgap.errors import ArcgapError, IntegrityError, UsageError, option
from arcgap.oci.digest import Digest
from arcgap.transfer.importer import ImportResult, import_bundle
from arcgap.transfer.plan import map_targets
from arcgap.util.progress import Reporter

PIPE_CHUNKS = 16  # chunks in flight between the copy and the engine's upload (each at most a read's size)
_END = object()
_CUT = object()


class _Cut(Exception):
    """Raised inside the upload's body: the request is abandoned and dockerd loads nothing."""


class _LoadPipe:
    """One ``docker load`` upload fed from a bounded queue; the engine's events once it is closed."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._queue: queue.Queue[object] = queue.Queue(maxsize=PIPE_CHUNKS)
        self._events: list[dict[str, Any]] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="arcgap-docker-load", daemon=True)
        self._thread.start()

    def _body(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item is _CUT:
                raise _Cut()
            assert isinstance(item, bytes)
            yield item

    def _run(self) -> None:
        try:
            self._events = list(check_events(self._client.api.load_image(self._body()), what="docker load"))
        except BaseException as exc:  # raised to the writer
            self._error = exc

    def _put(self, item: object) -> None:
        while True:
            if not self._thread.is_alive():
                raise self._failure()
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def write(self, data: bytes) -> None:
        if data:
            self._put(data)

    def _failure(self) -> ArcgapError:
        exc = self._error
        if isinstance(exc, ArcgapError):
            return exc
        return docker_engine_error(f"docker load: {exc or 'the engine ended the upload'}")

    def close(self) -> list[dict[str, Any]]:
        """End the upload; the engine's events once it has loaded everything."""
        self._put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._failure()
        return self._events

    def cut(self) -> None:
        """Abandon the upload (nothing is loaded); returns once the engine's answer is in."""
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):  # the upload is not reading: it ends with the connection
                self._queue.put(_CUT, timeout=5)
            self._thread.join(timeout=60)


class EngineSink:
    """``docker load`` + ``docker push`` through a local dockerd, as a registry-like sink for one bundle's images.

    ``registry``/``repository``/``tag`` are the target's values, mapped the way every import maps them
    (:func:`arcgap.transfer.plan.map_targets`): ``manifest.json`` must name each image for the target before the
    first push. Use as a context manager: leaving it before a tag moved (a failure, or every tag already at its
    digest) cuts the upload.
    """

    label = "the Docker Engine"

    def __init__(self, client: Any, toc: TableOfContents, *, registry: str, repository: str, tag: str | None,
                 auth: dict[str, str] | None, platform: str) -> None:
        self.client = client
        self.registry = registry
        self.toc = toc
        self.targets = map_targets(toc, registry=registry, repository=repository, tag=tag)
        self.platform = platform
        self._auth = auth
        self._sizes = {b.digest: b.size for b in toc.blobs}
        self._lock = threading.Lock()  # one tar member at a time
        self._written: set[Digest] = set()
        self._manifests: dict[Digest, bytes] = {}
        self._pipe: _LoadPipe | None = None
        self._broken: BaseException | None = None
        self._loaded = False
        self._load_lock = threading.Lock()
        self._pushed: dict[str, Digest] = {}  # reference → the digest the engine pushed under it
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> EngineSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._loaded and self._pipe is not None:
            self._pipe.cut()

    def __repr__(self) -> str:
        return f"EngineSink({self.registry!r})"  # never the credentials

    def _ref(self, repository: str, tag: str) -> str:
        return f"{self.registry}/{repository}:{tag}"

    # -- placement: every blob goes into the one upload ------------------------------------------------------

    def ping(self) -> None:
        try:
            self.client.ping()
        except Exception as exc:  # the engine went away since connect()
            raise docker_engine_error(f"the Docker engine stopped answering: {exc}") from None

    def blob_exists(self, repository: str, digest: Digest, *, push_scope: bool = False) -> bool:
        with self._lock:
            return digest in self._written

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        return self.blob_exists(repository, digest)  # one store: written once is everywhere

    def prepare_push(self, repository: str, blob: Digest | None = None) -> None:
        """Nothing to ask ahead: the engine checks the target's credentials and names at the push."""

    def stream_blob(self, repository: str, digest: Digest, size_bytes: int, *, what: str = "") -> Iterator[bytes]:
        raise docker_engine_error(f"{what or digest}: the engine gives no blob back (every mount is granted)")

    def upload_blob(self, repository: str, digest: Digest, chunks: Iterable[bytes], *, what: str = "",
                    size: int | None = None, reopen: Callable[[], Iterable[bytes]] | None = None) -> int:
        size = self._sizes.get(digest, size)
        if size is None:
            raise IntegrityError(f"{what or digest}: not a blob of the bundle")
        with self._lock:
            if digest in self._written:
                for _ in chunks:  # still read: the source verifies as it is read
                    pass
                return 0
            self._member(f"blobs/{digest.algorithm}/{digest.hex}", size, chunks, what=what or str(digest))
            self._written.add(digest)
        return size

    def _member(self, name: str, size: int, chunks: Iterable[bytes], *, what: str) -> None:
        """One tar member into the upload; any failure cuts it (a tar with a broken member is never loaded)."""
        if self._broken is not None:
            raise self._broken
        if self._loaded:
            raise docker_engine_error(f"{what}: the engine's upload is already closed")
        try:
            if self._pipe is None:
                self._pipe = _LoadPipe(self.client)
            self._pipe.write(tarstream.member_header(name, size))
            sent = 0
            for chunk in chunks:
                sent += len(chunk)
                self._pipe.write(bytes(chunk))
            if sent != size:
                raise IntegrityError(f"{what}: {sent} bytes where {size} were declared")
            self._pipe.write(tarstream.padding(size))
        except BaseException as exc:
            self._broken = exc
            if self._pipe is not None:
                self._pipe.cut()
            raise

    # -- manifests and tags -----------------------------------------------------------------------------------

    def head_manifest(self, repository: str, ref: str) -> Digest | None:
        """What ``ref`` names at the target, asked through the engine. Before this sink pushed it, an engine that
        cannot say (no such tag, no access yet) counts as "not there": the push will tell. After, it must say."""
        full = self._ref(repository, ref)
        try:
            got = self.client.api.inspect_distribution(full, auth_config=self._auth)["Descriptor"]["digest"]
            return Digest.parse(str(got))
        except Exception as exc:  # APIError, a malformed answer
            if full not in self._pushed:
                return None
            raise docker_engine_error(f"re-reading {full} through the engine: {exc}") from None

    def put_manifest(self, repository: str, ref: str, raw: bytes, media_type: str, *,
                     push_scope: bool = True) -> Digest | None:
        """By digest: into the upload. By tag: the upload is closed and loaded (once), then ``docker push``;
        returns the digest the engine reports under the tag."""
        if ref.startswith("sha256:"):
            digest = Digest.of(raw)
            if str(digest) != ref:
                raise IntegrityError(f"manifest {ref}: its bytes are {digest}")
            with self._lock:
                if digest not in self._written:
                    self._member(f"blobs/{digest.algorithm}/{digest.hex}", len(raw), [raw], what=f"manifest {ref}")
                    self._written.add(digest)
                self._manifests[digest] = raw
            return None
        self._load()
        full = self._ref(repository, ref)
        pushed = Digest.parse(push_image(self.client, full, self._auth))
        self._pushed[full] = pushed
        return pushed

    def _load(self) -> None:
        """Close the upload with the layout's index and ``manifest.json``, and wait for the engine to load it."""
        with self._load_lock:
            if self._loaded:
                return
            tags = {t.entry.ref_name: t.reference for t in self.targets}
            with self._lock:
                listing = docker_load_json(self.toc, self._manifests, wanted_platform=self.platform, tags=tags)
                for name, data in ((LAYOUT_NAME, self.toc.oci_layout()), (INDEX_NAME, self.toc.oci_index()),
                                   (DOCKER_LOAD_INDEX_NAME, listing)):
                    self._member(name, len(data), [data], what=name)
                assert self._pipe is not None  # the manifests went in first
                self._pipe.write(tarstream.END_OF_ARCHIVE)
                self._loaded = True
                self.events = self._pipe.close()
            loaded = " ".join(str(e.get("stream", "")) for e in self.events)
            for ref in tags.values():
                if ref not in loaded:
                    raise docker_engine_error(f"docker load did not report {ref}: {loaded.strip()[:300]}")

    def image_id(self, reference: str) -> str | None:
        """The engine's image ID (the config digest) for a loaded target reference."""
        if not self._loaded:
            return None
        try:
            return str(self.client.api.inspect_image(reference)["Id"])
        except Exception:  # not loaded under that name: nothing to report
            return None


def push_image(client: Any, ref: str, auth: dict[str, str] | None) -> str:
    """``docker push ref`` through the engine; the digest the engine reports for it."""
    repo, _, tag = ref.rpartition(":")
    pushed = None
    try:
        for event in check_events(client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth),
                                  what=f"docker push {ref}"):
            aux = event.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                pushed = str(aux["Digest"])
    except ArcgapError:
        raise
    except Exception as exc:  # APIError outside the stream
        raise docker_engine_error(f"docker push {ref}: {exc}") from None
    if pushed is None:
        raise docker_engine_error(f"docker push {ref}: the engine reported no digest")
    return pushed



def docker_import(reader: BundleReader, client: Any, *, registry: str, repository: str, target_tag: str | None,
                  auth: dict[str, str] | None, jobs: int, reporter: Reporter,
                  warn: Callable[[str], None]) -> ImportResult:
    """The bundle's import with :class:`EngineSink` as the sink: the same run as into a registry."""
    toc = reader.toc
    if toc.relies_on:
        raise UsageError(f"a differential bundle ({option('since')}) cannot go through the Docker engine: it lacks the "
                         "layers docker load needs", hint="import it with the default engine")
    platform = host_platform()
    warnings = [
        "the Docker engine's classic image store may change digests: layers are re-compressed on push, so "
        "manifest digests at the target can differ from the bundle's (image IDs = config digests stay)"
    ]
    for ref, chosen in chosen_platforms(toc, platform).items():
        warnings.append(f"{ref}: multi-platform index: only {chosen} is loaded and pushed; the target gets a "
                        "single-platform manifest, not the bundle's index")
    for text in warnings:
        warn(text)
    with EngineSink(client, toc, registry=registry, repository=repository, tag=target_tag, auth=auth,
                    platform=platform) as sink:
        result = import_bundle(reader, sink, target_repository=repository, target_tag=target_tag, jobs=jobs,
                               reporter=reporter)
    result.outcomes = [replace(o, notes={"image_id": sink.image_id(o.target.reference)}) for o in result.outcomes]
    if result.referrers is not None and result.referrers.get("unplaced"):
        warnings += result.referrers["unplaced"]
    changed = sum(1 for o in result.outcomes if o.held is not None and o.held != o.target.entry.digest)
    result.extra = {"engine": "docker", "digests_changed": changed, "warnings": warnings}
    return result
