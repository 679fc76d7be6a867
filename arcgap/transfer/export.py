"""``arcgap export``: registry → one bundle file (or an OCI layout directory), in a single streaming pass.

A composition of the engine: :class:`~arcgap.transfer.registrysource.RegistrySource` (downloads read ahead,
through the blob cache) into an :class:`~arcgap.transfer.sink.ExportOutput`: :class:`BundleOutput` (a
:class:`~arcgap.transfer.bundlesink.BundleSink`) or :class:`arcgap.transfer.ocilayout.LayoutOutput`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arcgap.arc.chain import chain_summary, with_releases
from arcgap.bundle.diskspace import estimate_bundle_bytes
from arcgap.bundle.format import BaseBundle, TableOfContents
from arcgap.bundle.writer import BundleWriter
from arcgap.errors import option
from arcgap.oci.digest import Digest
from arcgap.registry.client import RegistryClient
from arcgap.registry.resolve import Wanted, resolve_all
from arcgap.transfer.bundlesink import BundleSink
from arcgap.transfer.cache import BlobCache
from arcgap.transfer.engine import copy_stream
from arcgap.transfer.plan import build_plan
from arcgap.transfer.referrers import ReferrerOptions, TagListPrefetch, add_to_plan, discover_for_images
from arcgap.transfer.referrers import summary as referrers_summary
from arcgap.transfer.refetch import once_more
from arcgap.transfer.registrysource import RegistrySource
from arcgap.transfer.sink import ExportOutput, Written
from arcgap.transfer.source import Meter, Source
from arcgap.util.progress import Reporter

if TYPE_CHECKING:
    from arcgap.bundle.signing import Signer
    from arcgap.registry.ranged import RangedOptions


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
    parts: tuple[str, ...] = ()  # the files written: the bundle, or NAME.001, NAME.002, …
    sidecar: str | None = None  # NAME.parts.yaml
    cache: dict[str, Any] | None = None  # what the blob cache served and stored (arcgap.transfer.cache.CacheStats)
    relied_on_blobs: int = 0  # --since: blobs left out because the far side holds them
    relied_on_bytes: int = 0
    relies_on: tuple[str, ...] = ()  # the base bundles' names
    signed_by: str | None = None  # --sign: the key's fingerprint
    skipped_images: tuple[dict[str, str], ...] = ()  # --skip-missing: {name, source} of each image left out
    installer: dict[str, Any] | None = None  # --with-installer: arcgap.installer.build.InstallerResult.to_dict()
    chain: dict[str, Any] | None = None  # several releases: arcgap.arc.chain.ChainSharing.to_dict()
    referrers: dict[str, Any] | None = None  # arcgap.transfer.referrers.summary; None: not looked for

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
            "parts": list(self.parts),
            "sidecar": self.sidecar,
            **({"cache": self.cache} if self.cache is not None else {}),
            "relied_on_blobs": self.relied_on_blobs,
            "relied_on_bytes": self.relied_on_bytes,
            "relies_on": list(self.relies_on),
            "signed_by": self.signed_by,
            "skipped_images": [dict(s) for s in self.skipped_images],
            "installer": self.installer,
            **({"chain": self.chain} if self.chain is not None else {}),
            **({"referrers": self.referrers} if self.referrers is not None else {}),
        }


def creation_time() -> str:
    """RFC 3339 UTC; SOURCE_DATE_EPOCH pins it so the same images give a byte-identical bundle."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    moment = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class BundleOutput:
    """A bundle file (or its parts) as an :class:`~arcgap.transfer.sink.ExportOutput`."""

    path: Path
    level: int = 3
    threads: int = -1
    overwrite: bool = False
    split_bytes: int | None = None
    space_check: bool = True
    signer: Signer | None = None

    @property
    def signed(self) -> bool:
        return self.signer is not None

    def write(self, toc: TableOfContents, source: Source, *, small_blobs: dict[Digest, bytes],
              done: Callable[[Digest], None], meter: Meter,
              warn: Callable[[str], None] = lambda _text: None) -> Written:
        expected_bytes = estimate_bundle_bytes(toc) if self.space_check else None

        def attempt(meter: Meter, done: Callable[[Digest], None]) -> Written:
            with BundleWriter(self.path, level=self.level, threads=self.threads, overwrite=self.overwrite,
                              split_bytes=self.split_bytes, expected_bytes=expected_bytes) as writer:
                sink = BundleSink(writer, toc, small_blobs=small_blobs, signer=self.signer, done=done)
                copy_stream(source, sink, meter=meter)
                total_bytes = writer.commit()
            return Written(total_bytes, parts=tuple(str(p) for p in writer.parts),
                           sidecar=str(writer.sidecar) if writer.sidecar is not None else None)

        # A blob a registry served with other content is already partly in the zstd stream: the bundle is
        # written again from its start (arcgap.transfer.refetch), the blobs before it from the blob cache.
        return once_more(attempt, meter=meter, done=done, warn=warn, again="writing the bundle again from its start")


