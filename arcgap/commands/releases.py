"""Glue for the connected side's release commands (``arcgap releases``, ``arcgap manifests new``): source
settings → clients → :mod:`arcgap.arc.releases` / :mod:`arcgap.arc.listgen`. No printing here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from arcgap.arc.discover import ListDiff, compare
from arcgap.arc.imagelist import (
    ImageList,
    default_release_tag,
    images_from_names,
    load_image_list,
    load_shipped_release,
    shipped_releases,
)
from arcgap.arc.listgen import NewListResult, new_image_list, refuse_existing, render_image_list, write_text
from arcgap.arc.releases import REFERENCE_IMAGE, ReleasesResult, list_releases
from arcgap.arc.sizes import ImageSize, image_sizes
from arcgap.commands.clients import ClientPool, side_tls
from arcgap.commands.options import ManifestsNewOptions, ReleasesOptions, RunContext, SourceOptions
from arcgap.commands.settings import Endpoint, collect_endpoint
from arcgap.commands.sourceset import ChainRequest, chain_tags, release_images, shipped_or_newest
from arcgap.commands.transfer import wanted_images
from arcgap.oci.reference import validate_tag
from arcgap.registry.resolve import Wanted


@contextmanager
def source_pool(
    source: SourceOptions, context: RunContext, *, tag: str, jobs: int, defaults_from: ImageList | None = None,
) -> Iterator[tuple[Endpoint, ClientPool]]:
    """The source endpoint (SOURCE_DOCKER_* as for export; defaults from the newest shipped list) and a pool."""
    base = defaults_from or load_shipped_release(default_release_tag())
    defaults = {"registry": base.registry or "mcr.microsoft.com", "repository": base.repository or "arcdata",
                "username": None, "tag": tag}
    # The tag is the command's own business, not SOURCE_DOCKER_TAG's: given as an option, it is never asked.
    endpoint = collect_endpoint(replace(source, tag=tag), environ=context.environ, defaults=defaults,
                                prompt=context.prompt, secret_prompt=context.secret_prompt)
    tls = side_tls(endpoint, ca_file=source.ca_file, insecure=source.insecure)
    with ClientPool(endpoint, tls, max_connections=jobs + 4, environ=context.environ) as pool:
        yield endpoint, pool


def run_releases(source: SourceOptions, options: ReleasesOptions, context: RunContext) -> ReleasesResult:
    with source_pool(source, context, tag="latest", jobs=1) as (endpoint, pool):
        return list_releases(pool(endpoint.registry), repository=endpoint.repository,
                             image=options.image or REFERENCE_IMAGE)


@dataclass(frozen=True)
class ReleaseImagesResult:
    """``arcgap releases --release TAG``: the release's images at the source, and their sizes when asked."""

    registry: str
    repository: str
    tag: str
    origin: str  # the catalog, or the shipped list used instead
    catalog: bool  # the source's catalog answered
    refused: str | None
    images: tuple[str, ...]
    untagged: tuple[str, ...]  # under the repository, without the tag
    diff: ListDiff | None  # against the shipped list, when there is one and the catalog answered
    sizes: tuple[ImageSize, ...] = ()
    total_bytes: int | None = None  # shared blobs once

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "releases", "registry": self.registry, "repository": self.repository, "release": self.tag,
            "origin": self.origin, "catalog": self.catalog, "refused": self.refused, "images": list(self.images),
            "untagged": list(self.untagged), "shipped_diff": self.diff.to_dict() if self.diff else None,
            "sizes": [s.to_dict() for s in self.sizes] if self.total_bytes is not None else None,
            "total_bytes": self.total_bytes,
        }


@dataclass(frozen=True)
class ChainResult:
    """``arcgap releases --from-release A [--to-release B]``: the upgrade chain, oldest first."""

    registry: str
    repository: str
    start: str
    releases: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"command": "releases", "registry": self.registry, "repository": self.repository,
                "from": self.start, "chain": list(self.releases)}


def run_release_images(
    source: SourceOptions, context: RunContext, *, tag: str, sizes: bool, jobs: int,
) -> ReleaseImagesResult:
    validate_tag(tag)
    with source_pool(source, context, tag=tag, jobs=jobs) as (endpoint, pool):
        quiet = lambda _text: None  # noqa: E731 - the difference is part of the result here, not a warning
        image_list, found = release_images(pool(endpoint.registry), endpoint, tag, jobs=jobs, warn=quiet,
                                           note=quiet)
        diff = None
        if found.answered and found.images and tag in shipped_releases():
            diff = compare(load_shipped_release(tag), found.images)
        if not found.answered or not found.images:
            image_list = shipped_or_newest(tag, context.warn)
        wanted = wanted_images(image_list, endpoint, tag)
        measured, total = image_sizes(pool, wanted, jobs=jobs) if sizes else ([], None)
    return ReleaseImagesResult(
        endpoint.registry, endpoint.repository, tag, image_list.origin, found.answered, found.refused,
        tuple(e.name for e in image_list.images), found.untagged, diff, tuple(measured), total)


def run_chain(source: SourceOptions, context: RunContext, *, start: str, end: str | None) -> ChainResult:
    request = ChainRequest(start=start, end=end)
    with source_pool(source, context, tag="latest", jobs=1) as (endpoint, pool):
        tags = chain_tags(pool(endpoint.registry), endpoint, request, context.warn)
    return ChainResult(endpoint.registry, endpoint.repository, start, tuple(tags))


def previous_list(previous: str | None) -> ImageList:
    """``--from``: a shipped release tag or a list file; default the newest shipped list."""
    if previous is None:
        return load_shipped_release(default_release_tag())
    if previous in shipped_releases():
        return load_shipped_release(previous)
    path = Path(previous)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_image_list(path)
    return load_shipped_release(previous)  # not shipped, not a file: its error lists the shipped releases


def default_list_path(tag: str, cwd: Path | None = None) -> Path:
    """``manifests/TAG.yaml`` in a checkout (a ``manifests`` directory here), else ``TAG.yaml``."""
    cwd = cwd or Path.cwd()
    folder = cwd / "manifests"
    return (folder if folder.is_dir() else cwd) / f"{tag}.yaml"


def run_manifests_new(
    source: SourceOptions, options: ManifestsNewOptions, context: RunContext, *, cwd: Path | None = None,
) -> NewListResult:
    tag, previous, add, output, force, jobs = (options.tag, options.previous, options.add, options.output,
                                               options.force, options.jobs)
    validate_tag(tag)
    start = previous_list(previous)
    extra = images_from_names(add) if add else None
    target = output or default_list_path(tag, cwd)
    refuse_existing(target, overwrite=force)  # before any request, not after
    with source_pool(source, context, tag=tag, jobs=jobs, defaults_from=start) as (endpoint, pool):
        def wanted_for(candidates: ImageList) -> list[Wanted]:
            return wanted_images(candidates, endpoint, tag)

        kept, added, missing = new_image_list(
            pool, tag=tag, previous=start, add=extra, registry=endpoint.registry, repository=endpoint.repository,
            wanted_for=wanted_for, jobs=jobs,
        )
    text = render_image_list(kept, tag=tag, registry=endpoint.registry, repository=endpoint.repository,
                             origin=start.origin)
    write_text(target, text, overwrite=force)
    return NewListResult(
        tag=tag, output=target, previous=start.origin, registry=endpoint.registry, repository=endpoint.repository,
        images=tuple(e.name for e in kept), added=tuple(added), missing=tuple(missing),
    )
