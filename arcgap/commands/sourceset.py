"""Which release, and which images of it, the connected side moves: the newest release tag the source has
(falling back to the newest shipped list, with a warning, when the source cannot be asked), the release's
image set from the source's catalog (the shipped list when the catalog is refused, with the difference shown),
and the releases of an upgrade chain. Glue over :mod:`arcgap.arc.releases`, :mod:`arcgap.arc.discover` and
:mod:`arcgap.arc.chain`; no printing here (warnings go to the ``warn`` callable)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from arcgap.arc.chain import chain_between, explicit_chain
from arcgap.arc.discover import Discovery, compare, discover_release, discovered_list
from arcgap.arc.imagelist import ImageList, default_release_tag, load_shipped_release, shipped_releases
from arcgap.arc.releases import latest_release, list_releases
from arcgap.commands.settings import Endpoint
from arcgap.errors import ArcgapError, UsageError, option
from arcgap.registry.client import RegistryClient

Warn = Callable[[str], None]


@dataclass(frozen=True)
class ChainRequest:
    """Several releases in one bundle: an explicit set (repeated --release), or from the release the site runs
    (exclusive) to a newer one (inclusive; default the newest)."""

    tags: tuple[str, ...] = ()
    start: str | None = None  # --from-release
    end: str | None = None  # --to-release

    def __post_init__(self) -> None:
        if self.tags and (self.start or self.end):
            raise UsageError(f"give either several {option('release')} tags or {option('from_release')} "
                             f"[{option('to_release')}], not both")
        if self.end and not self.start:
            raise UsageError(f"{option('to_release')} needs {option('from_release')} (the release the site runs)")


def newest_or_shipped(client: RegistryClient, endpoint: Endpoint, warn: Warn) -> str:
    """The newest release tag at the source; when it cannot be asked, the newest shipped list's, with a warning
    naming it."""
    try:
        return latest_release(client, repository=endpoint.repository)
    except UsageError:
        raise
    except ArcgapError as exc:
        fallback = default_release_tag()
        warn(f"cannot ask {endpoint.registry}/{endpoint.repository} for its newest release ({exc.message}); "
             f"using the newest shipped list, {fallback}, which may be behind the source")
        return fallback


def shipped_or_newest(tag: str, warn: Warn) -> ImageList:
    """The shipped list of ``tag``; for a release without one, the newest shipped list, with a warning."""
    if tag in shipped_releases():
        return load_shipped_release(tag)
    newest = default_release_tag()
    warn(f"no shipped image list for {tag}; using the list of {newest} "
         f"(check it against the release notes, or pass {option('images')} FILE)")
    return load_shipped_release(newest)


def release_images(
    client: RegistryClient, endpoint: Endpoint, tag: str, *, jobs: int, warn: Warn,
    note: Callable[[str], None],
) -> tuple[ImageList, Discovery]:
    """The images of release ``tag``: those the source's catalog has under the repository with the tag, the
    difference from the shipped list (if any) shown through ``warn`` before anything moves; the shipped list when
    the catalog is refused or has no image at the tag (the missing-image check then names them)."""
    found = discover_release(client, repository=endpoint.repository, tag=tag, jobs=jobs)
    shipped = load_shipped_release(tag) if tag in shipped_releases() else None
    if not found.answered or not found.images:
        why = found.refused or f"no repository under {endpoint.repository}/ has the tag {tag}"
        note(f"the catalog of {endpoint.registry} gives no image set ({why}); using the shipped list")
        return shipped if shipped is not None else shipped_or_newest(tag, warn), found
    note(f"{endpoint.registry}/{endpoint.repository} has {len(found.images)} images at {tag} (from its catalog)")
    if shipped is not None:
        diff = compare(shipped, found.images)
        if not diff.same:
            warn(diff.describe())
    return discovered_list(found, shipped), found


def chain_tags(client: RegistryClient | None, endpoint: Endpoint, request: ChainRequest, warn: Warn) -> list[str]:
    """The releases of the chain, oldest first: the source's release tags (or the shipped lists', with a
    warning, when the source cannot be asked; ``client`` None: offline)."""
    if request.tags:
        return explicit_chain(request.tags)
    assert request.start is not None
    where = f"{endpoint.registry}/{endpoint.repository}"
    available: Sequence[str]
    try:
        if client is None:
            raise UsageError("offline")
        available = [r.tag for r in list_releases(client, repository=endpoint.repository).releases]
    except ArcgapError as exc:
        if client is not None and isinstance(exc, UsageError):
            raise
        if client is not None:
            warn(f"cannot ask {where} for its releases ({exc.message}); the chain follows the shipped lists")
        available, where = shipped_releases(), "the shipped lists"
    return chain_between(available, start=request.start, end=request.end, where=where)
