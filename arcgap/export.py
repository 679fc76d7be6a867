"""``arcgap export``: registry → one bundle file, in a single streaming pass."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from arcgap.bundle.format import INDEX_NAME, LAYOUT_NAME, MANIFEST_NAME, BlobEntry, BundleManifest
from arcgap.bundle.writer import BundleWriter
from arcgap.digest import Digest
from arcgap.plan import build_plan
from arcgap.prefetch import OrderedPrefetcher
from arcgap.progress import Reporter
from arcgap.registry.client import RegistryClient
from arcgap.resolve import Wanted, resolve_all


@dataclass(frozen=True)
class ExportResult:
    output: Path
    images: int
    blobs: int
    content_bytes: int
    bundle_bytes: int
    dedupe_saved_bytes: int
    seconds: float
    image_digests: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "export",
            "output": str(self.output),
            "images": self.images,
            "blobs": self.blobs,
            "content_bytes": self.content_bytes,
            "bundle_bytes": self.bundle_bytes,
            "dedupe_saved_bytes": self.dedupe_saved_bytes,
            "seconds": round(self.seconds, 3),
            "image_digests": self.image_digests,
        }


def creation_time() -> str:
    """RFC 3339 UTC; SOURCE_DATE_EPOCH pins it so the same images give a byte-identical bundle."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    moment = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def export_bundle(
    client_for: Callable[[str], RegistryClient],
    wanted: Sequence[Wanted],
    *,
    output: Path,
    source_registry: str,
    source_repository: str,
    jobs: int = 4,
    level: int = 3,
    threads: int = -1,
    platform: str | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> ExportResult:
    reporter = reporter or Reporter()
    t0 = time.monotonic()
    for registry in dict.fromkeys(w.reference.registry for w in wanted):
        client_for(registry).ping()
    reporter.phase(f"resolving {len(wanted)} images at {source_registry}")
    resolved = resolve_all(client_for, wanted, jobs=jobs, platform=platform)
    for img in resolved:
        if img.filtered_from is not None:
            reporter.warn(
                f"{img.wanted.reference}: --platform keeps one image of the index {img.filtered_from.short}; "
                f"the target will hold {img.top.digest.short}, not the source's index digest"
            )
    plan = build_plan(resolved, source_registry=source_registry, source_repository=source_repository,
                      created=creation_time())
    manifest = plan.manifest
    remote = [b for b in manifest.blobs if b.digest not in plan.small_blobs]
    finishing = _images_finished_by(plan.manifest, plan.image_blobs)

    def fetch(entry: BlobEntry) -> Iterator[bytes]:
        registry, repo = plan.blob_source[entry.digest]
        return client_for(registry).stream_blob(
            repo, entry.digest, entry.size, what=f"blob {entry.digest} of {registry}/{repo}"
        )

    reporter.start(manifest.total_bytes, images=len(manifest.images), label=f"exporting to {output.name}")
    with BundleWriter(output, level=level, threads=threads, overwrite=overwrite) as writer:
        writer.add_bytes(MANIFEST_NAME, manifest.to_yaml())
        writer.add_bytes(LAYOUT_NAME, manifest.oci_layout())
        writer.add_bytes(INDEX_NAME, manifest.oci_index())
        prefetcher = OrderedPrefetcher(remote, fetch, jobs=jobs)
        downloads = iter(prefetcher)
        try:
            for entry in manifest.blobs:
                if entry.digest in plan.small_blobs:
                    writer.add_bytes(entry.member, plan.small_blobs[entry.digest])
                    reporter.advance(entry.size)
                    continue
                fetched, chunks = next(downloads)
                assert fetched == entry
                writer.add_stream(entry.member, entry.size, _counted(chunks, reporter))
                for name in finishing.get(entry.digest, ()):
                    reporter.item_done(name)
        finally:
            prefetcher.close()
        bundle_bytes = writer.commit()
    reporter.close()
    return ExportResult(
        output=output,
        images=len(manifest.images),
        blobs=len(manifest.blobs),
        content_bytes=manifest.total_bytes,
        bundle_bytes=bundle_bytes,
        dedupe_saved_bytes=plan.dedupe_saved_bytes,
        seconds=time.monotonic() - t0,
        image_digests={i.source: str(i.digest) for i in manifest.images},
    )


def _images_finished_by(manifest: BundleManifest, image_blobs: dict[str, set[Digest]]) -> dict[Digest, list[str]]:
    """For per-image progress: the blob after which each image is completely in the bundle."""
    position = {b.digest: n for n, b in enumerate(manifest.blobs)}
    done: dict[Digest, list[str]] = {}
    for ref, blobs in image_blobs.items():
        if blobs:
            last = max(blobs, key=lambda d: position[d])
            done.setdefault(last, []).append(ref)
    return done


def _counted(chunks: Iterator[bytes], reporter: Reporter) -> Iterator[bytes]:
    for chunk in chunks:
        reporter.advance(len(chunk))
        yield chunk
