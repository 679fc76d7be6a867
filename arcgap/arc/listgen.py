"""``arcgap manifests new``: a release's image list from the previous one, checked against the source, rendered
in the documented ``arcgap-images/v1`` format (manifests/README.md) with the usual header comment."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arcgap.arc.imagelist import FORMAT, ImageEntry, ImageList, parse_image_list
from arcgap.arc.releases import find_missing
from arcgap.errors import LocalIOError, NotFoundError, UsageError, option
from arcgap.oci.reference import parse_reference
from arcgap.registry.client import RegistryClient
from arcgap.registry.resolve import Wanted
from arcgap.util.safetext import safe

HEADER = """\
# arcgap image list — Azure Arc data services {tag}
# Written by 'arcgap manifests new' from {origin}; every image was checked at {source}.
#
# Format arcgap-images/v1 (described in full in manifests/README.md):
#   format:     arcgap-images/v1 (required)
#   release:    the default source tag for these images
#   registry:   the default source registry
#   repository: the default source repository (may be nested: mirror/arcdata)
#   images:     one item per image, each one of
#     - arc-controller                   a name relative to registry/repository; tag = the source tag
#     - name: arc-controller             the long form, with an optional per-image tag override
#       tag: {tag}
#     - docker.io/library/busybox:1.36   a full reference (starts with a registry host) for a non-Arc image
# release/registry/repository are defaults: --source-* options and SOURCE_DOCKER_* variables override them.
# A per-image tag (long form or full reference) is that image's own source tag.
"""


@dataclass(frozen=True)
class NewListResult:
    tag: str
    output: Path
    previous: str  # where the starting list came from ("release v1.29.0_2024-04-09" or a file)
    registry: str
    repository: str
    images: tuple[str, ...]  # written, in order
    added: tuple[str, ...]  # --add names that were found and written
    missing: tuple[str, ...]  # left out: the source has no such tag for them

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "manifests new",
            "tag": self.tag,
            "output": str(self.output),
            "previous": self.previous,
            "registry": self.registry,
            "repository": self.repository,
            "images": list(self.images),
            "added": list(self.added),
            "missing": list(self.missing),
        }


def render_entry(entry: ImageEntry) -> list[str]:
    """The YAML lines of one item, in the shortest form that keeps its meaning."""
    if entry.reference is not None:
        own_tag = parse_reference(entry.reference).tag
        if entry.tag is not None and entry.tag != own_tag:
            return [f"  - name: {entry.reference}", f'    tag: "{entry.tag}"']
        return [f"  - {entry.reference}"]
    if entry.tag is not None:
        return [f"  - name: {entry.name}", f'    tag: "{entry.tag}"']
    return [f"  - {entry.name}"]


def render_image_list(
    entries: Sequence[ImageEntry], *, tag: str, registry: str, repository: str, origin: str
) -> str:
    """The text of a list; parsed back before it is returned, so a rendering slip can never be written."""
    lines = [
        HEADER.format(tag=tag, origin=safe(origin), source=f"{registry}/{repository}"),  # a path: any characters
        f"format: {FORMAT}",
        f"release: {tag}",
        f"registry: {registry}",
        f"repository: {repository}",
        "images:",
    ]
    for entry in entries:
        lines.extend(render_entry(entry))
    text = "\n".join(lines) + "\n"
    parsed = parse_image_list(text, origin=f"new list for {tag}")
    assert parsed.images == tuple(entries), "rendered list does not read back the same"
    return text


def new_image_list(
    client_for: Callable[[str], RegistryClient],
    *,
    tag: str,
    previous: ImageList,
    add: ImageList | None,
    registry: str,
    repository: str,
    wanted_for: Callable[[ImageList], list[Wanted]],
    jobs: int,
) -> tuple[list[ImageEntry], list[str], list[str]]:
    """Entries of ``previous`` (plus ``add``) that the source has at ``tag``; also the added names that were
    found and the names that were not. ``wanted_for`` maps a list to the references to check."""
    entries = list(previous.images)
    known = {e.name for e in entries}
    added: list[ImageEntry] = []
    for entry in add.images if add is not None else ():
        if entry.name in known:
            raise UsageError(f"{option('add')} {entry.name}: already in {previous.origin}", hint="give only new images")
        known.add(entry.name)
        added.append(entry)
    everything = entries + added
    candidates = ImageList(tuple(everything), tag, registry, repository, previous.origin)
    wanted = wanted_for(candidates)
    gone = {w.name for w in find_missing(client_for, wanted, jobs=jobs)}
    if len(gone) == len(everything):
        raise NotFoundError(
            f"no image of {previous.origin} has the tag {tag} at {registry}/{repository}",
            hint="check the tag with 'arcgap releases' and the source with "
                 f"{option('source.registry')}/{option('source.repository')}",
        )
    kept = [e for e in everything if e.name not in gone]
    return kept, [e.name for e in added if e.name not in gone], [e.name for e in everything if e.name in gone]


def refuse_existing(path: Path, *, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise LocalIOError(f"{path} already exists", hint=f"pass {option('force')} to replace it, or "
                                                          f"{option('output')} another file")


def write_text(path: Path, text: str, *, overwrite: bool) -> None:
    """Write ``path`` atomically (temporary file, then rename); an existing file needs ``overwrite``."""
    refuse_existing(path, overwrite=overwrite)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise LocalIOError(f"cannot write {path}: {exc.strerror}", hint="check the directory's permissions") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
