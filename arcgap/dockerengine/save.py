"""``arcgap export --engine docker``: the local engine pulls (or already holds) each image; ``docker save`` is
streamed and converted into the same bundle format (arcgap.yaml + OCI layout + docker's manifest.json).

Docker 20.10 (Debian's) saves the legacy format: ``manifest.json``, ``<image id>.json`` (the config) and
``<dir>/layer.tar`` (uncompressed layers, possibly symlinked). Each image becomes an OCI image manifest whose
config is the saved config byte for byte (so the image ID = config digest survives) and whose layers are the
uncompressed tars (their digests = the config's diff_ids), computed while the save streams.

A composition of the engine: :class:`SpoolSource` into a :class:`~arcgap.transfer.bundlesink.BundleSink`.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcgap.bundle.format import BlobEntry, BundleManifest, ImageEntry, PlatformEntry
from arcgap.bundle.graph import build_graph
from arcgap.bundle.writer import BundleWriter
from arcgap.dockerengine import check_events, engine_error
from arcgap.errors import ArcgapError, BundleFormatError, UsageError
from arcgap.oci.digest import Digest, Verifier, verified_chunks
from arcgap.oci.mediatypes import OCI_MANIFEST
from arcgap.transfer.bundlesink import BundleSink
from arcgap.transfer.bundlesource import metered
from arcgap.transfer.engine import copy_stream
from arcgap.transfer.source import Contents, Meter
from arcgap.util.progress import Reporter

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
SMALL_LIMIT = 16 * 1024 * 1024
CHUNK = 1 << 20


@dataclass(frozen=True)
class EngineImage:
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


def pull_images(client: Any, images: list[EngineImage], auth: dict[str, str] | None, reporter: Reporter) -> None:
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
            raise engine_error(f"docker pull {img.source}: {exc}") from None


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
        raise engine_error(f"docker save {source}: {exc}") from None
    except Exception as exc:  # APIError: no such image, engine gone
        raise engine_error(f"docker save {source}: {exc}") from None


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


def engine_export(client: Any, images: list[EngineImage], *, output: Path, source_registry: str,
                  source_repository: str, auth: dict[str, str] | None, level: int, threads: int,
                  overwrite: bool, split_bytes: int | None, reporter: Reporter, created: str):
    """Pull (when asked), save, convert and write the bundle; returns an
    :class:`arcgap.transfer.export.ExportResult`."""
    from arcgap.transfer.export import ExportResult

    t0 = time.monotonic()
    pull_images(client, images, auth, reporter)
    output.parent.mkdir(parents=True, exist_ok=True)
    spool = Path(tempfile.mkdtemp(prefix=f".{output.name}.spool-", dir=output.parent))
    try:
        small: dict[Digest, bytes] = {}
        manifests: dict[Digest, BlobEntry] = {}
        data: dict[Digest, BlobEntry] = {}
        files: dict[Digest, Path] = {}
        entries: list[ImageEntry] = []
        referenced = 0
        reporter.start(0, images=len(images), label="docker save")
        for img in images:
            reporter.phase(f"docker save {img.source}")
            saved = _Saved({}, {}, {})
            _spool_save(client, img.source, spool, saved, reporter)
            if "oci-layout" in saved.small and "manifest.json" not in saved.small:
                raise UsageError(f"docker save of {img.source} wrote an OCI layout without manifest.json",
                                 hint="this engine's save format is not supported yet; use the default engine")
            try:
                listing = json.loads(saved.small["manifest.json"])
                entry = listing[0]
                config_name = posixpath.normpath(entry["Config"])
                layer_names = [posixpath.normpath(x) for x in entry["Layers"]]
            except (KeyError, IndexError, ValueError, TypeError):
                raise engine_error(f"docker save {img.source}: no usable manifest.json in the saved image") from None
            config = saved.small.get(config_name)
            if config is None and config_name in saved.layers:  # docker 25+: config under blobs/
                config = saved.layers[config_name][2].read_bytes()
            if config is None:
                raise engine_error(f"docker save {img.source}: config {config_name} missing")
            config_digest = Digest.of(config)
            small[config_digest] = config
            data.setdefault(config_digest, BlobEntry(config_digest, len(config), OCI_CONFIG, "config"))
            layers = []
            for lname in layer_names:
                seen: set[str] = set()
                while lname in saved.links and lname not in seen:
                    seen.add(lname)
                    lname = saved.links[lname]
                if lname not in saved.layers:
                    raise engine_error(f"docker save {img.source}: layer {lname} missing")
                digest, size, path = saved.layers[lname]
                files.setdefault(digest, path)
                media_type = saved.types.get(lname, OCI_LAYER_TAR)
                data.setdefault(digest, BlobEntry(digest, size, media_type, "layer"))
                layers.append({"mediaType": media_type, "digest": str(digest), "size": size})
                referenced += size
            doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": {"mediaType": OCI_CONFIG, "digest": str(config_digest), "size": len(config)},
                   "layers": layers}
            raw = json.dumps(doc, separators=(",", ":")).encode()
            digest = Digest.of(raw)
            small[digest] = raw
            manifests.setdefault(digest, BlobEntry(digest, len(raw), OCI_MANIFEST, "manifest"))
            entries.append(ImageEntry(name=img.name, tag=img.tag, source=img.source, digest=digest,
                                      media_type=OCI_MANIFEST, size=len(raw),
                                      platforms=(PlatformEntry(_platform(config), digest, OCI_MANIFEST),)))
            referenced += len(raw) + len(config)
        reporter.close()
        blobs = [*manifests.values(), *[b for d, b in data.items() if d not in manifests]]
        manifest = BundleManifest(source_registry=source_registry, source_repository=source_repository,
                                  images=tuple(entries), blobs=tuple(blobs), created=created,
                                  extra={"engine": "docker"})
        reporter.start(manifest.total_bytes, images=len(entries), label=f"writing {output.name}")
        source = SpoolSource(manifest, small, files)
        with BundleWriter(output, level=level, threads=threads, overwrite=overwrite,
                          split_bytes=split_bytes) as writer:
            copy_stream(source, BundleSink(writer, manifest, small_blobs=small), meter=reporter.advance)
            bundle_bytes = writer.commit()
        reporter.close()
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return ExportResult(
        output=output, images=len(entries), blobs=len(manifest.blobs), content_bytes=manifest.total_bytes,
        bundle_bytes=bundle_bytes, dedupe_saved_bytes=max(0, referenced - manifest.total_bytes),
        seconds=time.monotonic() - t0, image_digests={i.source: str(i.digest) for i in entries},
        parts=tuple(str(p) for p in writer.parts),
        sidecar=str(writer.sidecar) if writer.sidecar is not None else None,
    )


class SpoolSource:
    """The saved images as a :class:`~arcgap.transfer.source.Source`: manifests and configs from memory, layers
    from the spool, each verified again as it is read back (the spool is a file on disk like any other)."""

    sequential = False

    def __init__(self, manifest: BundleManifest, small: dict[Digest, bytes], files: dict[Digest, Path]) -> None:
        self.manifest = manifest
        self.small = small
        self.files = files

    def contents(self, meter: Meter) -> Contents:
        manifests = {b.digest: self.small[b.digest] for b in self.manifest.blobs if b.kind in ("index", "manifest")}
        graphs = build_graph(self.manifest, manifests, origin="docker save")
        return Contents(self.manifest, tuple(graphs), manifests)

    def open(self, entry: BlobEntry, meter: Meter) -> Iterator[bytes]:
        data = self.small.get(entry.digest)
        if data is not None:
            return metered(iter((data,)), meter)
        path = self.files[entry.digest]
        return metered(verified_chunks(_file_chunks(path), Verifier(entry.digest, entry.size, what=f"spooled {path}")),
                       meter)

    def stream(self, meter: Meter) -> Iterator[tuple[BlobEntry, Iterator[bytes]]]:
        for entry in self.manifest.blobs:
            yield entry, self.open(entry, meter)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while data := f.read(CHUNK):
            yield data
