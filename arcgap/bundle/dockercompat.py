"""``manifest.json``: the file ``docker load`` reads, derived from a bundle's manifests (docker-load compatibility).

One entry per image: ``Config`` and ``Layers`` are paths of blobs inside the OCI layout, ``RepoTags`` the
image's source reference. The classic image store holds one platform per image, so for an index the child of
the exporting machine's platform is chosen, else ``linux/amd64``, else the first child.
"""

from __future__ import annotations

import json
import platform as _platform
from collections.abc import Mapping

from arcgap.bundle.format import ImageEntry, TableOfContents
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import is_index, parse_manifest

DOCKER_LOAD_INDEX_NAME = "manifest.json"
FALLBACK_PLATFORM = "linux/amd64"
_MACHINE_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                 "armv7l": "arm/v7", "armv6l": "arm/v6", "ppc64le": "ppc64le", "s390x": "s390x", "i686": "386"}


def host_platform() -> str:
    """The exporting machine's platform as ``linux/ARCH[/VARIANT]`` (images are Linux images)."""
    machine = _platform.machine().lower()
    return f"linux/{_MACHINE_ARCH.get(machine, machine)}"


def pick_child(image: ImageEntry, wanted: str) -> Digest:
    """The single-platform manifest docker will load for ``image``: ``wanted``, else linux/amd64, else the first."""
    if not is_index(image.media_type):
        return image.digest
    children = [p for p in image.platforms if p.digest != image.digest]
    for choice in (wanted, FALLBACK_PLATFORM):
        for p in children:
            if p.platform == choice or p.platform.startswith(choice + "/"):
                return p.digest
    return children[0].digest


def repo_tag(toc: TableOfContents, image: ImageEntry) -> str:
    path = "/".join(x for x in (toc.source_repository, image.name) if x)
    return f"{toc.source_registry}/{path}:{image.tag}"


def docker_load_json(toc: TableOfContents, small_blobs: Mapping[Digest, bytes], *,
                         wanted_platform: str | None = None, tags: Mapping[str, str] | None = None) -> bytes:
    """The bytes of docker's ``manifest.json`` (deterministic for the same bundle and platform).

    ``small_blobs`` must hold the bytes of every image manifest chosen; ``tags`` maps an image's ref_name to
    the RepoTag to use instead of its source reference (import through the engine tags for the target).
    """
    wanted = wanted_platform or host_platform()
    entries = []
    for image in toc.images:
        chosen = pick_child(image, wanted)
        media_type = next((p.media_type for p in image.platforms if p.digest == chosen), image.media_type)
        parsed = parse_manifest(small_blobs[chosen], media_type, what=f"manifest {chosen}")
        assert parsed.config is not None
        entries.append({
            "Config": _path(parsed.config.digest),
            "RepoTags": [(tags or {}).get(image.ref_name) or repo_tag(toc, image)],
            "Layers": [_path(layer.digest) for layer in parsed.layers],
        })
    return (json.dumps(entries, separators=(",", ":")) + "\n").encode()


def chosen_platforms(toc: TableOfContents, wanted_platform: str | None = None) -> dict[str, str]:
    """ref_name → the platform picked for each multi-platform image (for warnings)."""
    wanted = wanted_platform or host_platform()
    out = {}
    for image in toc.images:
        if is_index(image.media_type):
            chosen = pick_child(image, wanted)
            out[image.ref_name] = next(p.platform for p in image.platforms if p.digest == chosen)
    return out


def _path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def check_docker_load_index(toc: TableOfContents, data: bytes) -> str | None:
    """What is wrong with a bundle's ``manifest.json`` for these images (None: it fits), without the blobs.

    One entry per image in order, ``RepoTags`` exactly the image's source reference, ``Config`` a config and
    ``Layers`` layers that arcgap.yaml lists: what docker acts on can name no other image and no other blob.
    """
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(doc, list) or len(doc) != len(toc.images):
        return "not one entry per image"
    kinds = {_path(b.digest): b.kind for b in toc.blobs}
    for image, entry in zip(toc.images, doc):
        if not isinstance(entry, dict) or set(entry) != {"Config", "RepoTags", "Layers"}:
            return f"the entry of {image.ref_name} is not what arcgap writes"
        if entry["RepoTags"] != [repo_tag(toc, image)]:
            return f"RepoTags of {image.ref_name} differ from the image's source reference"
        layers = entry["Layers"]
        if kinds.get(entry["Config"]) != "config" or not isinstance(layers, list) or any(
                not isinstance(x, str) or kinds.get(x) != "layer" for x in layers):
            return f"Config or Layers of {image.ref_name} name blobs that are not its config and layers"
    return None
