"""arcgap.transfer.engine: the copy routine against in-memory fakes of a Source and a Sink.

Placement (present / mount / upload, a refused mount falls back to an upload), the publish order (children, then
indexes, all by digest, then tags, then tags re-read), the tally, and stopping: the first failure and Ctrl-C.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from arcgap.bundle.format import (
    INDEX_NAME,
    LAYOUT_NAME,
    TOC_NAME,
    BaseBundle,
    BlobEntry,
    ImageEntry,
    PlatformEntry,
    TableOfContents,
)
from arcgap.bundle.graph import ImageGraph
from arcgap.bundle.reader import open_bundle
from arcgap.bundle.writer import BundleWriter
from arcgap.errors import IntegrityError, MissingBaseError, RegistryError
from arcgap.oci.digest import Digest, Verifier, verified_chunks
from arcgap.transfer.bundlesource import BundleSource
from arcgap.transfer.engine import CopyOptions, copy_images, copy_stream
from arcgap.transfer.plan import TargetImage
from arcgap.transfer.source import Contents, Meter
from arcgap.transfer.tally import ImportResult
from arcgap.util.progress import Reporter

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REGISTRY = "fake:5000"


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


def _manifest(config: bytes, layers: Iterable[bytes]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": _descriptor(CONFIG, config),
                       "layers": [_descriptor(LAYER, x) for x in layers]}).encode()


class Release:
    """Images in memory: single-platform ones and one index of two platforms; blobs shared between images."""

    def __init__(self, layers: dict[str, list[bytes]], *, index: str | None = None,
                 relied: tuple[bytes, ...] = ()) -> None:
        self.data: dict[Digest, bytes] = {}
        self.images: list[ImageEntry] = []
        self.graphs: list[ImageGraph] = []
        manifests: dict[Digest, tuple[bytes, str]] = {}
        data_blobs: dict[Digest, BlobEntry] = {}
        for name, blobs in layers.items():
            config = f"config of {name}".encode()
            children: list[tuple[Digest, bytes, str]] = []
            platforms: list[PlatformEntry] = []
            variants = ("amd64", "arm64") if name == index else ("amd64",)
            for arch in variants:
                cfg = config + arch.encode()
                mine = [x + arch.encode() for x in blobs] if name == index else blobs
                raw = _manifest(cfg, mine)
                children.append((Digest.of(raw), raw, MANIFEST))
                platforms.append(PlatformEntry(f"linux/{arch}", Digest.of(raw), MANIFEST))
                for n, x in enumerate([cfg, *mine]):
                    self.data[Digest.of(x)] = x
                    data_blobs.setdefault(Digest.of(x), BlobEntry(Digest.of(x), len(x), LAYER if n else CONFIG,
                                                                  "layer" if n else "config"))
            if name == index:
                top = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
                    {**_descriptor(MANIFEST, raw), "platform": {"os": "linux", "architecture": p.platform[6:]}}
                    for (_, raw, _), p in zip(children, platforms)]}).encode()
                top_type = INDEX
            else:
                top, top_type = children[0][1], MANIFEST
                children = []
            manifests[Digest.of(top)] = (top, top_type)
            for digest, raw, media_type in children:
                manifests[digest] = (raw, media_type)
            needed = frozenset(Digest.of(x) for p in (children or [(None, top, None)]) for x in
                               self._blobs_of(p[1]))
            entry = ImageEntry(name, "v1", f"src/{name}:v1", Digest.of(top), top_type, len(top), tuple(platforms))
            self.images.append(entry)
            self.graphs.append(ImageGraph(entry, tuple(children), needed))
        self.manifests = {d: raw for d, (raw, _) in manifests.items()}
        manifest_entries = [BlobEntry(d, len(raw), mt, "index" if mt == INDEX else "manifest")
                            for d, (raw, mt) in manifests.items()]
        relied_digests = {Digest.of(x) for x in relied}
        bases = ()
        if relied_digests:
            bases = (BaseBundle("base.tar.zst", Digest.of(b"base"), "bundle", "2026-01-01T00:00:00Z",
                                tuple(b for d, b in data_blobs.items() if d in relied_digests)),)
        self.toc = TableOfContents(
            source_registry="src", source_repository="arc", images=tuple(self.images), created="2026-01-01T00:00:00Z",
            blobs=(*manifest_entries, *(b for d, b in data_blobs.items() if d not in relied_digests)),
            format_version=2 if bases else 1, relies_on=bases)

    def _blobs_of(self, raw: bytes) -> list[bytes]:
        doc = json.loads(raw)
        return [self.data[Digest.parse(d["digest"])] for d in [doc["config"], *doc["layers"]]]

    def targets(self, repository: str = "arc") -> list[TargetImage]:
        return [TargetImage(e, REGISTRY, f"{repository}/{e.name}", e.tag) for e in self.images]


class FakeSource:
    """A Source over a Release: sequential (a bundle stream) or random access (a registry)."""

    def __init__(self, release: Release, *, sequential: bool, chunk: int = 7) -> None:
        self.release = release
        self.sequential = sequential
        self.chunk = chunk
        self.opened: list[Digest] = []

    def _chunks(self, digest: Digest, meter: Meter) -> Iterator[bytes]:
        data = self.release.data[digest]
        parts = [data[i:i + self.chunk] for i in range(0, len(data), self.chunk)]
        for chunk in verified_chunks(parts, Verifier(digest, len(data), what=f"blob {digest}")):
            meter(len(chunk))
            yield chunk

    def contents(self, meter: Meter) -> Contents:
        for raw in self.release.manifests.values():
            meter(len(raw))
        return Contents(self.release.toc, tuple(self.release.graphs), self.release.manifests)

    def stream(self, meter: Meter) -> Iterator[tuple[BlobEntry, Iterator[bytes]]]:
        """A stream's manifests were read by contents(); a registry streams every blob, manifests too."""
        for entry in self.release.toc.blobs:
            if entry.kind in ("config", "layer"):
                self.opened.append(entry.digest)
                yield entry, self._chunks(entry.digest, meter)
            elif not self.sequential:
                raw = self.release.manifests[entry.digest]
                meter(len(raw))
                yield entry, iter((raw,))

    def open(self, entry: BlobEntry, meter: Meter) -> Iterator[bytes]:
        assert not self.sequential
        self.opened.append(entry.digest)
        return self._chunks(entry.digest, meter)


