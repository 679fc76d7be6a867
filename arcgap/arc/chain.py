"""Upgrade chains: the releases one bundle carries, oldest first. Microsoft's upgrade guidance goes one minor
release at a time, so a site several months behind needs every release between the one it runs and the one
it wants. The chain is chosen from release tags (the source's, or the shipped lists' offline); what sharing
saves is counted from the blobs each release needs. No network I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from arcgap.arc.imagelist import is_release_tag, release_sort_key
from arcgap.bundle.format import TableOfContents, needed_version
from arcgap.errors import UsageError, variable
from arcgap.errors import option as named
from arcgap.oci.digest import Digest


def oldest_first(tags: Iterable[str]) -> list[str]:
    """Release tags, oldest first (by version, then date), each once."""
    return sorted(dict.fromkeys(tags), key=release_sort_key, reverse=True)


def explicit_chain(tags: Sequence[str]) -> list[str]:
    """An explicit set of release tags (repeated --release), oldest first; each must be a release tag."""
    for tag in tags:
        if not is_release_tag(tag):
            raise UsageError(f"{tag!r} is not a release tag (vMAJOR.MINOR.PATCH_YYYY-MM-DD)",
                             hint="a bundle of several releases takes release tags only")
    return oldest_first(tags)


def chain_between(available: Iterable[str], *, start: str, end: str | None, where: str) -> list[str]:
    """The releases after ``start`` (the release the site runs) up to ``end`` (default: the newest of
    ``available``), oldest first. ``start`` need not be in ``available`` (an old release may be gone from
    the source); ``end`` must be."""
    for tag, option in ((start, named("from_release")), (end, named("to_release"))):
        if tag is not None and not is_release_tag(tag):
            raise UsageError(f"{option} {tag!r} is not a release tag (vMAJOR.MINOR.PATCH_YYYY-MM-DD)")
    releases = oldest_first(t for t in available if is_release_tag(t))
    if not releases:
        raise UsageError(f"{where} has no release tags", hint=f"check {variable('source.repository')}")
    end = end or releases[-1]
    if end not in releases:
        raise UsageError(f"release {end} is not among the releases of {where}",
                         hint="list them with 'arcgap releases'")
    start_key, end_key = release_sort_key(start), release_sort_key(end)
    if start_key <= end_key:  # keys sort newest first: start is not older than end
        raise UsageError(f"{named('from_release')} {start} is not older than {end}",
                         hint="give the release the site runs now, and (optionally) a newer one to reach")
    return [t for t in releases if end_key <= release_sort_key(t) < start_key]


@dataclass(frozen=True)
class ReleaseShare:
    tag: str
    images: int
    bytes: int  # config and layer bytes a bundle of this release alone would carry

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "images": self.images, "bytes": self.bytes}


@dataclass(frozen=True)
class ChainSharing:
    """Bytes that one bundle per release would carry, against this one bundle."""

    releases: tuple[ReleaseShare, ...]
    carried_bytes: int  # config and layer bytes this bundle carries (each blob once)

    @property
    def separate_bytes(self) -> int:
        return sum(r.bytes for r in self.releases)

    @property
    def saved_bytes(self) -> int:
        return self.separate_bytes - self.carried_bytes

    def to_dict(self) -> dict[str, Any]:
        return {"releases": [r.to_dict() for r in self.releases], "separate_bytes": self.separate_bytes,
                "carried_bytes": self.carried_bytes, "saved_bytes": self.saved_bytes}


def chain_sharing(
    releases: Sequence[str], image_tags: Mapping[str, str], image_blobs: Mapping[str, Iterable[tuple[str, int]]],
) -> ChainSharing:
    """``image_tags``: image ref → its release tag; ``image_blobs``: image ref → (digest, size) of every config
    and layer it needs. Each release counts its own blobs once; the bundle counts every blob once."""
    per_release: dict[str, dict[str, int]] = {t: {} for t in releases}
    counts: dict[str, int] = dict.fromkeys(releases, 0)
    everything: dict[str, int] = {}
    for ref, blobs in image_blobs.items():
        tag = image_tags.get(ref)
        if tag not in per_release:
            continue
        counts[tag] += 1
        for digest, size in blobs:
            per_release[tag][digest] = size
            everything[digest] = size
    shares = tuple(ReleaseShare(t, counts[t], sum(per_release[t].values())) for t in releases)
    return ChainSharing(shares, sum(everything.values()))


def with_releases(toc: TableOfContents, releases: Sequence[str]) -> TableOfContents:
    """``manifest`` naming the releases it carries (those an image of it carries: --skip-missing may have left
    a release out entirely), in the format version that knows ``releases``."""
    carried = {i.tag for i in toc.images}
    kept = tuple(t for t in releases if t in carried)
    if len(kept) < 2:
        return toc
    version = max(toc.format_version, needed_version(differential=False, signed=False, chain=True))
    return replace(toc, releases=kept, format_version=version)


def chain_summary(toc: TableOfContents, image_blobs: Mapping[str, Iterable[Digest]]) -> dict[str, Any]:
    """What sharing saved in an upgrade chain bundle (export's summary), from the blobs each image needs."""
    sizes = {b.digest: b.size for b in toc.blobs}
    tags = {i.ref_name: i.tag for i in toc.images}
    blobs = {ref: [(str(d), sizes[d]) for d in digests if d in sizes] for ref, digests in image_blobs.items()}
    return chain_sharing(toc.releases, tags, blobs).to_dict()
