"""A release's image set, asked of the source itself: the repositories of its catalog (``GET /v2/_catalog``,
paginated) under ``SOURCE_DOCKER_REPOSITORY/`` that carry the release tag, one HEAD each in parallel; and the
difference between that set and a shipped list (images added at the source, images gone from it).

A registry that refuses its catalog (401, 403, 404, UNSUPPORTED, pages that repeat or never end) is not an
error here: the caller keeps the shipped list, which stays the offline record of a release. No printing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arcgap.arc.imagelist import ImageEntry, ImageList
from arcgap.errors import AuthError, NotFoundError, RegistryError
from arcgap.oci.reference import join_repository
from arcgap.registry.client import RegistryClient
from arcgap.util.parallel import each


@dataclass(frozen=True)
class Discovery:
    """What the source says release ``tag`` holds under ``registry/repository``."""

    registry: str
    repository: str
    tag: str
    images: tuple[str, ...]  # names relative to the repository that carry the tag, in catalog order
    untagged: tuple[str, ...]  # names under the repository without the tag
    refused: str | None = None  # why the catalog could not be used; then ``images`` is empty

    @property
    def answered(self) -> bool:
        return self.refused is None

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "catalog": self.answered, "refused": self.refused, "images": list(self.images),
                "untagged": list(self.untagged)}


@dataclass(frozen=True)
class ListDiff:
    """A shipped list against the source: names only the source has, names only the list has."""

    shipped: str  # the list's origin ("release v1.29.0_2024-04-09")
    added: tuple[str, ...]
    gone: tuple[str, ...]

    @property
    def same(self) -> bool:
        return not self.added and not self.gone

    def describe(self) -> str:
        parts = []
        if self.added:
            parts.append(f"{len(self.added)} added ({', '.join(self.added)})")
        if self.gone:
            parts.append(f"{len(self.gone)} gone ({', '.join(self.gone)})")
        return f"the source differs from the shipped list of {self.shipped.removeprefix('release ')}: " + \
            "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"shipped": self.shipped, "added": list(self.added), "gone": list(self.gone)}


def catalog_names(client: RegistryClient, repository: str) -> tuple[list[str] | None, str | None]:
    """(names directly under ``repository/`` in the catalog, None) or (None, why the catalog cannot be used).

    Only direct children: MCR lists pre-release images under the release's own repository
    (``arcdata/test/…``, ``arcdata/preview/…``) with the release's tag, and they are not the release."""
    try:
        everything = client.list_catalog()
    except (AuthError, NotFoundError, RegistryError) as exc:  # network errors are raised: the source is down
        return None, exc.message
    prefix = repository.strip("/") + "/"
    return [r[len(prefix):] for r in everything
            if r.startswith(prefix) and len(r) > len(prefix) and "/" not in r[len(prefix):]], None


def discover_release(client: RegistryClient, *, repository: str, tag: str, jobs: int) -> Discovery:
    """The repositories under ``repository/`` that carry ``tag`` (each manifest asked for, in parallel; the
    answers are kept for the check and the resolve that follow: :meth:`RegistryClient.check_manifest`)."""
    names, refused = catalog_names(client, repository)
    if names is None:
        return Discovery(client.registry, repository, tag, (), (), refused)

    def carries(name: str) -> bool:
        return client.check_manifest(join_repository(repository, name), tag)

    flags = each(carries, names, jobs=jobs, name="arcgap-discover")
    return Discovery(client.registry, repository, tag, tuple(n for n, f in zip(names, flags) if f),
                     tuple(n for n, f in zip(names, flags) if not f))


def compare(shipped: ImageList, found: Sequence[str]) -> ListDiff:
    """Added and gone names; a full reference in a list (a non-Arc image) is never "gone"."""
    listed = [e.name for e in shipped.images if e.reference is None]
    have = set(found)
    return ListDiff(shipped.origin, tuple(n for n in found if n not in set(listed)),
                    tuple(n for n in listed if n not in have))


def discovered_list(found: Discovery, shipped: ImageList | None) -> ImageList:
    """The discovered images as a list: the shipped list's order for the names it has, then the new ones;
    the shipped list's full references (non-Arc images) are kept."""
    have = set(found.images)
    entries: list[ImageEntry] = []
    if shipped is not None:
        entries = [e for e in shipped.images if e.reference is not None or e.name in have]
    known = {e.name for e in entries}
    entries += [ImageEntry(name=n, tag=None, reference=None) for n in found.images if n not in known]
    return ImageList(tuple(entries), found.tag, found.registry, found.repository,
                     f"the catalog of {found.registry}/{found.repository} at {found.tag}")