class FakeSink:
    """A registry in memory; every call is recorded in order as (call, repository, digest or reference)."""

    registry = REGISTRY

    def __init__(self, *, held: Iterable[tuple[str, bytes]] = (), refuse_mounts: bool = False,
                 fail_upload: Digest | None = None, interrupt_put: str | None = None, delay_s: float = 0.0) -> None:
        self.blobs = {(repo, Digest.of(x)): x for repo, x in held}
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.refuse_mounts = refuse_mounts
        self.fail_upload = fail_upload
        self.interrupt_put = interrupt_put  # "digest" or "tag": Ctrl-C at the first such put
        self.delay_s = delay_s
        self.events: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def _log(self, *event: str) -> None:
        with self._lock:
            self.events.append(event)  # type: ignore[arg-type]

    def calls(self, name: str) -> list[tuple[str, str, str]]:
        return [e for e in self.events if e[0] == name]

    def ping(self) -> None:
        self._log("ping", "", "")

    def prepare_push(self, repository: str, blob: Digest | None = None) -> None:
        pass  # every repository can be pushed to

    def blob_exists(self, repository: str, digest: Digest, *, push_scope: bool = False) -> bool:
        self._log("head", repository, str(digest))
        return (repository, digest) in self.blobs

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        self._log("mount", repository, str(digest))
        if self.refuse_mounts or (from_repository, digest) not in self.blobs:
            return False
        self.blobs[(repository, digest)] = self.blobs[(from_repository, digest)]
        return True

    def upload_blob(self, repository: str, digest: Digest, chunks: Iterable[bytes], *, what: str = "",
                    size: int | None = None, reopen: Callable[[], Iterable[bytes]] | None = None) -> int:
        self._log("upload", repository, str(digest))
        time.sleep(self.delay_s)
        if digest == self.fail_upload:
            raise RegistryError(f"uploading {what}: 500 INTERNAL")
        data = b"".join(chunks)  # the chunks verify themselves
        assert Digest.of(data) == digest
        self.blobs[(repository, digest)] = data
        return len(data)

    def stream_blob(self, repository: str, digest: Digest, size_bytes: int, *, what: str = "") -> Iterator[bytes]:
        self._log("read", repository, str(digest))
        return verified_chunks([self.blobs[(repository, digest)]], Verifier(digest, size_bytes, what=what or "x"))

    def head_manifest(self, repository: str, ref: str) -> Digest | None:
        self._log("head-manifest", repository, ref)
        raw = self.manifests.get((repository, ref))
        return Digest.of(raw) if raw is not None else None

    def put_manifest(self, repository: str, ref: str, raw: bytes, media_type: str, *, push_scope: bool = True) -> None:
        kind = "digest" if ref.startswith("sha256:") else "tag"
        self._log(f"put-{kind}", repository, ref)
        if self.interrupt_put == kind:
            self.interrupt_put = None  # once, like a user's Ctrl-C
            raise KeyboardInterrupt
        if kind == "digest":
            assert Digest.of(raw) == Digest.parse(ref)
            for child in json.loads(raw).get("manifests", []):  # a registry refuses an index before its children
                assert (repository, child["digest"]) in self.manifests, "child after its index"
        self.manifests[(repository, ref)] = raw


