"""Write a bundle: deterministic tar members through a multithreaded zstd stream into one file.

The file is written as ``NAME.partial`` and renamed only when complete; any failure removes it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import zstandard

from arcgap.bundle import tarstream
from arcgap.errors import LocalIOError


def _io_error(exc: OSError, path: Path) -> LocalIOError:
    if exc.errno == errno.ENOSPC:
        return LocalIOError(
            f"disk full while writing {path}; the partial file was removed",
            hint="free space or choose another --output location",
        )
    return LocalIOError(f"cannot write {path}: {exc.strerror or exc}", hint="check the --output path")


class BundleWriter:
    """Use as a context manager; call ``commit()`` at the end, otherwise the partial file is removed."""

    def __init__(self, path: Path, *, level: int = 3, threads: int = -1, overwrite: bool = False) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.level = level
        self.threads = threads
        self.overwrite = overwrite
        self._fh: BinaryIO | None = None
        self._zw: zstandard.ZstdCompressionWriter | None = None
        self.uncompressed_bytes = 0
        self.committed = False

    def __enter__(self) -> BundleWriter:
        if self.path.exists() and not self.overwrite:
            raise LocalIOError(
                f"{self.path} already exists", hint="remove it, choose another --output, or pass --force"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.partial, "wb")  # noqa: SIM115 - closed in commit/abort
        except OSError as exc:
            raise _io_error(exc, self.path) from None
        cctx = zstandard.ZstdCompressor(level=self.level, threads=self.threads, write_checksum=True)
        self._zw = cctx.stream_writer(self._fh, closefd=False, write_size=1 << 20)
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
            raise _io_error(exc, self.path) from None
        self.uncompressed_bytes += len(data)

    def add_bytes(self, name: str, data: bytes) -> None:
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
        """Finish the archive, flush to disk and rename into place; returns the bundle's size in bytes."""
        assert self._zw is not None and self._fh is not None
        self._write(tarstream.END_OF_ARCHIVE)
        try:
            self._zw.close()  # ends the frame (with its checksum); an extra flush would add an empty frame
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.replace(self.partial, self.path)
        except OSError as exc:
            self.abort()
            raise _io_error(exc, self.path) from None
        self.committed = True
        return self.path.stat().st_size

    def abort(self) -> None:
        for closer in (self._zw, self._fh):
            try:
                if closer is not None:
                    closer.close()
            except (OSError, zstandard.ZstdError, ValueError):
                pass
        self._zw = self._fh = None
        try:
            self.partial.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            pass
