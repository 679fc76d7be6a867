"""``arcgap import``: one streaming pass over a bundle into a registry; tags move last.

Order of events: manifests arrive first and are checked as a graph; the target is asked which blobs it
already has, and a differential bundle's relied-on blobs must all be there (or mountable) before anything is
sent; every blob is verified while it streams (uploaded, mounted or skipped); only when the whole bundle has
been read and verified are manifests pushed by digest, then tags (a tag already at its digest is left alone),
then every tag is re-read and compared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcgap.bundle.format import BlobEntry
from arcgap.bundle.graph import ImageGraph, build_graph
from arcgap.bundle.reader import BundleReader
from arcgap.errors import MissingBaseError
from arcgap.oci.digest import Digest
from arcgap.registry.client import RegistryClient
from arcgap.transfer.placement import Placements
from arcgap.transfer.plan import TargetImage, map_targets
from arcgap.transfer.publish import Publication, push_manifests_and_tags, verify_tags
from arcgap.transfer.readahead import read_ahead
from arcgap.util.parallel import each
from arcgap.util.progress import Reporter, human_bytes

# A registry ingests two uploads faster than one (distribution on 2 cores: 185 → 267 MB/s). A verified blob up to
# BACKGROUND_MAX_BYTES is therefore held in memory and pushed by a worker while the stream moves on; at most
# BACKGROUND_SLOTS such blobs are held at once, so memory stays bounded whatever the bundle holds.
BACKGROUND_MAX_BYTES = 16 * 1024 * 1024
BACKGROUND_SLOTS = 2


@dataclass(frozen=True)
class ImageOutcome:
    """What import did for one target reference (see :data:`arcgap.transfer.receipt.ACTIONS`)."""

    target: TargetImage
    action: str  # pushed | mounted | skipped
    uploaded_blobs: int
    mounted_blobs: int
    present_blobs: int

    def to_dict(self, *, dry_run: bool) -> dict[str, Any]:
        entry = self.target.entry
        return {
            "source": entry.source,
            "target": self.target.reference,
            "digest": str(entry.digest),
            "media_type": entry.media_type,
            "platforms": [p.platform for p in entry.platforms],
            "action": self.action,
            "pushed": not dry_run and self.action != "skipped",  # this run wrote the tag
            "blobs": {"uploaded": self.uploaded_blobs, "mounted": self.mounted_blobs,
                      "present": self.present_blobs},
        }


@dataclass
class ImportResult:
    dry_run: bool
    outcomes: list[ImageOutcome] = field(default_factory=list)
    held_blobs: list[BlobEntry] = field(default_factory=list)  # every blob the target holds for these images
    blobs: int = 0
    uploaded_blobs: int = 0
    uploaded_bytes: int = 0
    mounted_blobs: int = 0
    skipped_blobs: int = 0
    skipped_bytes: int = 0
    verified_bytes: int = 0
    relied_on_blobs: int = 0
    skipped_tags: int = 0
    seconds: float = 0.0
    receipt_file: Path | None = None  # set by the caller once the receipt is written
    receipt: dict[str, Any] | None = None

    @property
    def images(self) -> list[dict[str, Any]]:
        return [o.to_dict(dry_run=self.dry_run) for o in self.outcomes]

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "command": "import",
            "dry_run": self.dry_run,
            "images": self.images,
            "blobs": self.blobs,
            "uploaded_blobs": self.uploaded_blobs,
            "uploaded_bytes": self.uploaded_bytes,
            "mounted_blobs": self.mounted_blobs,
            "skipped_blobs": self.skipped_blobs,
            "skipped_bytes": self.skipped_bytes,
            "verified_bytes": self.verified_bytes,
            "relied_on_blobs": self.relied_on_blobs,
            "skipped_tags": self.skipped_tags,
            "seconds": round(self.seconds, 3),
        }
        if self.receipt_file is not None:
            doc["receipt_file"] = str(self.receipt_file)
            doc["receipt"] = self.receipt
        return doc


class _Importer:
    def __init__(self, reader: BundleReader, client: RegistryClient, targets: list[TargetImage], *,
                 repository: str, jobs: int, reporter: Reporter, dry_run: bool) -> None:
        self.reader = reader
        self.repository = repository
        self.client = client
        self.targets = targets
        self.jobs = jobs
        self.reporter = reporter
        self.dry_run = dry_run
        self.result = ImportResult(dry_run=dry_run)
        self.manifests: dict[Digest, bytes] = {}
        self.graphs: list[ImageGraph] = []
        self.placements = Placements(client)  # also updated by background uploads
        self._slots = threading.Semaphore(BACKGROUND_SLOTS)
        self._background: list[Future[None]] = []
        self._failed = threading.Event()

    # -- phase 1: manifests, the graph, and what the target already holds ---------------------------------

    def _plan_blobs(self) -> None:
        self.graphs = build_graph(self.reader.manifest, self.manifests, origin=self.reader.origin)
        for target, graph in zip(self.targets, self.graphs):
            self.placements.need(target.repository, graph.blobs)
        count = len(self.placements.digests)
        self.reporter.phase(f"checking which of {count} blobs {self.client.registry} already has")
        # Answers arrive while the first blobs are placed; each placement waits for its own blob's answers.
        manifest = self.reader.manifest  # the blobs relied on are settled first (_check_relied_on), then the stream's
        self.placements.start_check(jobs=self.jobs,
                                    order=[b.digest for b in (*manifest.relied_on_blobs, *manifest.blobs)])
        self._check_relied_on()

    def _check_relied_on(self) -> None:
        """Every relied-on blob must be in each repository that needs it, or mountable from one that has it.

        Runs before any blob is sent: if the base is missing, nothing at all changes at the target.
        """
        manifest = self.reader.manifest
        relied = [b.digest for b in manifest.relied_on_blobs if b.digest in self.placements]
        self.result.relied_on_blobs = len(relied)
        if not relied:
            return
        self.reporter.phase(f"checking the {len(relied)} blobs the bundle relies on")
        mounts: list[tuple[Digest, str, str]] = []
        lacking: list[Digest] = []
        for digest in relied:
            holder = self.placements.holder(digest)
            if holder is None:
                lacking.append(digest)
            else:
                mounts += [(digest, r, holder) for r in self.placements.missing(digest)]
        if lacking:
            raise self._missing_base(lacking)
        if self.dry_run:
            return
        refused = {d for d, repo, holder in mounts if not self.placements.mount(repo, d, holder)}
        if refused:
            raise self._missing_base(sorted(refused), mounting=True)

    def _missing_base(self, digests: list[Digest], *, mounting: bool = False) -> MissingBaseError:
        manifest = self.reader.manifest
        names = list(dict.fromkeys(base.name for d in digests if (base := manifest.base_of(d)) is not None))
        named = " and ".join(names) or "an earlier bundle"
        count = f"{len(digests)} blob{'s' if len(digests) != 1 else ''} missing"
        where = f"{self.client.registry}/{self.repository}"
        if mounting:
            return MissingBaseError(
                f"the bundle relies on blobs from {named} that the target lacks: {count} "
                "(the registry refused to mount them from another repository)",
                hint=f"import {named} into these repositories first, or export a full bundle (without --since)",
            )
        return MissingBaseError(
            f"the bundle relies on blobs from {named} that the target lacks: {count}",
            hint=f"import {named} into {where} first, or export a full bundle (without --since); "
                 "nothing was changed",
        )

    # -- phase 2: stream blobs --------------------------------------------------------------------------

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.result.verified_bytes += len(chunk)
            self.reporter.advance(len(chunk))
            yield chunk

    def _place(self, entry: BlobEntry, chunks: Iterator[bytes]) -> None:
        digest = entry.digest
        missing = self.placements.missing(digest)
        holder = self.placements.holder(digest)
        if holder is not None and missing and not self.dry_run:
            missing = [r for r in missing if not self.placements.mount(r, digest, holder)]
        if not missing or self.dry_run:
            for _ in chunks:  # still read and verify every byte
                pass
            if not missing:
                self.result.skipped_blobs += 1
                self.result.skipped_bytes += entry.size
            return
        self._check_background()
        if entry.size <= BACKGROUND_MAX_BYTES:
            self._slots.acquire()
            if self._failed.is_set():  # a background upload failed while we waited: raise it now
                self._slots.release()
                self._check_background(wait=True)
            try:
                held = list(chunks)  # reading to the end verifies size and digest before anything is sent
            except BaseException:
                self._slots.release()
                raise
            self._background.append(self._pool.submit(self._upload_held, entry, missing, held))
            return
        self._upload(entry, missing, chunks)

    def _upload_held(self, entry: BlobEntry, missing: list[str], held: list[bytes]) -> None:
        try:
            if self._failed.is_set():
                return  # another upload already failed: the import stops, don't add requests
            self._upload(entry, missing, iter(held))
        except BaseException:
            self._failed.set()
            raise
        finally:
            held.clear()
            self._slots.release()

    def _check_background(self, *, wait: bool = False) -> None:
        """Raise the first background upload failure (all of them finished when ``wait``)."""
        for future in list(self._background):
            if wait or future.done():
                future.result()
                self._background.remove(future)

    def _upload(self, entry: BlobEntry, missing: list[str], chunks: Iterator[bytes]) -> None:
        digest = entry.digest
        first = missing[0]
        self.client.upload_blob(first, digest, chunks, what=f"blob {digest} to {self.client.registry}/{first}")
        self.placements.placed(first, digest, "uploaded", entry.size)
        for repo in missing[1:]:
            if not self.placements.mount(repo, digest, first):
                # The registry refuses mounts: copy the verified blob back out of the target.
                data = self.client.stream_blob(first, digest, entry.size)
                self.client.upload_blob(repo, digest, data, what=f"blob {digest} to {repo}")
                self.placements.placed(repo, digest, "uploaded", entry.size)

    def run(self) -> ImportResult:
        t0 = time.monotonic()
        manifest = self.reader.manifest
        self.client.ping()
        self.reporter.start(manifest.total_bytes, images=len(manifest.images),
                            label=f"importing into {self.client.registry}")
        try:
            planned = False
            with ThreadPoolExecutor(max_workers=BACKGROUND_SLOTS, thread_name_prefix="arcgap-upload") as self._pool:
                for entry, chunks in read_ahead(self.reader.blobs()):
                    self.result.blobs += 1
                    if entry.kind in ("index", "manifest"):
                        self.manifests[entry.digest] = b"".join(self._counted(chunks))
                        continue
                    if not planned:
                        self._plan_blobs()
                        planned = True
                        if self.dry_run:
                            break
                    self._place(entry, self._counted(chunks))
                self._check_background(wait=True)  # every blob verified *and* present before any manifest moves
            if not planned:
                self._plan_blobs()
            current = self._current_tags()
            if self.dry_run:
                self._describe(current)
                self._report_dry_run()
            else:
                # Every blob is verified and present: now manifests by digest, then the tags.
                self._push(current)
                self._verify_tags()
                self._describe(current)
        finally:
            self.placements.close()  # questions still open (a failed run) are dropped
        self.reporter.close()
        self.result.seconds = time.monotonic() - t0
        return self.result

    # -- phase 3: manifests, tags, check ---------------------------------------------------------------

    def _current_tags(self) -> list[Digest | None]:
        """What each target tag points at now; a tag already at the bundle's digest is not written again."""
        return each(lambda t: self.client.head_manifest(t.repository, t.tag), self.targets, jobs=self.jobs)

    def _push(self, current: list[Digest | None]) -> None:
        pubs = [Publication(t, self.manifests[t.entry.digest], g.children) for t, g in zip(self.targets, self.graphs)]
        push_manifests_and_tags(self.client, pubs, current, self.reporter)

    def _verify_tags(self) -> None:
        verify_tags(self.client, self.targets)

    def _describe(self, current: list[Digest | None]) -> None:
        self.result.uploaded_blobs = self.placements.uploaded_blobs
        self.result.uploaded_bytes = self.placements.uploaded_bytes
        self.result.mounted_blobs = self.placements.mounted_blobs
        manifest = self.reader.manifest
        declared = {b.digest: b for b in (*manifest.blobs, *manifest.relied_on_blobs)}
        held: dict[Digest, BlobEntry] = {}
        for target, graph, now in zip(self.targets, self.graphs, current):
            summary = self.placements.summary(target.repository, graph.blobs, dry_run=self.dry_run)
            action = summary.action
            if now == target.entry.digest:
                action = "skipped"
                self.result.skipped_tags += 1
            self.result.outcomes.append(
                ImageOutcome(target, action, summary.uploaded, summary.mounted, summary.present))
            for digest in (target.entry.digest, *(c[0] for c in graph.children), *sorted(graph.blobs)):
                held.setdefault(digest, declared[digest])
        self.result.held_blobs = list(held.values())

    def _report_dry_run(self) -> None:
        lacking = {d: self.placements.missing(d) for d in self.placements.digests}
        missing = sum(len(repos) for repos in lacking.values())
        size = {b.digest: b.size for b in self.reader.manifest.blobs}
        missing_bytes = sum(size.get(d, 0) for d, repos in lacking.items() if repos)
        self.reporter.phase(f"dry run: {missing} blob placements missing at the target "
                            f"({human_bytes(missing_bytes)} to send); nothing changed")


def import_bundle(
    reader: BundleReader,
    client: RegistryClient,
    *,
    target_repository: str,
    target_tag: str | None,
    jobs: int = 4,
    reporter: Reporter | None = None,
    dry_run: bool = False,
) -> ImportResult:
    targets = map_targets(reader.manifest, registry=client.registry, repository=target_repository, tag=target_tag)
    importer = _Importer(reader, client, targets, repository=target_repository, jobs=jobs,
                         reporter=reporter or Reporter(), dry_run=dry_run)
    return importer.run()
