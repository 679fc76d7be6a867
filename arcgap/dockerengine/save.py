"""``arcgap export --engine docker``: the local engine pulls (or already holds) each image; ``docker save`` is
streamed and converted into the same bundle format (arcgap.yaml + OCI layout + docker's manifest.json).

Docker 20.10 (Debian's) saves the legacy format: ``manifest.json``, ``<image id>.json`` (the config) and
``<dir>/layer.tar`` (uncompressed layers, possibly symlinked). Each image becomes an OCI image manifest whose
config is the saved config byte for byte (so the image ID = config digest survives) and whose layers are the
uncompressed tars (their digests = the config's diff_ids), computed while the save streams.

A composition of the engine: :class:`SpoolSource` into an export's output (:class:`~arcgap.transfer.sink.ExportOutput`:
a bundle, or an OCI layout directory), its table of contents made by :func:`arcgap.transfer.plan.build_plan`.
A spool directory is unavoidable: arcgap.yaml (every digest and size) must come first in the bundle, and the
save's member order is not guaranteed, so layers are written once to a temporary directory next to the output
(removed afterwards) and then copied into the bundle. Configs and manifests stay in memory.
Docker 25+ saves an OCI layout *with* a ``manifest.json`` whose paths point into ``blobs/sha256/``: the same
conversion applies (layer media types follow the blobs' magic bytes). A save without ``manifest.json`` is
refused with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from arcgap.bundle.format import MANIFEST_KINDS, BlobEntry, TableOfContents
from arcgap.bundle.graph import build_graph
from arcgap.dockerengine import check_events, docker_engine_error
from arcgap.errors import ArcgapError, BundleFormatError, UsageError
from arcgap.oci.digest import Digest, Verifier, verified_chunks
from arcgap.oci.mediatypes import OCI_MANIFEST, parse_manifest
from arcgap.oci.reference import Reference
from arcgap.registry.client import FetchedManifest
from arcgap.registry.resolve import PlatformManifest, ResolvedImage, Wanted
from arcgap.transfer.bundlesource import metered
from arcgap.transfer.export import ExportResult
from arcgap.transfer.plan import build_plan
from arcgap.transfer.sink import ExportOutput
from arcgap.transfer.source import Contents, Meter
from arcgap.util.progress import Reporter

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
SMALL_LIMIT = 16 * 1024 * 1024
CHUNK = 1 << 20


@dataclass(frozen=True)
class DockerImage:
    name: str  # path in the bundle ("arc-controller")
    tag: str
    source: str  # what the engine knows it as (pulled reference or local name)
    pull: bool = True


class _ChunkReader:
    """A file-like view of ``image.save()``'s chunks, for tarfile's streaming mode."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data


@dataclass
class _Saved:
    small: dict[str, bytes]  # member name → bytes (json files)
    layers: dict[str, tuple[Digest, int, Path]]  # member name → (digest, size, spool file)
    links: dict[str, str]  # symlink member → target member
    types: dict[str, str] = field(default_factory=dict)  # member name → layer media type (by magic bytes)


def pull_images(client: Any, images: list[DockerImage], auth: dict[str, str] | None, reporter: Reporter) -> None:
    for img in images:
        if not img.pull:
            continue
        repo, _, tag = img.source.rpartition(":")
        reporter.phase(f"engine pulls {img.source}")
        try:
            for _ in check_events(client.api.pull(repo, tag=tag, stream=True, decode=True, auth_config=auth),
                                  what=f"docker pull {img.source}"):
                pass
        except ArcgapError:
            raise
        except Exception as exc:  # APIError outside the stream (e.g. 404 before it starts)
            raise docker_engine_error(f"docker pull {img.source}: {exc}") from None


def _spool_save(client: Any, source: str, spool: Path, saved: _Saved, reporter: Reporter) -> None:
    try:
        chunks = client.api.get_image(source, chunk_size=CHUNK)
        with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = posixpath.normpath(member.name)
                if member.issym() or member.islnk():
                    base = posixpath.dirname(name) if member.issym() else ""
                    saved.links[name] = posixpath.normpath(posixpath.join(base, member.linkname))
                    continue
                if not member.isfile():
                    continue
                fileobj = tar.extractfile(member)
                assert fileobj is not None
                if name.endswith(".json") or name in ("repositories", "oci-layout", "VERSION"):
                    if member.size > SMALL_LIMIT:
                        raise BundleFormatError(f"docker save of {source}: {name} is implausibly large")
                    saved.small[name] = fileobj.read()
                    continue
                h = hashlib.sha256()
                fd, tmp = tempfile.mkstemp(dir=spool)
                head = b""
                with os.fdopen(fd, "wb") as f:
                    while data := fileobj.read(CHUNK):
                        head = head or data[:4]
                        h.update(data)
                        f.write(data)
                        reporter.advance(len(data))
                saved.layers[name] = (Digest.parse("sha256:" + h.hexdigest()), member.size, Path(tmp))
                saved.types[name] = _layer_type(head)
    except ArcgapError:
        raise
    except (tarfile.TarError, OSError) as exc:
        raise docker_engine_error(f"docker save {source}: {exc}") from None
    except Exception as exc:  # APIError: no such image, engine gone
        raise docker_engine_error(f"docker save {source}: {exc}") from None


def _layer_type(head: bytes) -> str:
    """Legacy saves hold plain tars; docker 25+ (containerd store) may save compressed layer blobs."""
    if head.startswith(b"\x1f\x8b"):
        return OCI_LAYER_TAR + "+gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return OCI_LAYER_TAR + "+zstd"
    return OCI_LAYER_TAR