SHARED = b"shared base layer" * 5


def _release() -> Release:
    return Release({"a": [SHARED, b"layer of a"], "b": [SHARED, b"layer of b" * 3], "multi": [b"multi layer"]},
                   index="multi")


def _copy(source: FakeSource, sink: FakeSink, release: Release, *, dry_run: bool = False,
          jobs: int = 3) -> ImportResult:
    result, _ = copy_images(source, sink, release.targets(), ImportResult(dry_run=dry_run),
                            options=CopyOptions(jobs=jobs, dry_run=dry_run, where=f"{REGISTRY}/arc"),
                            reporter=Reporter())
    return result


both = pytest.mark.parametrize("sequential", [True, False], ids=["stream", "random"])


@both
def test_an_empty_sink_gets_every_blob_once_per_repository_and_shared_ones_mounted(sequential: bool) -> None:
    release, sink = _release(), FakeSink()
    source = FakeSource(release, sequential=sequential)
    result = _copy(source, sink, release)
    for target, graph in zip(release.targets(), release.graphs):
        assert all((target.repository, d) in sink.blobs for d in graph.blobs)
        assert sink.manifests[(target.repository, target.tag)] == release.manifests[target.entry.digest]
    shared = str(Digest.of(SHARED))
    assert [e for e in sink.calls("upload") if e[2] == shared] == [("upload", "arc/a", shared)]
    assert sink.calls("mount") == [("mount", "arc/b", shared)]
    data = [b for b in release.toc.blobs if b.kind in ("config", "layer")]
    assert (result.uploaded_blobs, result.mounted_blobs, result.skipped_blobs) == (len(data), 1, 0)
    assert result.uploaded_bytes == sum(b.size for b in data)
    assert result.verified_bytes == release.toc.total_bytes  # every byte read from the source, once
    assert [o.action for o in result.outcomes] == ["pushed", "pushed", "pushed"]
    assert result.blobs == len(release.toc.blobs) and result.skipped_tags == 0
    assert {b.digest for b in result.held_blobs} == {b.digest for b in release.toc.blobs}
    assert sorted(source.opened) == sorted(b.digest for b in data)


@both
def test_publish_order_blobs_then_children_then_indexes_then_tags_then_tags_reread(sequential: bool) -> None:
    release, sink = _release(), FakeSink()
    _copy(FakeSource(release, sequential=sequential), sink, release)
    kinds = [e[0] for e in sink.events]
    last_blob = max(i for i, k in enumerate(kinds) if k in ("upload", "mount"))
    first_put = kinds.index("put-digest")
    first_tag = kinds.index("put-tag")
    assert last_blob < first_put < first_tag
    assert max(i for i, k in enumerate(kinds) if k == "put-digest") < first_tag  # every manifest before any tag
    assert len(sink.calls("put-tag")) == 3
    rereads = [i for i, e in enumerate(sink.events) if e[0] == "head-manifest"]
    assert len(rereads) == 6 and min(rereads[3:]) > max(i for i, k in enumerate(kinds) if k == "put-tag")
    multi = next(t for t in release.targets() if t.entry.media_type == INDEX)
    puts = [e[2] for e in sink.calls("put-digest") if e[1] == multi.repository]
    assert puts[-1] == str(multi.entry.digest) and len(puts) == 3  # two children, then their index


