"""The publish order, owned here: children before their index, every manifest by digest, then the tags (a tag
already at its digest left alone), then every tag re-read.

A sink that rewrites what it is given (the Docker Engine re-compresses layers on push) says which digest it now
holds under a tag, as ``put_manifest``'s answer; the tag check expects that digest there, and the copy reports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from arcgap.errors import TargetMismatchError
from arcgap.oci.digest import Digest
from arcgap.transfer.plan import TargetImage
from arcgap.transfer.sink import Sink
from arcgap.util.parallel import each, lookup_jobs
from arcgap.util.progress import Reporter


@dataclass(frozen=True)
class Publication:
    """One image ready to publish: the top manifest's raw bytes and its children (digest, raw, media type)."""

    target: TargetImage
    top_raw: bytes
    children: tuple[tuple[Digest, bytes, str], ...]


def push_manifests_and_tags(
    client: Sink, images: Sequence[Publication], current: Sequence[Digest | None], reporter: Reporter,
    *, jobs: int, releases: Sequence[str] = (),
) -> dict[str, Digest]:
    """Children before their index, all by digest, then the tags; a tag already at its digest is left alone.
    With ``releases`` (an upgrade chain, oldest first) the tags move release by release, oldest first.
    ``jobs`` images at once (``--jobs``): each is a handful of small requests, so latency is the cost.

    Returns the digest the sink reported under each tag it moved (target reference → digest), where it did."""
    reporter.phase("pushing manifests")
    moving = [p for p, now in zip(images, current) if now != p.target.entry.digest]

    def by_digest(pub: Publication) -> None:
        entry = pub.target.entry
        for digest, raw, media_type in pub.children:
            client.put_manifest(pub.target.repository, str(digest), raw, media_type)
        client.put_manifest(pub.target.repository, str(entry.digest), pub.top_raw, entry.media_type)

    rewritten: dict[str, Digest] = {}

    def tag(pub: Publication) -> None:
        held = client.put_manifest(pub.target.repository, pub.target.tag, pub.top_raw, pub.target.entry.media_type)
        if held is not None:
            rewritten[pub.target.reference] = held

    # every image's manifests are in place before the first tag moves
    each(by_digest, moving, jobs=jobs, name="arcgap-publish")
    reporter.phase("moving tags")
    for wave in _waves(moving, releases):
        each(tag, wave, jobs=jobs, name="arcgap-publish")
    for pub in moving:
        held = rewritten.get(pub.target.reference, pub.target.entry.digest)
        reporter.item_done(f"{pub.target.reference} → {held.short}")
    for pub, now in zip(images, current):
        if now == pub.target.entry.digest:
            reporter.item_done(f"{pub.target.reference} already at {now.short}")
    return rewritten


def _waves(moving: Sequence[Publication], releases: Sequence[str]) -> list[list[Publication]]:
    """One wave of tags; for an upgrade chain one per release (by the tag each image carries), oldest first."""
    if not releases:
        return [list(moving)]
    order = {tag: n for n, tag in enumerate(releases)}
    waves: dict[int, list[Publication]] = {}
    for pub in moving:
        waves.setdefault(order.get(pub.target.entry.tag, len(order)), []).append(pub)
    return [waves[n] for n in sorted(waves)]


def verify_tags(client: Sink, targets: Sequence[TargetImage], *, jobs: int,
                rewritten: Mapping[str, Digest] | None = None) -> None:
    """Re-read every tag after the push, :func:`lookup_jobs` at once; a different digest is an error of its own
    (exit 10). ``rewritten``: the digest a sink said it holds under a tag instead of the image's own."""
    held = rewritten or {}
    for target, got in zip(targets, each(lambda t: client.head_manifest(t.repository, t.tag), targets,
                                       jobs=lookup_jobs(jobs))):
        expected = held.get(target.reference, target.entry.digest)
        if got != expected:
            raise TargetMismatchError(
                f"{target.reference} resolves to {got} after the push, expected {expected}",
                hint="another writer changed the tag, or the registry rewrote the manifest",
            )
