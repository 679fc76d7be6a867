"""``arcgap mirror``: source registry → target registry in one pass, no bundle and no disk.

A composition of the engine: :class:`~arcgap.transfer.registrysource.RegistrySource` into a registry as the sink.
Every blob is placed first (skipped when the target has it, mounted from another target repository that holds
it, else streamed source → target with ``--jobs`` copies in parallel, verified on the way), then manifests by
digest, then tags, then every tag re-read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from arcgap.registry.client import RegistryClient
from arcgap.registry.ranged import RangedOptions
from arcgap.registry.resolve import Wanted, resolve_all
from arcgap.transfer.engine import CopyOptions, copy_images
from arcgap.transfer.plan import build_plan, map_targets
from arcgap.transfer.referrers import ReferrerOptions, TagListPrefetch, add_to_plan, discover_for_images
from arcgap.transfer.registrysource import RegistrySource
from arcgap.transfer.sink import Sink
from arcgap.transfer.tally import ImportResult
from arcgap.util.parallel import DEFAULT_JOBS
from arcgap.util.progress import Reporter, human_bytes


@dataclass
class MirrorResult(ImportResult):
    """Import's result, plus where from and how much had to move (the same numbers for a dry run)."""

    source: str = ""  # registry/repository
    target: str = ""
    image_digests: dict[str, str] = field(default_factory=dict)  # source reference → digest

    def to_dict(self) -> dict[str, Any]:
        doc = super().to_dict()
        doc["command"] = "mirror"
        doc.update(source=self.source, target=self.target, content_bytes=self.content_bytes,
                   missing_bytes=self.missing_bytes, present_bytes=self.present_bytes,
                   image_digests=self.image_digests)
        return doc


def mirror_images(
    source_for: Callable[[str], RegistryClient],
    client: Sink,
    wanted: Sequence[Wanted],
    *,
    source_registry: str,
    source_repository: str,
    target_repository: str,
    target_tag: str | None,
    jobs: int = DEFAULT_JOBS,
    reporter: Reporter | None = None,
    dry_run: bool = False,
    referrers: ReferrerOptions = ReferrerOptions(),  # noqa: B008 - frozen
    ranged: RangedOptions | None = None,
) -> MirrorResult:
    """Resolve every image at the source (a missing one stops the run before the target is touched), then copy;
    ``ranged``: how large blobs are read in parallel ranges (None: the defaults)."""
    reporter = reporter or Reporter()
    for registry in dict.fromkeys(w.reference.registry for w in wanted):
        source_for(registry).ping()
    client.ping()
    reporter.phase(f"resolving {len(wanted)} images at {source_registry}")
    with TagListPrefetch(source_for, wanted, referrers, jobs=jobs) as prefetch:
        resolved = resolve_all(source_for, wanted, jobs=jobs, on_each=prefetch.probe)
        plan = build_plan(resolved, source_registry=source_registry, source_repository=source_repository,
                          created="")
        plan = add_to_plan(plan, resolved, discover_for_images(source_for, resolved, referrers, jobs=jobs,
                                                               prefetch=prefetch))
    targets = map_targets(plan.toc, registry=client.registry, repository=target_repository, tag=target_tag)
    options = CopyOptions(jobs=jobs, dry_run=dry_run, label=f"mirroring into {client.registry}",
                          where=f"{client.registry}/{target_repository}")
    result = MirrorResult(dry_run=dry_run, source=f"{source_registry}/{source_repository}",
                          target=f"{client.registry}/{target_repository}")
    copy_images(RegistrySource(plan, resolved, source_for, jobs=jobs, ranged=ranged), client, targets, result,
                options=options, reporter=reporter)
    result.image_digests = {t.entry.source: str(t.entry.digest) for t in targets}
    if dry_run:
        reporter.phase(
            f"dry run: {human_bytes(result.missing_bytes)} would move, "
            f"{human_bytes(result.present_bytes)} of {human_bytes(result.content_bytes)} "
            "already at the target; nothing changed")
    return result