@both
def test_blobs_the_sink_holds_are_not_sent(sequential: bool) -> None:
    release = _release()
    a = release.graphs[0]
    sink = FakeSink(held=[("arc/a", release.data[d]) for d in a.blobs])
    source = FakeSource(release, sequential=sequential)
    result = _copy(source, sink, release)
    assert not any(e[1] == "arc/a" for e in sink.calls("upload"))
    assert result.skipped_blobs == 3  # no bytes sent for a's blobs: the shared layer was mounted into arc/b
    assert result.uploaded_bytes == sum(len(release.data[d]) for d in release.graphs[1].blobs
                                        if d != Digest.of(SHARED)) + sum(
        len(release.data[d]) for g in release.graphs[2:] for d in g.blobs)
    assert (result.outcomes[0].present_blobs, result.outcomes[0].action) == (3, "mounted")
    assert ("mount", "arc/b", str(Digest.of(SHARED))) in sink.events  # mounted from the repository holding it
    if sequential:  # a stream is read to its end, every byte verified
        assert result.verified_bytes == release.toc.total_bytes
    else:  # a random-access source is not even asked for blobs the target holds
        assert not set(a.blobs) - {Digest.of(SHARED)} & set(source.opened)


@both
def test_a_refused_mount_falls_back_to_an_upload(sequential: bool) -> None:
    release, sink = _release(), FakeSink(refuse_mounts=True)
    source = FakeSource(release, sequential=sequential)
    result = _copy(source, sink, release)
    shared = str(Digest.of(SHARED))
    assert [e for e in sink.calls("upload") if e[2] == shared] == [("upload", "arc/a", shared),
                                                                   ("upload", "arc/b", shared)]
    assert result.mounted_blobs == 0 and ("arc/b", Digest.of(SHARED)) in sink.blobs
    if sequential:  # the stream cannot go back: the verified copy is read back out of the sink
        assert ("read", "arc/a", shared) in sink.events
    else:  # the source is read again
        assert source.opened.count(Digest.of(SHARED)) == 2


@both
def test_tags_already_at_their_digest_are_left_alone(sequential: bool) -> None:
    release, sink = _release(), FakeSink()
    _copy(FakeSource(release, sequential=sequential), sink, release)
    sink.events.clear()
    result = _copy(FakeSource(release, sequential=sequential), sink, release)
    assert not sink.calls("upload") and not sink.calls("mount") and not sink.calls("put-tag")
    assert result.skipped_tags == 3 and [o.action for o in result.outcomes] == ["skipped"] * 3
    assert result.skipped_blobs == len([b for b in release.toc.blobs if b.kind in ("config", "layer")])


@both
def test_a_dry_run_asks_and_counts_but_changes_nothing(sequential: bool) -> None:
    release = _release()
    sink = FakeSink(held=[("arc/a", SHARED)])
    result = _copy(FakeSource(release, sequential=sequential), sink, release, dry_run=True)
    assert not [e for e in sink.events if e[0] in ("upload", "mount", "put-digest", "put-tag")]
    data = [b for b in release.toc.blobs if b.kind in ("config", "layer")]
    assert result.content_bytes == sum(b.size for b in data)
    assert result.present_bytes == 0 and result.missing_bytes == result.content_bytes - len(SHARED)
    assert result.lacking_placements == len(data) and not any(o.to_dict(dry_run=True)["pushed"]
                                                              for o in result.outcomes)


@both
def test_the_first_failed_upload_stops_the_copy_before_any_manifest(sequential: bool) -> None:
    layers = {f"img{n}": [f"layer {n}.{k}".encode() for k in range(4)] for n in range(6)}
    release = Release(layers)
    first = next(b.digest for b in release.toc.blobs if b.kind == "layer")
    sink = FakeSink(fail_upload=first, delay_s=0.02)
    with pytest.raises(RegistryError, match="500 INTERNAL"):
        _copy(FakeSource(release, sequential=sequential), sink, release, jobs=2)
    assert not sink.calls("put-digest") and not sink.calls("put-tag")
    assert len(sink.calls("upload")) < len(release.toc.blobs) // 2  # the rest was cancelled, not sent


