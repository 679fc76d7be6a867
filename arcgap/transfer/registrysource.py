"""Registries as a :class:`~arcgap.transfer.source.Source`: random access to resolved images' blobs.

Manifests and configs were fetched and verified when the images were resolved and are served from memory;
every other blob is streamed from the repository the plan names, verified by
:meth:`arcgap.registry.client.RegistryClient.stream_blob` (through the blob cache when there is one), large
ones in parallel byte ranges (:mod:`arcgap.registry.ranged`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from arcgap.bundle.format import BlobEntry
from arcgap.bundle.graph import ImageGraph
from arcgap.oci.digest import Digest
from arcgap.registry.client import RegistryClient
from arcgap.registry.ranged import RangeBudget, RangedOptions, stream_blob
from arcgap.registry.resolve import ResolvedImage
from arcgap.transfer.bundlesource import metered
from arcgap.transfer.plan import ExportPlan
from arcgap.transfer.prefetch import OrderedPrefetcher
from arcgap.transfer.referrers import referrer_graph
from arcgap.transfer.source import Contents, Meter
from arcgap.util.parallel import DEFAULT_JOBS

if TYPE_CHECKING:
    from arcgap.transfer.cache import BlobCache


AHEAD_PER_JOB = 4  # blobs a --jobs slot may have on their way at once, as their bytes allow
CLAIM_SLOTS = 4  # bytes of the blobs claimed ahead: at most this many times the range slots' bytes
# The claims past --jobs begin once the writer has waited this long in all for downloads, and never for a
# registry whose probe showed one connection fills the path (loopback, a LAN: there the writer is the slower
# side): they would gain nothing, and each blob claimed holds its chunks and its cache copy's queue (the
# 22-image set on loopback: 144 MiB peak RSS with them, 84 without). On a 40 ms path the first blob alone keeps
# the writer waiting that long, and no probe is fast.
STARVED_S = 0.1


class RegistrySource:
    """The images of a plan, read from the registries they were resolved at."""

    sequential = False

    def __init__(self, plan: ExportPlan, resolved: Sequence[ResolvedImage],
                 client_for: Callable[[str], RegistryClient], *, cache: BlobCache | None = None,
                 jobs: int = DEFAULT_JOBS, ranged: RangedOptions | None = None) -> None:
        self.plan = plan
        self.resolved = resolved
        self.client_for = client_for
        self.cache = cache
        self.jobs = jobs
        options = ranged or RangedOptions()
        if jobs <= 1:  # --jobs 1 is one request at a time everywhere: every blob one stream, none claimed ahead
            options = replace(options, threshold_bytes=sys.maxsize)
        self.ranges = RangeBudget(options)  # large blobs in parallel ranges, one budget
        self._order = {b.digest: i for i, b in enumerate(plan.toc.blobs)}  # write order: parts go earliest first

    def contents(self, meter: Meter) -> Contents:
        graphs: list[ImageGraph] = []
        manifests: dict[Digest, bytes] = {}
        for img, entry in zip(self.resolved, self.plan.toc.images):
            manifests[img.top.digest] = img.top.raw
            children = tuple(dict.fromkeys(
                (p.manifest.digest, p.manifest.raw, p.manifest.media_type)
                for p in img.platforms if p.manifest.digest != img.top.digest))
            manifests.update((digest, raw) for digest, raw, _ in children)
            blobs = frozenset(d.digest for p in img.platforms for d in p.parsed.blobs)
            refs, ref_blobs = referrer_graph(self.plan, entry.ref_name)
            manifests.update((r.digest, raw) for r, raw in refs)
            graphs.append(ImageGraph(entry, children, blobs | ref_blobs, referrers=refs))
        return Contents(self.plan.toc, tuple(graphs), manifests)

    def _download(self, entry: BlobEntry) -> Iterator[bytes]:
        registry, repo = self.plan.blob_source[entry.digest]

        def download() -> Iterator[bytes]:
            return stream_blob(self.client_for(registry), repo, entry.digest, entry.size, budget=self.ranges,
                               what=f"blob {entry.digest} of {registry}/{repo}", order=self._order.get(entry.digest))

        return self.cache.fetch(entry.digest, entry.size, download) if self.cache is not None else download()

    def open(self, entry: BlobEntry, meter: Meter) -> Iterator[bytes]:
        data = self.plan.small_blobs.get(entry.digest)  # manifests and configs: verified when resolved
        return metered(iter((data,)) if data is not None else self._download(entry), meter)

    def stream(self, meter: Meter) -> Iterator[tuple[BlobEntry, Iterator[bytes]]]:
        """Every blob of the plan in its order, ``jobs`` downloads ahead, in bounded memory."""
        remote = [b for b in self.plan.toc.blobs if b.digest not in self.plan.small_blobs]
        # At least --jobs blobs on their way; more (up to AHEAD_PER_JOB each) while those claimed total under
        # CLAIM_SLOTS times the parts' memory bound. A claimed blob holds only its queue (depth x chunk); its parts
        # hold the range slots, which bound memory. The claims only keep downloads a few link-seconds ahead of
        # the writer: at 1x the set reached 63-65 % of a 40 ms link, at 4x 70-77 % (make bench WAN=1).
        o = self.ranges.options
        prefetcher = OrderedPrefetcher(remote, self._download, jobs=self.jobs, size=lambda b: b.size,
                                       ahead_bytes=CLAIM_SLOTS * o.slots * o.part_bytes,
                                       workers=self.jobs * AHEAD_PER_JOB if self.jobs > 1 else 1,
                                       starved_s=STARVED_S,
                                       ahead_ok=lambda b: not self.ranges.fast(self.plan.blob_source[b.digest][0]))
        downloads = iter(prefetcher)
        try:
            for entry in self.plan.toc.blobs:
                data = self.plan.small_blobs.get(entry.digest)
                if data is not None:
                    yield entry, metered(iter((data,)), meter)
                    continue
                fetched, chunks = next(downloads)
                assert fetched == entry
                yield entry, metered(chunks, meter)
        finally:
            prefetcher.close()
            self.ranges.close()
