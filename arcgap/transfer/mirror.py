"""``arcgap mirror``: source registry → target registry in one pass, no bundle and no disk.

The same order as import: every blob is placed first (skipped when the target has it, mounted from another
target repository that holds it, else streamed source → target with ``--jobs`` copies in parallel, verified
by :meth:`RegistryClient.stream_blob` on the way), then manifests by digest, then tags, then every tag re-read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from arcgap.bundle.format import BlobEntry
from arcgap.oci.digest import Digest
from arcgap.registry.client import RegistryClient
from arcgap.registry.resolve import ResolvedImage, Wanted, resolve_all
from arcgap.transfer.importer import ImageOutcome, ImportResult
from arcgap.transfer.placement import Placements
from arcgap.transfer.plan import ExportPlan, TargetImage, build_plan, map_targets
from arcgap.transfer.publish import Publication, push_manifests_and_tags, verify_tags
from arcgap.util.parallel import each
from arcgap.util.progress import Reporter, human_bytes


@dataclass
class MirrorResult(ImportResult):
    """Import's result, plus where from and how much had to move (the same numbers for a dry run)."""

    source: str = ""  # registry/repository
    target: str = ""
    content_bytes: int = 0  # configs and layers the images need, each once
    missing_bytes: int = 0  # of those, bytes the target lacked in every repository: what a copy must move
    present_bytes: int = 0  # bytes the target already held in every repository that needs them
    image_digests: dict[str, str] = field(default_factory=dict)  # source reference → digest

    def to_dict(self) -> dict[str, Any]:
        doc = super().to_dict()
        doc["command"] = "mirror"
        doc.update(source=self.source, target=self.target, content_bytes=self.content_bytes,
                   missing_bytes=self.missing_bytes, present_bytes=self.present_bytes,
                   image_digests=self.image_digests)
        return doc


@dataclass(frozen=True)
class _Image:
    target: TargetImage
    top_raw: bytes
    children: tuple[tuple[Digest, bytes, str], ...]  # platform manifests of an index, pushed before it
    blobs: frozenset[Digest]  # configs and layers


def _images(resolved: Sequence[ResolvedImage], targets: Sequence[TargetImage]) -> list[_Image]:
    out: list[_Image] = []
    for img, target in zip(resolved, targets):
        children = tuple(dict.fromkeys(
            (p.manifest.digest, p.manifest.raw, p.manifest.media_type)
            for p in img.platforms if p.manifest.digest != img.top.digest))
        blobs = frozenset(d.digest for p in img.platforms for d in p.parsed.blobs)
        out.append(_Image(target, img.top.raw, children, blobs))
    return out


