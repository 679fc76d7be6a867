"""Write a bundle: deterministic tar members through a multithreaded zstd stream into one file or several parts.

Every file is written as ``….partial`` and renamed only when the whole bundle is complete, with the
``NAME.parts.yaml`` sidecar last (see :mod:`arcgap.bundle.partsink`); any failure removes them all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

import zstandard

from arcgap.bundle import tarstream
from arcgap.bundle.diskspace import check_free_space
from arcgap.bundle.format import MANIFEST_NAME, BundleManifest
from arcgap.bundle.parts import BundleIdentity, PartsIndex
from arcgap.bundle.partsink import PartSink, existing_outputs, io_error
from arcgap.errors import LocalIOError
from arcgap.oci.digest import Digest
from arcgap.util.backgroundsink import BackgroundSink


class BundleWriter:
    """Use as a context manager; call ``commit()`` at the end, otherwise every partial file is removed.

    ``split_bytes`` cuts the compressed stream into ``NAME.001``, ``NAME.002``, … of at most that size;
    ``expected_bytes`` (an estimate of the bundle's size) makes ``__enter__`` check the free space first.
    The sidecar is written when the first member is ``arcgap.yaml`` (it records that file's identity).
    """

    def __init__(self, path: Path, *, level: int = 3, threads: int = -1, overwrite: bool = False,
                 split_bytes: int | None = None, expected_bytes: int | None = None) -> None:
        self.path = path
        self.level = level
        self.threads = threads
        self.overwrite = overwrite
        self.expected_bytes = expected_bytes
        self._sink = PartSink(path, split_bytes=split_bytes)
        self._out: BackgroundSink | None = None  # the sink's writes (part sha256 + file), off this thread
        self._zw: zstandard.ZstdCompressionWriter | None = None
        self._identity: BundleIdentity | None = None
        self.uncompressed_bytes = 0
        self.compressed_bytes = 0
        self.committed = False
        self.index: PartsIndex | None = None  # the sidecar's content, after commit

    @property
    def parts(self) -> tuple[Path, ...]:
        """The files written, in order (one for an unsplit bundle)."""
        return tuple(self._sink.paths)

    @property
    def sidecar(self) -> Path | None:
        return self.path.with_name(self.index.file_name) if self.index is not None else None

    def __enter__(self) -> BundleWriter:
        existing = existing_outputs(self.path)
        if existing and not self.overwrite:
            raise LocalIOError(
                f"{existing[0]} already exists", hint="remove it, choose another --output, or pass --force"
            )
        if self.expected_bytes is not None:
            check_free_space(self.path.parent, self.expected_bytes)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._sink.open()
        except OSError as exc:
            self.abort()
            raise io_error(exc, self._sink) from None
        params = zstandard.ZstdCompressionParameters.from_level(
            self.level, threads=self.threads, job_size=ZSTD_JOB_BYTES, write_checksum=True
        )
        cctx = zstandard.ZstdCompressor(compression_params=params)
        self._out = BackgroundSink(self._sink)
        self._zw = cctx.stream_writer(self._out, closefd=False, write_size=1 << 20)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self.committed:
            self.abort()

    def _write(self, data: bytes | memoryview) -> None:
        assert self._zw is not None
        try:
            self._zw.write(data)
        except OSError as exc:
            self.abort()
            raise io_error(exc, self._sink) from None
        self.uncompressed_bytes += len(data)

    def add_manifest(self, manifest: BundleManifest, data: bytes) -> None:
        """The first member, ``arcgap.yaml``: ``data`` is ``manifest.to_yaml()`` (not parsed again)."""
        if self.uncompressed_bytes == 0:
            self._identity = _identity(data, manifest)
        self.add_bytes(MANIFEST_NAME, data)

    def add_bytes(self, name: str, data: bytes) -> None:
        if name == MANIFEST_NAME and self.uncompressed_bytes == 0 and self._identity is None:
            self._identity = _identity(data)
        self._write(tarstream.member_header(name, len(data)))
        self._write(data)
        self._write(tarstream.padding(len(data)))

    def add_stream(self, name: str, size: int, chunks: Iterable[bytes]) -> None:
        """Write a member of known ``size`` from ``chunks`` (which verify their own digest)."""
        self._write(tarstream.member_header(name, size))
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise RuntimeError(f"{name}: more data than the declared {size} bytes")
            self._write(chunk)
        if written != size:
            raise RuntimeError(f"{name}: {written} bytes written, {size} declared")
        self._write(tarstream.padding(size))

    def commit(self) -> int:
        """Finish the archive, flush to disk and rename every file into place; returns the compressed bytes."""
        assert self._zw is not None
        self._write(tarstream.END_OF_ARCHIVE)
        try:
            self._zw.close()  # ends the frame (with its checksum); an extra flush would add an empty frame
            self._zw = None
            assert self._out is not None
            self._out.drain()
            self._out.stop()
            self.index = self._sink.finish(self._identity, remove_stale=self.overwrite)
        except OSError as exc:
            self.abort()
            raise io_error(exc, self._sink) from None
        self.committed = True
        self.compressed_bytes = self._sink.total_bytes
        return self.compressed_bytes

    def abort(self) -> None:
        if self._out is not None:
            self._out.stop()  # the writer thread is idle from here on
        self._sink.abort()  # before the compressor's close: its last words are discarded, not written to a new part
        if self._zw is not None:
            with contextlib.suppress(OSError, zstandard.ZstdError, ValueError):
                self._zw.close()
            self._zw = None

# Multithreaded zstd hands each worker a job of this size. The library default (4 × window ≈ 8 MiB at level 3)
# kept ~50 MiB in flight; 2 MiB measured: peak RSS 125 → 94 MiB and 8 % faster on a 330 MB export of
# gzip layers. 4 MiB: each job boundary costs some ratio, and on the 505 MB bench release 2 MiB jobs made
# the bundle 501,348,266 B, larger than skopeo's zstd -T0 of the same blobs (501,338,457 B); 4 MiB gives
# 501,283,894 B, same CPU, about 13 MiB more peak RSS. The output depends on it, so it is fixed (determinism).
ZSTD_JOB_BYTES = 4 * 1024 * 1024


def _identity(manifest_bytes: bytes, manifest: BundleManifest | None = None) -> BundleIdentity:
    if manifest is None:
        manifest = BundleManifest.from_yaml(manifest_bytes)
    return BundleIdentity(
        manifest_sha256=Digest.of(manifest_bytes).hex,
        format_version=manifest.format_version,
        arcgap_version=manifest.arcgap_version,
        created=manifest.created,
        images=len(manifest.images),
        blobs=len(manifest.blobs),
        content_bytes=manifest.total_bytes,
    )