def test_a_damaged_blob_in_the_stream_stops_the_copy_before_any_manifest() -> None:
    release = _release()
    victim = next(b.digest for b in release.toc.blobs if b.kind == "layer")
    release.data[victim] = release.data[victim][:-1] + b"!"
    sink = FakeSink()
    with pytest.raises(IntegrityError, match="digest mismatch"):
        _copy(FakeSource(release, sequential=True), sink, release)
    assert (sink.calls("put-digest"), sink.calls("put-tag")) == ([], [])
    assert not any(d == victim for _, d in sink.blobs)


@pytest.mark.parametrize("at", ["digest", "tag"])
def test_ctrl_c_stops_publishing(at: str) -> None:
    release, sink = _release(), FakeSink(interrupt_put=at)
    with pytest.raises(KeyboardInterrupt):
        _copy(FakeSource(release, sequential=False), sink, release, jobs=1)
    # images are published a few at a time: those already started end, nothing new starts
    if at == "digest":
        assert not sink.calls("put-tag")  # no tag moves when a manifest is missing
    interrupted = next(i for i, e in enumerate(sink.events) if e[0] == f"put-{at}")
    assert not [e for e in sink.events[interrupted:] if e[0] == "head-manifest"]  # the tags are not re-read


def test_relied_on_blobs_must_be_at_the_target_before_anything_is_sent() -> None:
    release = Release({"a": [SHARED, b"layer of a"], "b": [SHARED]}, relied=(SHARED,))
    sink = FakeSink()
    with pytest.raises(MissingBaseError, match="relies on blobs from base.tar.zst") as info:
        _copy(FakeSource(release, sequential=True), sink, release)
    assert "nothing was changed" in (info.value.hint or "") and f"{REGISTRY}/arc" in (info.value.hint or "")
    assert not sink.calls("upload") and not sink.calls("mount")
    # held by one repository: mounted into the other, then the copy goes on
    sink = FakeSink(held=[("arc/a", SHARED)])
    result = _copy(FakeSource(release, sequential=True), sink, release)
    assert result.relied_on_blobs == 1 and sink.calls("mount")[0] == ("mount", "arc/b", str(Digest.of(SHARED)))
    assert ("arc/b", Digest.of(SHARED)) in sink.blobs and sink.manifests[("arc/b", "v1")]


class ListSink:
    """A StreamSink that keeps what it is handed, chunk by chunk, in order."""

    def __init__(self) -> None:
        self.written: list[tuple[Digest, bytes]] = []
        self.chunks: list[bytes] = []

    def write(self, contents: Contents, blobs: Iterator[tuple[BlobEntry, Iterator[bytes]]]) -> None:
        for entry, chunks in blobs:
            for chunk in chunks:
                self.chunks.append(chunk)
            self.written.append((entry.digest, b"".join(self.chunks)))
            self.chunks.clear()


@both
def test_copy_stream_hands_every_blob_over_once_in_the_source_order(sequential: bool) -> None:
    release = _release()
    sink, metered = ListSink(), []
    contents = copy_stream(FakeSource(release, sequential=sequential), sink, meter=metered.append)
    expected = [b for b in release.toc.blobs if not sequential or b.kind in ("config", "layer")]
    assert [d for d, _ in sink.written] == [b.digest for b in expected]  # a stream's manifests are in contents
    assert all(Digest.of(data) == d for d, data in sink.written)
    assert set(contents.manifests) == {b.digest for b in release.toc.blobs if b.kind in ("index", "manifest")}
    assert sum(metered) == release.toc.total_bytes + (sum(map(len, release.manifests.values())) if not
                                                           sequential else 0)


