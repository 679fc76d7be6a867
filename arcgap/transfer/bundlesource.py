"""A bundle stream as a :class:`~arcgap.transfer.source.Source`: sequential, read once, every blob verified.

Manifests come first in a bundle: :meth:`BundleSource.contents` reads them and checks the graph; the configs
and layers follow through :meth:`BundleSource.stream`, read ahead on a second thread.
"""

from __future__ import annotations

from collections.abc import Iterator

from arcgap.bundle.format import MANIFEST_KINDS, BlobEntry
from arcgap.bundle.graph import build_graph
from arcgap.bundle.reader import BundleReader
from arcgap.oci.digest import Digest
from arcgap.transfer.readahead import read_ahead
from arcgap.transfer.source import Contents, Meter


def metered(chunks: Iterator[bytes], meter: Meter) -> Iterator[bytes]:
    for chunk in chunks:
        meter(len(chunk))
        yield chunk


class BundleSource:
    """The images of one bundle, read once from its start to its end."""

    sequential = True

    def __init__(self, reader: BundleReader) -> None:
        self.reader = reader
        self._blobs: Iterator[tuple[BlobEntry, Iterator[bytes]]] | None = None
        self._first: tuple[BlobEntry, Iterator[bytes]] | None = None  # the first config or layer, already begun

    def contents(self, meter: Meter) -> Contents:
        manifests: dict[Digest, bytes] = {}
        self._blobs = read_ahead(self.reader.blobs())
        for entry, chunks in self._blobs:
            if entry.kind not in MANIFEST_KINDS:
                self._first = (entry, chunks)
                break
            manifests[entry.digest] = b"".join(metered(chunks, meter))
        graphs = build_graph(self.reader.toc, manifests, origin=self.reader.origin)
        return Contents(self.reader.toc, tuple(graphs), manifests)

    def stream(self, meter: Meter) -> Iterator[tuple[BlobEntry, Iterator[bytes]]]:
        blobs = self._blobs
        assert blobs is not None, "contents() first"
        try:
            if self._first is not None:
                entry, chunks = self._first
                self._first = None
                yield entry, metered(chunks, meter)
            for entry, chunks in blobs:
                yield entry, metered(chunks, meter)
        finally:
            self.close()  # the read-ahead thread stops with the copy

    def close(self) -> None:
        """Stop reading ahead; a copy that ends before :meth:`stream` (refused, a dry run) calls it too."""
        blobs, self._blobs, self._first = self._blobs, None, None
        close = getattr(blobs, "close", None)
        if close is not None:
            close()

    def open(self, entry: BlobEntry, meter: Meter) -> Iterator[bytes]:
        raise TypeError("a bundle stream is read once, in order: use stream()")
