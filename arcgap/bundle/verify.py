"""``arcgap verify`` (offline, every byte) and ``arcgap inspect`` (the table of contents only)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arcgap.bundle.format import MANIFEST_KINDS, TableOfContents
from arcgap.bundle.graph import build_graph
from arcgap.bundle.limits import MAX_IMAGES, MAX_TEXT
from arcgap.bundle.reader import BundleReader
from arcgap.bundle.signature import BundleSignature
from arcgap.oci.digest import Digest
from arcgap.util.progress import Reporter

if TYPE_CHECKING:
    from arcgap.bundle.signing import VerifyKey


@dataclass(frozen=True)
class VerifyResult:
    images: int
    blobs: int
    content_bytes: int
    seconds: float
    relied_on_blobs: int = 0  # not in the bundle: the target must hold them (a differential bundle)
    relied_on_bytes: int = 0
    relies_on: tuple[str, ...] = ()  # the base bundles' names
    signed_by: Digest | None = None
    signature_checked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"command": "verify", "ok": True, "images": self.images, "blobs": self.blobs,
                "content_bytes": self.content_bytes, "relied_on_blobs": self.relied_on_blobs,
                "relied_on_bytes": self.relied_on_bytes, "relies_on": list(self.relies_on),
                "signed_by": str(self.signed_by) if self.signed_by else None,
                "signature_checked": self.signature_checked, "seconds": round(self.seconds, 3)}


def verify_bundle(
    reader: BundleReader, *, reporter: Reporter | None = None, verify_key: VerifyKey | None = None,
    accept_partial_signature: bool = False,
) -> VerifyResult:
    """Check the signature (with a key), read every blob (size + digest), check the graph and the OCI layout
    (relied-on blobs count as present at the target); raise on the first problem."""
    reporter = reporter or Reporter()
    t0 = time.monotonic()
    toc = reader.toc
    signature = reader.signature()
    if verify_key is not None:
        from arcgap.bundle.signing import check_bundle_signature

        check_bundle_signature(reader, verify_key, accept_partial=accept_partial_signature)
    reporter.start(toc.total_bytes, images=len(toc.images), label=f"verifying {reader.origin}")
    manifests: dict[Digest, bytes] = {}
    checked = False
    for entry, chunks in reader.blobs():
        if entry.kind in MANIFEST_KINDS:
            data = b"".join(chunks)
            manifests[entry.digest] = data
            reporter.advance(len(data))
            continue
        if not checked:  # where import checks it: after the manifests, before the first config or layer
            build_graph(toc, manifests, origin=reader.origin)
            checked = True
        for chunk in chunks:
            reporter.advance(len(chunk))
    if not checked:
        build_graph(toc, manifests, origin=reader.origin)
    reporter.close()
    return VerifyResult(
        len(toc.images), len(toc.blobs), toc.total_bytes, time.monotonic() - t0,
        relied_on_blobs=len(toc.relied_on_blobs), relied_on_bytes=toc.relied_on_bytes,
        relies_on=tuple(base.name for base in toc.relies_on),
        signed_by=signature.key_fingerprint if signature else None, signature_checked=verify_key is not None,
    )


def describe(toc: TableOfContents, signature: BundleSignature | None = None) -> dict[str, Any]:
    """The ``inspect --json`` document (a signature is shown, not checked: that takes --verify-key)."""
    sizes = {b.digest: b.size for b in toc.blobs}
    return {
        "command": "inspect",
        "format_version": toc.format_version,
        "signed_by": str(signature.key_fingerprint) if signature else None,
        "relies_on": [
            {"bundle": base.name, "identity": str(base.identity), "via": base.via, "blobs": len(base.blobs),
             "bytes": base.total_bytes}
            for base in toc.relies_on
        ],
        "arcgap_version": toc.arcgap_version,
        "created": toc.created,
        "source": {"registry": toc.source_registry, "repository": toc.source_repository},
        "images": [
            {
                "name": i.name,
                "tag": i.tag,
                "source": i.source,
                "digest": str(i.digest),
                "media_type": i.media_type,
                "platforms": [{"platform": p.platform, "digest": str(p.digest)} for p in i.platforms],
            }
            for i in toc.images
        ],
        "blobs": len(toc.blobs),
        "content_bytes": sum(sizes.values()),
        "skipped_images": skipped_images(toc),
        "releases": [{"tag": t, "images": sum(1 for i in toc.images if i.tag == t)} for t in toc.releases],
        "referrers": [r.to_dict() for r in toc.referrers],
    }


def skipped_images(toc: TableOfContents) -> list[dict[str, str]]:
    """What ``export --skip-missing`` left out, as recorded in ``arcgap.yaml`` (``{name, source}`` each).

    An optional field read from untrusted input: entries that are not a mapping of two strings are dropped
    rather than shown (nothing depends on them; they only tell the operator what the bundle lacks).
    """
    raw = toc.extra.get("skipped_images")
    if not isinstance(raw, list):
        return []
    return [{"name": e["name"][:MAX_TEXT], "source": e["source"][:MAX_TEXT]} for e in raw[:MAX_IMAGES]
            if isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("source"), str)]
