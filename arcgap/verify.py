"""``arcgap verify`` (offline, every byte) and ``arcgap inspect`` (the table of contents only)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from arcgap.bundle.format import BundleManifest
from arcgap.bundle.reader import BundleReader
from arcgap.digest import Digest
from arcgap.graph import build_graph
from arcgap.progress import Reporter


@dataclass(frozen=True)
class VerifyResult:
    images: int
    blobs: int
    content_bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"command": "verify", "ok": True, "images": self.images, "blobs": self.blobs,
                "content_bytes": self.content_bytes, "seconds": round(self.seconds, 3)}


def verify_bundle(reader: BundleReader, *, reporter: Reporter | None = None) -> VerifyResult:
    """Read every blob (size + digest), check the graph and the OCI layout; raise on the first problem."""
    reporter = reporter or Reporter()
    t0 = time.monotonic()
    manifest = reader.manifest
    reporter.start(manifest.total_bytes, images=len(manifest.images), label=f"verifying {reader.origin}")
    manifests: dict[Digest, bytes] = {}
    for entry, chunks in reader.blobs():
        if entry.kind in ("index", "manifest"):
            data = b"".join(chunks)
            manifests[entry.digest] = data
            reporter.advance(len(data))
        else:
            for chunk in chunks:
                reporter.advance(len(chunk))
    build_graph(manifest, manifests, origin=reader.origin)
    reporter.close()
    return VerifyResult(len(manifest.images), len(manifest.blobs), manifest.total_bytes, time.monotonic() - t0)


def describe(manifest: BundleManifest) -> dict[str, Any]:
    """The ``inspect --json`` document."""
    sizes = {b.digest: b.size for b in manifest.blobs}
    return {
        "command": "inspect",
        "format_version": manifest.format_version,
        "arcgap_version": manifest.arcgap_version,
        "created": manifest.created,
        "source": {"registry": manifest.source_registry, "repository": manifest.source_repository},
        "images": [
            {
                "name": i.name,
                "tag": i.tag,
                "source": i.source,
                "digest": str(i.digest),
                "media_type": i.media_type,
                "platforms": [{"platform": p.platform, "digest": str(p.digest)} for p in i.platforms],
            }
            for i in manifest.images
        ],
        "blobs": len(manifest.blobs),
        "content_bytes": sum(sizes.values()),
    }