def test_copy_stream_stops_at_a_damaged_blob_before_its_last_chunk() -> None:
    release = _release()
    victim = next(b for b in release.toc.blobs if b.kind == "layer" and b.size > 7)
    good = release.data[victim.digest]
    release.data[victim.digest] = good[:-1] + b"!"
    sink = ListSink()
    with pytest.raises(IntegrityError, match="digest mismatch"):
        copy_stream(FakeSource(release, sequential=False), sink, meter=lambda _n: None)
    assert victim.digest not in [d for d, _ in sink.written]
    assert len(b"".join(sink.chunks)) < victim.size  # the damaged blob's last chunk never reached the sink


class GatedSink(FakeSink):
    """Uploads wait at a gate; the most uploads ever in flight at once is recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.in_flight = 0
        self.most = 0

    def upload_blob(self, repository: str, digest: Digest, chunks: Iterable[bytes], *, what: str = "",
                    size: int | None = None, reopen: Callable[[], Iterable[bytes]] | None = None) -> int:
        with self._lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            self.gate.wait(10)
            return super().upload_blob(repository, digest, chunks, what=what)
        finally:
            with self._lock:
                self.in_flight -= 1


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_stream_holds_at_most_two_small_blobs_while_their_uploads_wait() -> None:
    release = Release({f"img{n}": [f"layer {n}".encode()] for n in range(5)})
    source, sink = FakeSource(release, sequential=True), GatedSink()
    worker = threading.Thread(target=_copy, args=(source, sink, release))
    worker.start()
    try:
        _wait_for(lambda: sink.in_flight == 2)
        time.sleep(0.2)  # were the stream not held back, it would read on now
        assert len(source.opened) == 3  # two held for the waiting uploads, the third waits for a slot unread
    finally:
        sink.gate.set()
        worker.join(10)
    assert sink.most == 2 and len(sink.manifests) == 10  # 5 by digest, 5 tags


def test_a_random_access_source_copies_at_most_jobs_blobs_at_once() -> None:
    release = Release({f"img{n}": [f"layer {n}".encode()] for n in range(6)})
    sink = GatedSink()
    worker = threading.Thread(target=_copy, args=(FakeSource(release, sequential=False), sink, release),
                              kwargs={"jobs": 3})
    worker.start()
    try:
        _wait_for(lambda: sink.in_flight == 3)
        time.sleep(0.2)
        assert sink.in_flight == 3
    finally:
        sink.gate.set()
        worker.join(10)
    assert sink.most == 3 and len(sink.calls("upload")) == 12


def _bundle(release: Release, path: Path) -> Path:
    """``release`` as a real bundle file: arcgap.yaml, oci-layout and index.json, then every blob in order."""
    toc = release.toc
    with BundleWriter(path) as writer:
        for name, data in ((TOC_NAME, toc.to_yaml()), (LAYOUT_NAME, toc.oci_layout()),
                           (INDEX_NAME, toc.oci_index())):
            writer.add_bytes(name, data)
        for blob in toc.blobs:
            writer.add_bytes(blob.member, release.manifests.get(blob.digest) or release.data[blob.digest])
        writer.commit()
    return path


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "arcgap-read-ahead" and t.is_alive()]


@pytest.mark.parametrize("dry_run", [False, True], ids=["import", "dry-run"])
def test_a_bundle_refused_before_its_blobs_stops_its_read_ahead_at_once(tmp_path: Path, dry_run: bool) -> None:
    """The target lacks the base a differential bundle relies on: the copy stops before the bundle's blobs are
    read, and the thread reading ahead in the bundle stops with it, not when the traceback lets go of it."""
    layers = {f"img{n}": [SHARED, f"layer of img{n}".encode() * 50] for n in range(12)}
    release = Release(layers, relied=(SHARED,))
    path = _bundle(release, tmp_path / "diff.tar.zst")
    assert not _read_ahead_threads()
    with open_bundle(path) as reader, pytest.raises(MissingBaseError) as info:
        copy_images(BundleSource(reader), FakeSink(), release.targets(), ImportResult(dry_run=dry_run),
                    options=CopyOptions(jobs=2, dry_run=dry_run, where=f"{REGISTRY}/arc"), reporter=Reporter())
    assert info.value is not None  # the traceback, and every frame it holds, is still alive here
    assert not _read_ahead_threads()


class OverlapSink(FakeSink):
    """Records the most calls of each kind that were ever in flight at once (each call lingers a little)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight: dict[str, int] = {}
        self.most: dict[str, int] = {}

    def _enter(self, kind: str) -> None:
        with self._lock:
            self.in_flight[kind] = self.in_flight.get(kind, 0) + 1
            self.most[kind] = max(self.most.get(kind, 0), self.in_flight[kind])
        time.sleep(0.02)

    def _leave(self, kind: str) -> None:
        with self._lock:
            self.in_flight[kind] -= 1

    def upload_blob(self, repository: str, digest: Digest, chunks: Iterable[bytes], *, what: str = "",
                    size: int | None = None, reopen: Callable[[], Iterable[bytes]] | None = None) -> int:
        self._enter("upload")
        try:
            return super().upload_blob(repository, digest, chunks, what=what)
        finally:
            self._leave("upload")

    def put_manifest(self, repository: str, ref: str, raw: bytes, media_type: str, *, push_scope: bool = True) -> None:
        self._enter("put")
        try:
            super().put_manifest(repository, ref, raw, media_type)
        finally:
            self._leave("put")

    def head_manifest(self, repository: str, ref: str) -> Digest | None:
        self._enter("head-manifest")
        try:
            return super().head_manifest(repository, ref)
        finally:
            self._leave("head-manifest")


