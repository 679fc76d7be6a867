"""``arcgap import``: one streaming pass over a bundle into a registry; tags move last.

Order of events: manifests arrive first and are checked as a graph; the target is asked which blobs it
already has; every blob is verified while it streams (uploaded, mounted or skipped); only when the whole
bundle has been read and verified are manifests pushed by digest, then tags, then re-read and compared.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from arcgap.bundle.format import BlobEntry
from arcgap.bundle.reader import BundleReader
from arcgap.digest import Digest
from arcgap.errors import TargetMismatchError
from arcgap.graph import ImageGraph, build_graph
from arcgap.plan import TargetImage, map_targets
from arcgap.progress import Reporter, human_bytes
from arcgap.registry.client import RegistryClient


@dataclass
class ImportResult:
    dry_run: bool
    images: list[dict[str, Any]] = field(default_factory=list)
    blobs: int = 0
    uploaded_blobs: int = 0
    uploaded_bytes: int = 0
    mounted_blobs: int = 0
    skipped_blobs: int = 0
    skipped_bytes: int = 0
    verified_bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
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
            "seconds": round(self.seconds, 3),
        }


class _Importer:
    def __init__(self, reader: BundleReader, client: RegistryClient, targets: list[TargetImage], *,
                 jobs: int, reporter: Reporter, dry_run: bool) -> None:
        self.reader = reader
        self.client = client
        self.targets = targets
        self.jobs = jobs
        self.reporter = reporter
        self.dry_run = dry_run
        self.result = ImportResult(dry_run=dry_run)
        self.manifests: dict[Digest, bytes] = {}
        self.graphs: list[ImageGraph] = []
        self.needs: dict[Digest, list[str]] = {}  # blob → target repositories that need it
        self.present: dict[tuple[str, Digest], bool] = {}

    # -- phase 1: manifests and the graph ---------------------------------------------------------------

    def _plan_blobs(self) -> None:
        self.graphs = build_graph(self.reader.manifest, self.manifests, origin=self.reader.origin)
        for target, graph in zip(self.targets, self.graphs):
            for digest in sorted(graph.blobs):
                repos = self.needs.setdefault(digest, [])
                if target.repository not in repos:
                    repos.append(target.repository)
        pairs = [(repo, d) for d, repos in self.needs.items() for repo in repos]
        self.reporter.phase(f"checking which of {len(self.needs)} blobs {self.client.registry} already has")
        with ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            found = pool.map(lambda p: self.client.blob_exists(p[0], p[1], push_scope=True), pairs)
            self.present = dict(zip(pairs, found))

    # -- phase 2: stream blobs --------------------------------------------------------------------------

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.result.verified_bytes += len(chunk)
            self.reporter.advance(len(chunk))
            yield chunk

    def _place(self, entry: BlobEntry, chunks: Iterator[bytes]) -> None:
        digest = entry.digest
        repos = self.needs.get(digest, [])
        missing = [r for r in repos if not self.present.get((r, digest))]
        holder = next((r for r in repos if self.present.get((r, digest))), None)
        if holder is not None and missing and not self.dry_run:
            missing = [r for r in missing if not self._mount(digest, r, holder)]
        if not missing or self.dry_run:
            for _ in chunks:  # still read and verify every byte
                pass
            if not missing:
                self.result.skipped_blobs += 1
                self.result.skipped_bytes += entry.size
            return
        first = missing[0]
        self.client.upload_blob(first, digest, chunks, what=f"blob {digest} to {self.client.registry}/{first}")
        self.present[(first, digest)] = True
        self.result.uploaded_blobs += 1
        self.result.uploaded_bytes += entry.size
        for repo in missing[1:]:
            if not self._mount(digest, repo, first):
                # The registry refuses mounts: copy the verified blob back out of the target.
                data = self.client.stream_blob(first, digest, entry.size)
                self.client.upload_blob(repo, digest, data, what=f"blob {digest} to {repo}")
                self.result.uploaded_blobs += 1
                self.result.uploaded_bytes += entry.size

    def _mount(self, digest: Digest, repo: str, source_repo: str) -> bool:
        ok = self.client.mount_blob(repo, digest, source_repo)
        if ok:
            self.present[(repo, digest)] = True
            self.result.mounted_blobs += 1
        return ok

    def run(self) -> ImportResult:
        t0 = time.monotonic()
        manifest = self.reader.manifest
        self.client.ping()
        self.reporter.start(manifest.total_bytes, images=len(manifest.images),
                            label=f"importing into {self.client.registry}")
        planned = False
        for entry, chunks in self.reader.blobs():
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
        if not planned:
            self._plan_blobs()
        if self.dry_run:
            self._describe(pushed=False)
        else:
            # Every blob is verified and present: now manifests by digest, then the tags.
            self._push_manifests()
            self._verify_tags()
            self._describe(pushed=True)
        self.reporter.close()
        self.result.seconds = time.monotonic() - t0
        return self.result

    # -- phase 3: manifests, tags, check ---------------------------------------------------------------

    def _push_manifests(self) -> None:
        self.reporter.phase("pushing manifests")
        for target, graph in zip(self.targets, self.graphs):
            for digest, raw, media_type in graph.children:
                self.client.put_manifest(target.repository, str(digest), raw, media_type)
            self.client.put_manifest(target.repository, str(target.entry.digest),
                                     self.manifests[target.entry.digest], target.entry.media_type)
        self.reporter.phase("moving tags")
        for target in self.targets:
            self.client.put_manifest(target.repository, target.tag, self.manifests[target.entry.digest],
                                     target.entry.media_type)
            self.reporter.item_done(f"{target.reference} → {target.entry.digest.short}")

    def _verify_tags(self) -> None:
        for target in self.targets:
            got = self.client.head_manifest(target.repository, target.tag)
            if got != target.entry.digest:
                raise TargetMismatchError(
                    f"{target.reference} resolves to {got} after the push, expected {target.entry.digest}",
                    hint="another writer changed the tag, or the registry rewrote the manifest",
                )

    def _describe(self, *, pushed: bool) -> None:
        for target in self.targets:
            self.result.images.append({
                "source": target.entry.source,
                "target": target.reference,
                "digest": str(target.entry.digest),
                "media_type": target.entry.media_type,
                "platforms": [p.platform for p in target.entry.platforms],
                "pushed": pushed,
            })
        if not pushed:
            missing = sum(1 for d, repos in self.needs.items() for r in repos if not self.present.get((r, d)))
            size = {b.digest: b.size for b in self.reader.manifest.blobs}
            missing_bytes = sum(size[d] for d, repos in self.needs.items()
                                if any(not self.present.get((r, d)) for r in repos))
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
    importer = _Importer(reader, client, targets, jobs=jobs, reporter=reporter or Reporter(), dry_run=dry_run)
    return importer.run()
