"""Where a copy comes from: its table of contents, its manifests, and verified blob streams.

Two kinds: a *sequential* source (a bundle stream) delivers every blob once, in its own order, and cannot go
back; a *random-access* source (a registry) opens any blob at any time, as often as asked. Every chunk either
kind hands out comes through :func:`arcgap.oci.digest.verified_chunks`: the last one arrives only once size and
digest have been checked. A source that holds a thread or a file may have a ``close()``: the engine calls it when
a copy ends, however it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from arcgap.bundle.format import BlobEntry, TableOfContents
from arcgap.bundle.graph import ImageGraph
from arcgap.oci.digest import Digest

Meter = Callable[[int], None]  # told the length of every verified chunk read from the source


@dataclass(frozen=True)
class Contents:
    """What a source holds: the table of contents, each image's graph, and every manifest's verified bytes."""

    toc: TableOfContents
    graphs: tuple[ImageGraph, ...]  # one per manifest.images, in that order
    manifests: Mapping[Digest, bytes]

    def raw(self, digest: Digest) -> bytes:
        return self.manifests[digest]


class Source(Protocol):
    """A source of manifests and verified blob streams."""

    sequential: bool  # True: only :meth:`stream`; False: :meth:`open`, any blob, any number of times

    def contents(self, meter: Meter) -> Contents:
        """The images and their manifests (a stream reads its manifest members here)."""
        ...

    def stream(self, meter: Meter) -> Iterator[tuple[BlobEntry, Iterator[bytes]]]:
        """Every blob :meth:`contents` has not read, in the source's order; each read before the next is asked for."""
        ...

    def open(self, entry: BlobEntry, meter: Meter) -> Iterator[bytes]:
        """One blob's verified bytes (random-access sources only)."""
        ...
