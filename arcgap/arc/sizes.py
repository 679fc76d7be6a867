"""How big a release is at the source: each image's configs and layers (every platform of an index), and the
release as one bundle would carry it (a blob shared by several images counted once). Manifests and configs are
read; no layer is downloaded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from arcgap.registry.client import RegistryClient
from arcgap.registry.resolve import Wanted, resolve_all


@dataclass(frozen=True)
class ImageSize:
    name: str
    reference: str
    digest: str
    platforms: int
    bytes: int  # configs and layers of every platform, each blob once

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "reference": self.reference, "digest": self.digest,
                "platforms": self.platforms, "bytes": self.bytes}


def image_sizes(
    client_for: Callable[[str], RegistryClient], wanted: Sequence[Wanted], *, jobs: int
) -> tuple[list[ImageSize], int]:
    """Each image's size and the release's (shared blobs once)."""
    everything: dict[str, int] = {}
    sizes: list[ImageSize] = []
    for img in resolve_all(client_for, wanted, jobs=jobs):
        mine = {str(d.digest): d.size for p in img.platforms for d in p.parsed.blobs}
        everything.update(mine)
        sizes.append(ImageSize(img.wanted.name, str(img.wanted.reference), str(img.top.digest),
                               len(img.platforms), sum(mine.values())))
    return sizes, sum(everything.values())