@both
def test_jobs_one_reaches_every_fan_out_uploads_publishing_and_tag_checks(sequential: bool) -> None:
    release = Release({f"img{n}": [f"layer {n}".encode()] for n in range(6)})
    sink = OverlapSink()
    _copy(FakeSource(release, sequential=sequential), sink, release, jobs=1)
    assert len(sink.manifests) == 12  # 6 by digest, 6 tags
    assert sink.most == {"upload": 1, "put": 1, "head-manifest": 1}
    wide = OverlapSink()
    _copy(FakeSource(release, sequential=sequential), wide, release, jobs=4)
    assert wide.most["put"] > 1 and wide.most["head-manifest"] > 1  # the same sink shows overlap when allowed


class SlowHeadSink(FakeSink):
    """Each HEAD takes a millisecond, as over loopback: asking about every blob would take seconds."""

    def blob_exists(self, repository: str, digest: Digest, *, push_scope: bool = False) -> bool:
        time.sleep(0.001)
        return super().blob_exists(repository, digest, push_scope=push_scope)


def test_a_bundle_relying_on_10000_lacking_blobs_is_refused_after_the_first_few_questions(tmp_path: Path) -> None:
    """The refusal names a missing digest and says how many it knows of; it does not ask about all 10,000
    (10,000 HEADs took 15-21 s against a real registry before the refusal)."""
    relied = tuple(f"base layer {n}".encode() for n in range(10_000))
    release = Release({f"img{n}": [*relied[n * 500:(n + 1) * 500], f"layer of {n}".encode()] for n in range(20)},
                      relied=relied)  # 1,024 layers at most in one manifest
    path = _bundle(release, tmp_path / "diff.tar.zst")
    sink = SlowHeadSink()
    with open_bundle(path) as reader, pytest.raises(MissingBaseError) as info:
        copy_images(BundleSource(reader), sink, release.targets(), ImportResult(dry_run=False),
                    options=CopyOptions(jobs=4, where=f"{REGISTRY}/arc"), reporter=Reporter())
    heads = sink.calls("head")
    assert 1 <= len(heads) < 1_000, len(heads)
    message = str(info.value)
    digests = {str(Digest.of(x)) for x in relied}
    assert "relies on blobs from base.tar.zst that the target lacks: at least " in message
    assert "of 10000 blobs missing (stopped after asking about " in message
    assert message.split()[-1] in digests  # one missing digest named
    assert "nothing was changed" in (info.value.hint or "")
    assert not sink.calls("upload") and not sink.calls("mount")


def test_a_relied_on_blob_lacking_everywhere_is_named_with_an_exact_count_when_all_were_asked() -> None:
    release = Release({"a": [SHARED, b"layer of a"]}, relied=(SHARED,))
    with pytest.raises(MissingBaseError) as info:
        _copy(FakeSource(release, sequential=True), FakeSink(), release)
    assert str(info.value).endswith(f"that the target lacks: 1 of 1 blob missing, blob {Digest.of(SHARED)}")