def _platform(config: bytes) -> str:
    try:
        doc = json.loads(config)
        plat = f"{doc.get('os') or 'linux'}/{doc.get('architecture') or 'unknown'}"
        return plat + (f"/{doc['variant']}" if doc.get("variant") else "")
    except (ValueError, AttributeError):
        return "unknown"


def docker_export(client: Any, images: list[DockerImage], *, output: ExportOutput, source_registry: str,
                  source_repository: str, auth: dict[str, str] | None, reporter: Reporter,
                  created: str) -> ExportResult:
    """Pull (when asked), save, convert and write ``output`` (a bundle, a layout directory)."""
    t0 = time.monotonic()
    pull_images(client, images, auth, reporter)
    path = output.path
    path.parent.mkdir(parents=True, exist_ok=True)
    spool = Path(tempfile.mkdtemp(prefix=f".{path.name}.spool-", dir=path.parent))
    try:
        files: dict[Digest, Path] = {}
        resolved: list[ResolvedImage] = []
        reporter.start(0, images=len(images), label="docker save")
        for img in images:
            reporter.phase(f"docker save {img.source}")
            saved = _Saved({}, {}, {})
            _spool_save(client, img.source, spool, saved, reporter)
            resolved.append(_as_resolved(img, saved, files))
        reporter.close()
        # the one table-of-contents builder (manifests first, each blob once); sources as the engine names them
        plan = build_plan(resolved, source_registry=source_registry, source_repository=source_repository,
                          created=created)
        entries = [replace(entry, source=img.source) for entry, img in zip(plan.toc.images, images)]
        toc = replace(plan.toc, images=tuple(entries), extra={"engine": "docker"})
        small = plan.small_blobs
        reporter.start(toc.total_bytes, images=len(entries), label=f"writing {path.name}")
        written = output.write(toc, SpoolSource(toc, small, files), small_blobs=small,
                               done=lambda _digest: None, meter=reporter.advance)
        reporter.close()
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return ExportResult(
        output=path, images=len(entries), blobs=len(toc.blobs), content_bytes=toc.total_bytes,
        bundle_bytes=written.total_bytes, dedupe_saved_bytes=max(0, plan.dedupe_saved_bytes),
        seconds=time.monotonic() - t0, image_digests={i.source: str(i.digest) for i in entries},
        parts=written.parts, sidecar=written.sidecar,
    )


def _as_resolved(img: DockerImage, saved: _Saved, files: dict[Digest, Path]) -> ResolvedImage:
    """One saved image as if resolved at a registry: an OCI image manifest whose config is the saved config byte
    for byte and whose layers are the saved (spooled) tars; ``files`` learns where each layer is spooled."""
    if "oci-layout" in saved.small and "manifest.json" not in saved.small:
        raise UsageError(f"docker save of {img.source} wrote an OCI layout without manifest.json",
                         hint="this engine's save format is not supported yet; use the default engine")
    try:
        listing = json.loads(saved.small["manifest.json"])
        entry = listing[0]
        config_name = posixpath.normpath(entry["Config"])
        layer_names = [posixpath.normpath(x) for x in entry["Layers"]]
    except (KeyError, IndexError, ValueError, TypeError):
        raise docker_engine_error(f"docker save {img.source}: no usable manifest.json in the saved image") from None
    config = saved.small.get(config_name)
    if config is None and config_name in saved.layers:  # docker 25+: config under blobs/
        config = saved.layers[config_name][2].read_bytes()
    if config is None:
        raise docker_engine_error(f"docker save {img.source}: config {config_name} missing")
    config_digest = Digest.of(config)
    layers = []
    for lname in layer_names:
        seen: set[str] = set()
        while lname in saved.links and lname not in seen:
            seen.add(lname)
            lname = saved.links[lname]
        if lname not in saved.layers:
            raise docker_engine_error(f"docker save {img.source}: layer {lname} missing")
        digest, size, path = saved.layers[lname]
        files.setdefault(digest, path)
        layers.append({"mediaType": saved.types.get(lname, OCI_LAYER_TAR), "digest": str(digest), "size": size})
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": str(config_digest), "size": len(config)},
           "layers": layers}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    fetched = FetchedManifest(raw, OCI_MANIFEST, Digest.of(raw))
    parsed = parse_manifest(raw, OCI_MANIFEST, what=f"docker save {img.source}")
    wanted = Wanted(img.name, Reference(registry="", repository=img.name, tag=img.tag))
    return ResolvedImage(wanted, fetched, (PlatformManifest(_platform(config), fetched, parsed),),
                         {config_digest: config})


class SpoolSource:
    """The saved images as a :class:`~arcgap.transfer.source.Source`: manifests and configs from memory, layers
    from the spool, each verified again as it is read back (the spool is a file on disk like any other)."""

    sequential = False

    def __init__(self, toc: TableOfContents, small: dict[Digest, bytes], files: dict[Digest, Path]) -> None:
        self.toc = toc
        self.small = small
        self.files = files

    def contents(self, meter: Meter) -> Contents:
        manifests = {b.digest: self.small[b.digest] for b in self.toc.blobs if b.kind in MANIFEST_KINDS}
        graphs = build_graph(self.toc, manifests, origin="docker save")
        return Contents(self.toc, tuple(graphs), manifests)

    def open(self, entry: BlobEntry, meter: Meter) -> Iterator[bytes]:
        data = self.small.get(entry.digest)
        if data is not None:
            return metered(iter((data,)), meter)
        path = self.files[entry.digest]
        return metered(verified_chunks(_file_chunks(path), Verifier(entry.digest, entry.size, what=f"spooled {path}")),
                       meter)

    def stream(self, meter: Meter) -> Iterator[tuple[BlobEntry, Iterator[bytes]]]:
        for entry in self.toc.blobs:
            yield entry, self.open(entry, meter)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while data := f.read(CHUNK):
            yield data