def export_bundle(
    client_for: Callable[[str], RegistryClient],
    wanted: Sequence[Wanted],
    *,
    output: ExportOutput,
    source_registry: str,
    source_repository: str,
    jobs: int,
    platform: str | None = None,
    reporter: Reporter | None = None,
    cache: BlobCache | None = None,
    bases: Sequence[BaseBundle] = (),
    skipped_images: Sequence[Mapping[str, str]] = (),
    releases: Sequence[str] = (),
    referrers: ReferrerOptions = ReferrerOptions(),  # noqa: B008 - frozen
    ranged: RangedOptions | None = None,
) -> ExportResult:
    """Resolve ``wanted``, plan, and copy every blob into ``output`` (a bundle, a layout directory); ``ranged``:
    how large blobs are read in parallel ranges (None: the defaults)."""
    reporter = reporter or Reporter()
    t0 = time.monotonic()
    for registry in dict.fromkeys(w.reference.registry for w in wanted):
        client_for(registry).ping()
    reporter.phase(f"resolving {len(wanted)} images at {source_registry}")
    with TagListPrefetch(client_for, wanted, referrers, jobs=jobs) as prefetch:
        resolved = resolve_all(client_for, wanted, jobs=jobs, platform=platform, on_each=prefetch.probe)
        for img in resolved:
            if img.filtered_from is not None:
                reporter.warn(
                    f"{img.wanted.reference}: {option('platform')} keeps one image of the index "
                    f"{img.filtered_from.short}; the target will hold {img.top.digest.short}, not the source's index "
                    "digest"
                )
        plan = build_plan(resolved, source_registry=source_registry, source_repository=source_repository,
                          created=creation_time(), bases=bases, signed=output.signed)
        if referrers.enabled:
            reporter.phase(f"looking for referrers of {len(resolved)} images")
        found = discover_for_images(client_for, resolved, referrers, jobs=jobs, prefetch=prefetch)
    plan = add_to_plan(plan, resolved, found)
    toc = plan.toc
    if skipped_images:  # --skip-missing: arcgap.yaml tells the far side what this bundle lacks
        toc = replace(toc, extra={**toc.extra, "skipped_images": [dict(s) for s in skipped_images]})
    if len(releases) > 1:  # an upgrade chain: arcgap.yaml names its releases, oldest first
        toc = with_releases(toc, releases)
    finishing = _images_finished_by(plan.toc, plan.image_blobs)
    source = RegistrySource(replace(plan, toc=toc), resolved, client_for, cache=cache, jobs=jobs, ranged=ranged)

    def done(digest: Digest) -> None:
        for name in finishing.get(digest, ()):
            reporter.item_done(name)

    reporter.start(toc.total_bytes, images=len(toc.images), label=f"exporting to {output.path.name}")
    written = output.write(toc, source, small_blobs=plan.small_blobs, done=done, meter=reporter.advance,
                           warn=reporter.warn)
    reporter.close()
    return ExportResult(
        output=output.path,
        images=len(toc.images),
        blobs=len(toc.blobs),
        content_bytes=toc.total_bytes,
        bundle_bytes=written.total_bytes,
        dedupe_saved_bytes=plan.dedupe_saved_bytes,
        seconds=time.monotonic() - t0,
        image_digests={i.source: str(i.digest) for i in toc.images},
        relied_on_blobs=len(toc.relied_on_blobs),
        relied_on_bytes=toc.relied_on_bytes,
        relies_on=tuple(base.name for base in toc.relies_on),
        signed_by=str(output.signer.fingerprint) if isinstance(output, BundleOutput) and output.signer else None,
        parts=written.parts,
        sidecar=written.sidecar,
        skipped_images=tuple(dict(s) for s in skipped_images),
        chain=chain_summary(toc, plan.image_blobs) if toc.releases else None,
        referrers=referrers_summary(found) if referrers.enabled else None,
    )


def _images_finished_by(toc: TableOfContents, image_blobs: dict[str, set[Digest]]) -> dict[Digest, list[str]]:
    """For per-image progress: the blob after which each image is completely in the bundle."""
    position = {b.digest: n for n, b in enumerate(toc.blobs)}
    done: dict[Digest, list[str]] = {}
    for ref, blobs in image_blobs.items():
        if blobs:
            last = max(blobs, key=lambda d: position[d])
            done.setdefault(last, []).append(ref)
    return done


