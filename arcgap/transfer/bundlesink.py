"""A bundle writer as a :class:`~arcgap.transfer.sink.StreamSink`: the table of contents first, then every blob.

The members before the blobs, in this order: ``arcgap.yaml``, its signature (right after the bytes it signs),
``oci-layout``, ``index.json`` and, for a full bundle, docker-load's ``manifest.json``; a signed bundle's
``arcgap.yaml`` records those members' digests, so the signature covers every byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from arcgap.bundle.dockercompat import DOCKER_LOAD_INDEX_NAME, docker_load_json
from arcgap.bundle.format import INDEX_NAME, LAYOUT_NAME, BlobEntry, TableOfContents
from arcgap.bundle.signature import SIGNATURE_NAME
from arcgap.bundle.writer import BundleWriter
from arcgap.oci.digest import Digest
from arcgap.transfer.source import Contents

if TYPE_CHECKING:
    from arcgap.bundle.signing import Signer


class BundleSink:
    """Writes ``manifest``'s bundle into ``writer``; ``done(digest)`` is called after each blob is written."""

    def __init__(self, writer: BundleWriter, toc: TableOfContents, *, small_blobs: dict[Digest, bytes],
                 signer: Signer | None = None, done: Callable[[Digest], None] = lambda _digest: None) -> None:
        self.writer = writer
        self.done = done
        layout = {LAYOUT_NAME: toc.oci_layout(), INDEX_NAME: toc.oci_index()}
        if not toc.relies_on:  # docker-load compatibility; a differential bundle lacks layers docker needs
            layout[DOCKER_LOAD_INDEX_NAME] = docker_load_json(toc, small_blobs)
        if signer is not None:  # arcgap.yaml records the other members' digests: the signature covers them too
            toc = toc.with_members(layout)
        self.toc = toc  # as written
        toc_bytes = toc.to_yaml()
        writer.add_toc(toc, toc_bytes)
        if signer is not None:  # the signature member sits right after the bytes it signs
            writer.add_bytes(SIGNATURE_NAME, signer.sign(toc_bytes).to_bytes())
        for name, data in layout.items():
            writer.add_bytes(name, data)

    def write(self, contents: Contents, blobs: Iterator[tuple[BlobEntry, Iterator[bytes]]]) -> None:
        for entry, chunks in blobs:
            self.writer.add_stream(entry.member, entry.size, chunks)
            self.done(entry.digest)