class _Mirror:
    def __init__(self, source_for: Callable[[str], RegistryClient], client: RegistryClient, plan: ExportPlan,
                 images: list[_Image], *, jobs: int, reporter: Reporter, dry_run: bool) -> None:
        self.source_for = source_for
        self.client = client
        self.plan = plan
        self.images = images
        self.jobs = jobs
        self.reporter = reporter
        self.dry_run = dry_run
        self.entries = {b.digest: b for b in plan.manifest.blobs if b.kind in ("config", "layer")}
        self.placements = Placements(client)
        for image in images:
            self.placements.need(image.target.repository, image.blobs)
        self._lock = threading.Lock()  # result and the reporter are shared by the copy workers
        self.result = MirrorResult(dry_run=dry_run)

    # -- blobs ----------------------------------------------------------------------------------------------

    def _check_present(self) -> None:
        digests = self.placements.digests
        self.reporter.phase(f"checking which of {len(digests)} blobs {self.client.registry} already has")
        self.placements.check(jobs=self.jobs)
        for digest in digests:
            size = self.entries[digest].size
            if not self.placements.missing(digest):
                self.result.present_bytes += size
            elif self.placements.holder(digest) is None:
                self.result.missing_bytes += size
        self.result.content_bytes = sum(self.entries[d].size for d in digests)

    def _chunks(self, entry: BlobEntry) -> Iterator[bytes]:
        """The blob's verified bytes: a config from memory (verified when resolved), else streamed from the source."""
        data = self.plan.small_blobs.get(entry.digest)
        if data is not None:
            return iter((data,))
        registry, repo = self.plan.blob_source[entry.digest]
        return self.source_for(registry).stream_blob(repo, entry.digest, entry.size,
                                                     what=f"blob {entry.digest} of {registry}/{repo}")

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            with self._lock:
                self.result.verified_bytes += len(chunk)
                self.reporter.advance(len(chunk))
            yield chunk

    def _copy(self, repo: str, entry: BlobEntry) -> None:
        self.client.upload_blob(repo, entry.digest, self._counted(self._chunks(entry)),
                                what=f"blob {entry.digest} to {self.client.registry}/{repo}")
        self.placements.placed(repo, entry.digest, "uploaded", entry.size)

    def _place(self, digest: Digest) -> None:
        """One blob, all its repositories: one task, so a mount never races the upload it mounts from."""
        entry = self.entries[digest]
        missing = self.placements.missing(digest)
        if not missing:
            with self._lock:
                self.result.skipped_blobs += 1
                self.result.skipped_bytes += entry.size
                self.reporter.advance(entry.size)
            return
        holder = self.placements.holder(digest)
        if holder is None:
            holder = missing.pop(0)
            self._copy(holder, entry)
        else:
            with self._lock:
                self.reporter.advance(entry.size)
        for repo in missing:
            if not self.placements.mount(repo, digest, holder):  # refused: stream it from the source once more
                self._copy(repo, entry)

    # -- run ----------------------------------------------------------------------------------------------

    def run(self) -> MirrorResult:
        t0 = time.monotonic()
        self._check_present()
        self.result.blobs = len(self.plan.manifest.blobs)
        current = each(lambda i: self.client.head_manifest(i.target.repository, i.target.tag), self.images,
                       jobs=self.jobs)
        if self.dry_run:
            self.reporter.phase(
                f"dry run: {human_bytes(self.result.missing_bytes)} would move, "
                f"{human_bytes(self.result.present_bytes)} of {human_bytes(self.result.content_bytes)} "
                "already at the target; nothing changed")
        else:
            self.reporter.start(self.result.content_bytes, images=len(self.images),
                                label=f"mirroring into {self.client.registry}")
            # the first failure stops the run before any manifest moves
            each(self._place, self.placements.digests, jobs=self.jobs, name="arcgap-mirror")
            self._push(current)
            self._verify_tags()
        self._describe(current)
        self.reporter.close()
        self.result.seconds = time.monotonic() - t0
        return self.result

    def _push(self, current: list[Digest | None]) -> None:
        pubs = [Publication(i.target, i.top_raw, i.children) for i in self.images]
        push_manifests_and_tags(self.client, pubs, current, self.reporter)

    def _verify_tags(self) -> None:
        verify_tags(self.client, [i.target for i in self.images])

    def _describe(self, current: list[Digest | None]) -> None:
        self.result.uploaded_blobs = self.placements.uploaded_blobs
        self.result.uploaded_bytes = self.placements.uploaded_bytes
        self.result.mounted_blobs = self.placements.mounted_blobs
        for image, now in zip(self.images, current):
            summary = self.placements.summary(image.target.repository, image.blobs, dry_run=self.dry_run)
            action = summary.action
            if now == image.target.entry.digest:
                action = "skipped"
                self.result.skipped_tags += 1
            self.result.outcomes.append(
                ImageOutcome(image.target, action, summary.uploaded, summary.mounted, summary.present))
            self.result.image_digests[image.target.entry.source] = str(image.target.entry.digest)


def mirror_images(
    source_for: Callable[[str], RegistryClient],
    client: RegistryClient,
    wanted: Sequence[Wanted],
    *,
    source_registry: str,
    source_repository: str,
    target_repository: str,
    target_tag: str | None,
    jobs: int = 4,
    reporter: Reporter | None = None,
    dry_run: bool = False,
) -> MirrorResult:
    """Resolve every image at the source (a missing one stops the run before the target is touched), then copy."""
    reporter = reporter or Reporter()
    for registry in dict.fromkeys(w.reference.registry for w in wanted):
        source_for(registry).ping()
    client.ping()
    reporter.phase(f"resolving {len(wanted)} images at {source_registry}")
    resolved = resolve_all(source_for, wanted, jobs=jobs)
    plan = build_plan(resolved, source_registry=source_registry, source_repository=source_repository,
                      created="")
    targets = map_targets(plan.manifest, registry=client.registry, repository=target_repository, tag=target_tag)
    mirror = _Mirror(source_for, client, plan, _images(resolved, targets), jobs=jobs, reporter=reporter,
                     dry_run=dry_run)
    result = mirror.run()
    result.source = f"{source_registry}/{source_repository}"
    result.target = f"{client.registry}/{target_repository}"
    return result
