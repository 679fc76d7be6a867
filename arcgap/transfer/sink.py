"""Where a copy goes: the two small interfaces the engine writes to.

A :class:`Sink` is registry-like: it holds blobs and manifests per repository, tags are manifests put under a tag
name, and blobs are placed (present / mount / upload) in any order; :class:`arcgap.registry.client.RegistryClient`
is one as it stands, :class:`arcgap.dockerengine.load.EngineSink` (``docker load`` + push) another, and the
engine's unit tests use an in-memory one. A :class:`StreamSink` (a bundle writer)
takes every blob once, in order; an :class:`ExportOutput` is where ``export`` puts one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from arcgap.bundle.format import BlobEntry, TableOfContents
from arcgap.oci.digest import Digest
from arcgap.transfer.source import Contents, Meter, Source


class Sink(Protocol):
    """Blob placement (present / mount / upload), manifests and tags, and a way to read a placed blob back."""

    registry: str

    def ping(self) -> None: ...

    def blob_exists(self, repository: str, digest: Digest, *, push_scope: bool = False) -> bool: ...

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        """Cross-repository mount; False when the sink would rather have the bytes."""
        ...

    def upload_blob(self, repository: str, digest: Digest, chunks: Iterable[bytes], *, what: str = "",
                    size: int | None = None, reopen: Callable[[], Iterable[bytes]] | None = None) -> int:
        """Send ``chunks`` (which verify themselves) and commit them under ``digest``; ``reopen`` gives the bytes
        from the start again, should the sink lose the upload midway."""
        ...

    def prepare_push(self, repository: str, blob: Digest | None = None) -> None:
        """Raise now if ``repository`` cannot be pushed to (it does not exist and is not created, its name is
        refused), before any blob is sent."""
        ...

    def stream_blob(self, repository: str, digest: Digest, size_bytes: int, *, what: str = "") -> Iterator[bytes]:
        """A placed blob's bytes, verified (used when a mount is refused and the source cannot be read again)."""
        ...

    def head_manifest(self, repository: str, ref: str) -> Digest | None: ...

    def put_manifest(self, repository: str, ref: str, raw: bytes, media_type: str, *,
                     push_scope: bool = True) -> Digest | None:
        """Store ``raw`` under ``ref`` (a digest or a tag). A sink that stores other bytes than ``raw`` (the Docker
        Engine's push) returns the digest it now holds under ``ref``; None means ``raw``'s own."""
        ...


class StreamSink(Protocol):
    """A sink that takes every blob once, in the source's order (a bundle writer, ``docker load``)."""

    def write(self, contents: Contents, blobs: Iterator[tuple[BlobEntry, Iterator[bytes]]]) -> None:
        """Consume ``blobs`` (each one's chunks verify themselves: the last arrives only once checked).

        ``blobs`` holds every blob the source has not already read into ``contents`` (a bundle stream's manifests).
        """
        ...


@dataclass(frozen=True)
class Written:
    """What an export's output holds once complete: its bytes on disk and, for a split bundle, its files."""

    total_bytes: int
    parts: tuple[str, ...] = ()
    sidecar: str | None = None


class ExportOutput(Protocol):
    """Where ``export`` writes (a bundle file or parts, an OCI layout directory): one stream of the source's blobs.

    ``signed`` tells the plan which bundle format to name; ``write`` copies ``source`` in, calls ``done(digest)``
    after each blob, and returns only once the output is complete (nothing that looks complete before)."""

    path: Path
    signed: bool

    def write(self, toc: TableOfContents, source: Source, *, small_blobs: dict[Digest, bytes],
              done: Callable[[Digest], None], meter: Meter,
              warn: Callable[[str], None] = lambda _text: None) -> Written:
        """``warn`` is told of a blob fetched once more (a registry served it with other content)."""
        ...
