"""The transfer plan, pure: from resolved images to the bundle's table of contents and blob order.

With bases (``export --since``), configs and layers a base already holds are left out and listed under
``relies_on`` instead; manifests always stay in the bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from arcgap.bundle.format import BaseBundle, BlobEntry, ImageEntry, PlatformEntry, TableOfContents, needed_version
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import is_index
from arcgap.registry.resolve import ResolvedImage


@dataclass(frozen=True)
class ExportPlan:
    toc: TableOfContents
    small_blobs: dict[Digest, bytes]  # manifests and configs already in memory
    blob_source: dict[Digest, tuple[str, str]]  # (registry, repository) to download each remaining blob from
    referenced_bytes: int  # sum over images, before de-duplication
    image_blobs: dict[str, set[Digest]]  # image ref_name → every blob it needs (for progress)

    @property
    def dedupe_saved_bytes(self) -> int:
        return self.referenced_bytes - self.toc.total_bytes - self.toc.relied_on_bytes


def build_plan(
    images: Sequence[ResolvedImage], *, source_registry: str, source_repository: str, created: str,
    bases: Sequence[BaseBundle] = (), signed: bool = False,
) -> ExportPlan:
    """Manifests first (the importer checks the graph before big blobs arrive), then configs and layers,
    each blob once, in first-seen order; the same images always give the same plan.

    ``bases`` hold every config and layer the far side already has (:mod:`arcgap.transfer.since`); those are left out.
    """
    entries: list[ImageEntry] = []
    manifest_blobs: dict[Digest, BlobEntry] = {}
    data_blobs: dict[Digest, BlobEntry] = {}
    small: dict[Digest, bytes] = {}
    source: dict[Digest, tuple[str, str]] = {}
    referenced = 0
    image_blobs: dict[str, set[Digest]] = {}
    for img in images:
        mine = image_blobs.setdefault(f"{img.wanted.name}:{img.wanted.reference.tag or 'latest'}", set())
        repo = (img.wanted.reference.registry, img.wanted.reference.repository)
        top = img.top
        kind = "index" if is_index(top.media_type) else "manifest"
        manifest_blobs.setdefault(top.digest, BlobEntry(top.digest, len(top.raw), top.media_type, kind))
        small[top.digest] = top.raw
        referenced += len(top.raw)
        for p in img.platforms:
            m = p.manifest
            if m.digest != top.digest:
                manifest_blobs.setdefault(m.digest, BlobEntry(m.digest, len(m.raw), m.media_type, "manifest"))
                small[m.digest] = m.raw
                referenced += len(m.raw)
            for i, d in enumerate(p.parsed.blobs):
                kind = "config" if i == 0 else "layer"
                referenced += d.size
                mine.add(d.digest)
                if d.digest not in data_blobs:
                    data_blobs[d.digest] = BlobEntry(d.digest, d.size, d.media_type, kind)
                    source[d.digest] = repo
        for digest, data in img.configs.items():
            small[digest] = data
        entries.append(
            ImageEntry(
                name=img.wanted.name,
                tag=img.wanted.reference.tag or "latest",
                source=str(img.wanted.reference),
                digest=top.digest,
                media_type=top.media_type,
                size=len(top.raw),
                platforms=tuple(PlatformEntry(p.platform, p.manifest.digest, p.manifest.media_type)
                                for p in img.platforms),
            )
        )
    # A digest can't be both a manifest and a layer in practice; if it were, keep the manifest entry.
    data = [b for d, b in data_blobs.items() if d not in manifest_blobs]
    relies_on = _relied_on(data, bases)
    omitted = {b.digest for base in relies_on for b in base.blobs}
    blobs = list(manifest_blobs.values()) + [b for b in data if b.digest not in omitted]
    toc = TableOfContents(
        source_registry=source_registry,
        source_repository=source_repository,
        images=tuple(entries),
        blobs=tuple(blobs),
        created=created,
        format_version=needed_version(differential=bool(relies_on), signed=signed),
        relies_on=relies_on,
    )
    for digest in omitted:
        small.pop(digest, None)
        source.pop(digest, None)
    image_blobs = {ref: digests - omitted for ref, digests in image_blobs.items()}
    return ExportPlan(toc, small, source, referenced, image_blobs)


def _relied_on(data: Sequence[BlobEntry], bases: Sequence[BaseBundle]) -> tuple[BaseBundle, ...]:
    """Each left-out blob is attributed to the first base holding it; bases that hold none are dropped."""
    taken: set[Digest] = set()
    narrowed: list[BaseBundle] = []
    for base in bases:
        held = {b.digest for b in base.blobs}
        mine = tuple(b for b in data if b.digest in held and b.digest not in taken)
        taken.update(b.digest for b in mine)
        if mine:
            narrowed.append(replace(base, blobs=mine))
    return tuple(narrowed)


@dataclass(frozen=True)
class TargetImage:
    entry: ImageEntry
    registry: str
    repository: str
    tag: str

    @property
    def reference(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"


def map_targets(
    toc: TableOfContents, *, registry: str, repository: str, tag: str | None
) -> list[TargetImage]:
    """``<src reg>/<src repo>/<name>:<tag>`` → ``<registry>/<repository>/<name>:<tag or image tag>``."""
    from arcgap.errors import UsageError, option, variable
    from arcgap.oci.reference import join_repository, validate_tag

    if tag:
        validate_tag(tag)
    if repository.strip("/"):
        join_repository(repository)  # the operator's own value: its own error
    targets: list[TargetImage] = []
    seen: dict[str, str] = {}
    for entry in toc.images:
        try:
            joined = join_repository(repository, entry.name)
        except UsageError:  # the name is the bundle's: say so, and what the operator can change
            full = "/".join(p.strip("/") for p in (repository, entry.name) if p and p.strip("/"))
            raise UsageError(
                f"image {entry.name[:80]!r} from the bundle ({entry.source[:200]}) would become the target "
                f"repository {full[:80]!r}… of {len(full)} characters, which registries refuse (at most 255)",
                hint=f"choose a shorter {variable('target.repository')} ({option('target.repository')}); "
                     "the name comes from the bundle",
            ) from None
        t = TargetImage(entry, registry, joined, tag or entry.tag)
        if t.reference in seen:
            raise UsageError(
                f"{entry.source} and {seen[t.reference]} would both become {t.reference}",
                hint=f"leave {variable('target.tag')} empty so each image keeps its own tag",
            )
        seen[t.reference] = entry.source
        targets.append(t)
    return targets
