"""An OCI image layout directory as a :class:`~arcgap.transfer.sink.StreamSink` (``export --format oci-layout``).

The layout is the one the OCI image spec defines (image-layout.md): ``oci-layout``, ``blobs/sha256/<hex>`` and
``index.json`` with one descriptor per image, named by ``org.opencontainers.image.ref.name`` (``NAME:TAG``, as in
a bundle's own index), so ``skopeo … oci:DIR:NAME:TAG`` and crane read it. Manifests are written byte for byte;
every blob arrives verified (the stream's last chunk comes only once size and digest match) into a ``.partial``
file that is renamed only then. ``index.json`` is written last, by rename: a crash leaves a directory without an
index, which no reader takes for a complete layout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from arcgap.bundle.format import INDEX_NAME, LAYOUT_NAME, BlobEntry, TableOfContents
from arcgap.errors import LocalIOError, UsageError
from arcgap.oci.digest import Digest
from arcgap.transfer.engine import copy_stream
from arcgap.transfer.refetch import once_more
from arcgap.transfer.sink import Written
from arcgap.transfer.source import Contents, Meter, Source

PARTIAL = ".partial"


@dataclass(frozen=True)
class LayoutOutput:
    """``export --format oci-layout``: an :class:`~arcgap.transfer.sink.ExportOutput` for a layout directory."""

    path: Path
    overwrite: bool = False
    signed = False  # a layout has no arcgap.yaml to sign

    def write(self, toc: TableOfContents, source: Source, *, small_blobs: dict[Digest, bytes],
              done: Callable[[Digest], None], meter: Meter,
              warn: Callable[[str], None] = lambda _text: None) -> Written:
        sink = LayoutSink(self.path, toc, overwrite=self.overwrite, done=done)
        sink.prepare()  # an existing layout is refused before the first download starts

        def attempt(meter: Meter, done: Callable[[Digest], None]) -> Written:
            sink.done, sink.written_bytes = done, 0  # the same directory: blobs already there are replaced
            copy_stream(source, sink, meter=meter)
            return Written(sink.written_bytes)

        return once_more(attempt, meter=meter, done=done, warn=warn, again="writing the layout's blobs again")


class LayoutSink:
    """Writes ``manifest``'s images into the directory ``path`` (created; an existing layout only with
    ``overwrite``, and its ``index.json`` goes first, so it never names blobs that are being replaced)."""

    def __init__(self, path: Path, toc: TableOfContents, *, overwrite: bool = False,
                 done: Callable[[Digest], None] = lambda _digest: None) -> None:
        if toc.relies_on:
            raise UsageError("a layout holds whole images: it cannot leave out blobs the far side holds")
        self.path = path
        self.toc = toc
        self.overwrite = overwrite
        self.done = done
        self.written_bytes = 0
        self._blobs: Path | None = None

    def prepare(self) -> Path:
        """Check the directory and make ``blobs/sha256`` (once); an old ``index.json`` goes first."""
        if self._blobs is None:
            self._blobs = self._prepare()
        return self._blobs

    def _prepare(self) -> Path:
        path = self.path
        if path.exists() and not path.is_dir():
            raise LocalIOError(f"{path} exists and is not a directory", hint="choose another directory")
        index = path / INDEX_NAME
        if path.is_dir() and any(path.iterdir()):
            if not (index.is_file() or (path / LAYOUT_NAME).is_file()):  # never write into someone's files
                raise LocalIOError(f"{path} is not empty and holds no OCI layout", hint="choose another directory")
            if not self.overwrite:
                raise LocalIOError(f"{path} already holds an OCI layout",
                                   hint="remove it, choose another directory, or overwrite it")
        blobs = path / "blobs" / "sha256"
        try:
            index.unlink(missing_ok=True)  # an interrupted overwrite must not look complete either
            blobs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalIOError(f"cannot write the layout {path}: {exc.strerror or exc}") from None
        return blobs

    def write(self, contents: Contents, blobs: Iterator[tuple[BlobEntry, Iterator[bytes]]]) -> None:
        folder = self.prepare()
        for entry, chunks in blobs:
            if entry.digest.algorithm != "sha256":  # the bundle plan admits only what the layout can name
                raise UsageError(f"blob {entry.digest}: an OCI layout here holds sha256 blobs only")
            self._blob(folder / entry.digest.hex, entry, chunks)
            self.done(entry.digest)
        # Every blob is in place: the layout marker, then the index that names the images, each by rename.
        self._small(self.path / LAYOUT_NAME, TableOfContents.oci_layout())
        self._small(self.path / INDEX_NAME, self.toc.oci_index())
        _sync_dir(self.path)

    def _blob(self, final: Path, entry: BlobEntry, chunks: Iterable[bytes]) -> None:
        self.written_bytes += _write_file(final, chunks)

    def _small(self, final: Path, data: bytes) -> None:
        self.written_bytes += _write_file(final, (data,))


def _write_file(final: Path, chunks: Iterable[bytes]) -> int:
    """``final`` appears only complete: written as ``….partial``, synced, renamed; removed on any failure."""
    partial = final.with_name(final.name + PARTIAL)
    written = 0
    try:
        with partial.open("wb") as f:
            for chunk in chunks:  # a verified stream's last chunk arrives only once size and digest match
                f.write(chunk)
                written += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, final)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise LocalIOError(f"cannot write {final}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


def _sync_dir(path: Path) -> None:
    """The renames themselves reach the disk (POSIX: fsync the directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
