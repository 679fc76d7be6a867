"""Placing referrers at the target (import and mirror), after their subjects and the images' tags.

The target is probed once a run for the referrers API; repositories are placed ``jobs`` at a time. Each
referrer is pushed by digest, subjects first (the order of ``referrers`` in arcgap.yaml); where the registry
answers ``OCI-Subject`` it indexes the referrer itself and nothing more is written. Where it does not (CNCF
distribution: no API), the fallback tag ``sha256-<hex>`` of each subject is maintained by read-merge-write,
never dropping a referrer someone else put there. Legacy cosign referrers go back under their own tags
(``sha256-<hex>.sig`` …).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from arcgap.bundle.graph import ImageGraph
from arcgap.errors import RegistryError
from arcgap.oci.digest import Digest
from arcgap.registry.client import RegistryClient
from arcgap.registry.referrers import merge_fallback, probe_api, push_referrer
from arcgap.transfer.plan import TargetImage
from arcgap.util.parallel import DEFAULT_JOBS, each
from arcgap.util.progress import Reporter


@dataclass
class Placed:
    """What placing referrers did: for the summary, ``--json`` and the receipt."""

    api: bool | None = None  # the target's probe: None when nothing was placed
    by_api: int = 0  # referrers the registry acknowledged with OCI-Subject
    by_fallback: int = 0  # referrers listed in a fallback tag index (this run added or found them there)
    by_tag: int = 0  # legacy cosign tags written or already at their digest
    fallback_tags: list[str] = field(default_factory=list)  # repository:tag of each index written
    unplaced: list[str] = field(default_factory=list)  # why some could not be made findable

    @property
    def total(self) -> int:
        return self.by_api + self.by_fallback + self.by_tag

    def way(self) -> str:
        return "none" if self.api is None else ("referrers API" if self.api else "fallback tags")

    def to_dict(self) -> dict[str, Any]:
        return {"target_api": self.api, "way": self.way(), "by_api": self.by_api, "by_fallback": self.by_fallback,
                "by_tag": self.by_tag, "fallback_tags": list(self.fallback_tags), "unplaced": list(self.unplaced)}


def place_referrers(sink: object, targets: Sequence[TargetImage], graphs: Sequence[ImageGraph],
                    reporter: Reporter, *, jobs: int = DEFAULT_JOBS) -> Placed:
    """Every graph's referrers into its target repository; the images' manifests are already there. One
    repository's referrers are placed in order (subjects first, each once); ``jobs`` repositories at a time."""
    placed = Placed()
    work = [(t, g) for t, g in zip(targets, graphs) if g.referrers]
    if not work:
        return placed
    if not isinstance(sink, RegistryClient):  # the Docker Engine: its push carries images, not referrers
        count = sum(len(g.referrers) for _, g in work)
        label = getattr(sink, "label", type(sink).__name__)
        placed.unplaced.append(f"{count} referrer{'s' if count != 1 else ''} of the bundle not placed: {label} "
                               "cannot push them (import with the default engine to carry them)")
        reporter.warn(placed.unplaced[-1])
        return placed
    reporter.phase(f"placing {sum(len(g.referrers) for _, g in work)} referrers")
    placed.api = probe_api(sink, work[0][0].repository, work[0][0].entry.digest)
    by_repo: dict[str, list[tuple[TargetImage, ImageGraph]]] = {}
    for target, graph in work:
        by_repo.setdefault(target.repository, []).append((target, graph))
    for part in each(lambda items: _place_in_repository(sink, items, reporter), list(by_repo.values()), jobs=jobs,
                     name="arcgap-referrers"):
        placed.by_api += part.by_api
        placed.by_fallback += part.by_fallback
        placed.by_tag += part.by_tag
        placed.fallback_tags.extend(part.fallback_tags)
        placed.unplaced.extend(part.unplaced)
    return placed


def _place_in_repository(sink: RegistryClient, work: Sequence[tuple[TargetImage, ImageGraph]],
                         reporter: Reporter) -> Placed:
    """The referrers of ``work`` (targets in one repository), in order; what was done, without ``api``."""
    placed = Placed()
    done: set[tuple[str, Digest]] = set()
    for target, graph in work:
        repo = target.repository
        fallback: dict[Digest, list[tuple[bytes, str, str]]] = {}
        for ref, raw in graph.referrers:
            if (repo, ref.digest) in done:
                continue
            done.add((repo, ref.digest))
            if ref.tag is not None:
                if sink.head_manifest(repo, ref.tag) != ref.digest:
                    sink.put_manifest(repo, ref.tag, raw, ref.media_type)
                placed.by_tag += 1
                continue
            if push_referrer(sink, repo, raw, ref.media_type, ref.subject):
                placed.by_api += 1
            else:
                fallback.setdefault(ref.subject, []).append((raw, ref.media_type, ref.artifact_type))
        for subject, items in fallback.items():
            try:
                merge_fallback(sink, repo, subject, items)
            except RegistryError as exc:
                placed.unplaced.append(exc.message)
                reporter.warn(exc.message)
                continue
            placed.by_fallback += len(items)
            placed.fallback_tags.append(f"{repo}:{str(subject).replace(':', '-', 1)}")
    return placed
