"""Release tags at the source: which releases a registry holds (from a reference image's tags list), the newest
one, and whether every image of a list has a tag there (HEAD per image, in parallel) before anything moves."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from arcgap.arc.imagelist import is_release_tag, release_sort_key, shipped_releases
from arcgap.errors import NotFoundError, option, variable
from arcgap.oci.reference import join_repository
from arcgap.registry.client import RegistryClient
from arcgap.registry.resolve import Wanted
from arcgap.util.parallel import each, lookup_jobs

REFERENCE_IMAGE = "arc-controller"  # in every Arc data services release since the first one
LATEST = "latest"  # --release latest: the newest release tag at the source


@dataclass(frozen=True)
class Release:
    tag: str
    shipped: bool  # manifests/ has an image list for it


@dataclass(frozen=True)
class ReleasesResult:
    """``arcgap releases``: the release tags of ``registry/repository/image``, newest first."""

    registry: str
    repository: str
    image: str
    releases: tuple[Release, ...]
    other_tags: tuple[str, ...]  # dev builds, previews and anything else, sorted as release_sort_key does

    @property
    def latest(self) -> str | None:
        return self.releases[0].tag if self.releases else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "releases",
            "registry": self.registry,
            "repository": self.repository,
            "image": self.image,
            "latest": self.latest,
            "releases": [{"tag": r.tag, "shipped": r.shipped} for r in self.releases],
            "other_tags": list(self.other_tags),
        }


def list_releases(client: RegistryClient, *, repository: str, image: str = REFERENCE_IMAGE) -> ReleasesResult:
    """Every tag of ``repository/image`` at ``client``'s registry (the tags list is paginated), sorted newest
    release first, each marked with whether this arcgap ships an image list for it."""
    repo = join_repository(repository, image)
    try:
        tags = client.list_tags(repo)
    except NotFoundError:
        raise NotFoundError(
            f"{client.registry}/{repo} not found: cannot list its release tags",
            hint=f"check {variable('source.registry')} and {variable('source.repository')} (or {option('image')} for "
                 "another reference image)",
        ) from None
    shipped = set(shipped_releases())
    ordered = sorted(set(tags), key=release_sort_key)
    releases = tuple(Release(t, t in shipped) for t in ordered if is_release_tag(t))
    others = tuple(t for t in ordered if not is_release_tag(t))
    return ReleasesResult(client.registry, repository, image, releases, others)


def latest_release(client: RegistryClient, *, repository: str, image: str = REFERENCE_IMAGE) -> str:
    """The newest release tag (``vMAJOR.MINOR.PATCH_YYYY-MM-DD``) of ``repository/image`` at the source."""
    found = list_releases(client, repository=repository, image=image)
    if found.latest is None:
        raise NotFoundError(
            f"{client.registry}/{join_repository(repository, image)} has no release tag "
            f"(vMAJOR.MINOR.PATCH_YYYY-MM-DD) among its {len(found.other_tags)} tags",
            hint=f"pass the tag with {option('source.tag')}, or check {variable('source.repository')}",
        )
    return found.latest


def find_missing(
    client_for: Callable[[str], RegistryClient], wanted: Sequence[Wanted], *, jobs: int, keep: bool = False
) -> list[Wanted]:
    """The images of ``wanted`` whose tag (or digest) the source does not have, in list order.

    One request per image, :func:`lookup_jobs` at a time; only "not found" counts as missing: any other failure
    (auth, network) is raised as it is, since it says nothing about the tag. ``keep``: the images are resolved
    next, so each is asked with a GET whose answer the resolve reuses (:meth:`RegistryClient.check_manifest`);
    otherwise with a HEAD.
    """

    def absent(item: Wanted) -> bool:
        ref = item.reference
        client = client_for(ref.registry)
        if keep:
            return not client.check_manifest(ref.repository, ref.ref)
        return client.head_manifest(ref.repository, ref.ref) is None

    flags = each(absent, wanted, jobs=lookup_jobs(jobs))
    return [w for w, gone in zip(wanted, flags) if gone]


def missing_error(missing: Sequence[Wanted], *, total: int, can_skip: bool = True) -> NotFoundError:
    """One error naming every missing image, so a single run shows the whole gap."""
    if len(missing) == 1:
        message = f"image {missing[0].reference} not found at the source"
        hint = f"check the image name and {variable('source.tag')} (or the image list)"
    else:
        message = f"{len(missing)} of {total} images are not at the source: " + ", ".join(
            str(w.reference) for w in missing)
        hint = "check the tag with 'arcgap releases'; write a list for it with 'arcgap manifests new TAG'"
    if can_skip and len(missing) < total:
        hint += f"; or pass {option('skip_missing')} to export the others and record the gap in the bundle"
    return NotFoundError(message, hint=hint)


def skipped_record(missing: Sequence[Wanted]) -> list[dict[str, str]]:
    """How --skip-missing records the left-out images (arcgap.yaml ``skipped_images``, export --json)."""
    return [{"name": w.name, "source": str(w.reference)} for w in missing]


def check_at_source(
    client_for: Callable[[str], RegistryClient], wanted: Sequence[Wanted], *, jobs: int, skip_missing: bool
) -> tuple[list[Wanted], list[Wanted]]:
    """(images to export, images skipped): every missing image is named at once, before any download;
    with ``skip_missing`` they are left out instead, unless that leaves nothing. The answers are kept for the
    resolve that follows (one round trip per image for both)."""
    missing = find_missing(client_for, wanted, jobs=jobs, keep=True)
    if missing and (not skip_missing or len(missing) == len(wanted)):
        raise missing_error(missing, total=len(wanted), can_skip=not skip_missing)
    gone = {id(w) for w in missing}
    return [w for w in wanted if id(w) not in gone], missing
