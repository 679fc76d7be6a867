"""Glue for the connected side's release commands (``arcgap releases``, ``arcgap manifests new``): source
settings → clients → :mod:`arcgap.arc.releases` / :mod:`arcgap.arc.listgen`. No printing here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

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
from arcgap.commands.clients import ClientPool, side_tls
from arcgap.commands.options import ManifestsNewOptions, ReleasesOptions, RunContext, SourceOptions
from arcgap.commands.settings import Endpoint, collect_endpoint
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
