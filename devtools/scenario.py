"""What the demo and the benchmark share: the release they generate, its size, and small text helpers.

- :data:`RELEASE_TAG`, :data:`SOURCE_REPOSITORY`, :data:`TARGET_REPOSITORY` -- the names used end to end.
- :func:`layer_sizes_for` -- base/app layer content sizes that make a release of about ``total_mb`` of blobs.
- :func:`blob_totals` -- unique blobs and bytes of a generated release (read from the pushed manifests).
- :func:`image_list_yaml` -- an ``arcgap-images/v1`` list for ``arcgap export --images FILE``.
- :func:`tools_missing` -- which of the external programs a script needs are not installed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence

from devtools.images import ImageInfo
from devtools.synth import ARC_IMAGES

RELEASE_TAG = "v1.29.0_2024-04-09"
SOURCE_REPOSITORY = "arcdata"
TARGET_REPOSITORY = "mirror/arcdata"
MB = 1_000_000
MiB = 1 << 20

# generate_release's plan over the 22 names: layer content = 1.5 base (base 0 + half-size base 1, shared)
# + 24.25 app (22 images, one extra arch for arc-controller, a quarter-size second app layer on 5 images).
# With compressible=0.5 a blob is about half its content.
_BASE_SHARE, _APP_SHARE, _APP_PER_BASE = 1.5, 24.25, 24 / 128  # the bench preset's base:app ratio


def layer_sizes_for(total_mb: float, compressible: float = 0.5) -> tuple[int, int]:
    """``(base_layer_bytes, app_layer_bytes)`` for about ``total_mb`` MB of blobs over the 22 Arc images."""
    content = total_mb * MB / max(1.0 - compressible, 0.05)
    base = content / (_BASE_SHARE + _APP_SHARE * _APP_PER_BASE)
    return int(base), int(base * _APP_PER_BASE)


def _descriptors(info: ImageInfo) -> Iterable[tuple[str, int]]:
    doc = json.loads(info.manifest)
    if info.is_index:
        for child in info.children:
            yield child.digest, len(child.manifest)
            yield from _descriptors(child)
        return
    config = doc.get("config") or {}
    yield str(config.get("digest")), int(config.get("size", 0))
    for layer in doc.get("layers") or []:
        yield str(layer["digest"]), int(layer["size"])


def blob_totals(infos: Mapping[str, ImageInfo]) -> tuple[int, int]:
    """``(unique blobs, their bytes)`` over manifests, configs and layers of the release."""
    sizes: dict[str, int] = {}
    for info in infos.values():
        sizes[info.digest] = len(info.manifest)
        sizes.update(_descriptors(info))
    return len(sizes), sum(sizes.values())


def image_list_yaml(names: Sequence[str], *, release: str, repository: str, title: str) -> str:
    """An ``arcgap-images/v1`` image list (the registry comes from ``SOURCE_DOCKER_REGISTRY``)."""
    lines = [f"# {title}", "format: arcgap-images/v1", f"release: {release}", f"repository: {repository}", "images:"]
    lines += [f"  - {name}" for name in names]
    return "\n".join(lines) + "\n"


def tools_missing(tools: Sequence[str]) -> list[str]:
    """The programs of ``tools`` not found on PATH."""
    return [tool for tool in tools if shutil.which(tool) is None]


__all__ = [
    "ARC_IMAGES",
    "MB",
    "RELEASE_TAG",
    "SOURCE_REPOSITORY",
    "TARGET_REPOSITORY",
    "blob_totals",
    "image_list_yaml",
    "layer_sizes_for",
    "tools_missing",
]
