"""Write a bundle: deterministic tar members through zstd into one file or several parts.

Every file is written as ``….partial`` and renamed only when the whole bundle is complete, with the
``NAME.parts.yaml`` sidecar last (see :mod:`arcgap.bundle.partsink`); any failure removes them all.

The compressed stream is a sequence of standard zstd frames (``zstd -d`` and every zstd reader decode
concatenated frames as one stream), each with its content checksum. A member whose first bytes say it is
already compressed (a gzip or zstd layer, :func:`already_compressed`) goes into a frame of its own made by a
single-threaded compressor at the same level; everything else (arcgap.yaml, manifests, configs, uncompressed
layers) goes through the multithreaded one (``threads``). Why: on gzip layers zstd gains under 1 %, and its
multithreaded mode spent about 1 s more CPU per 500 MB than one thread for the same ratio, CPU the downloads,
the digests and the writes need on a small machine. Frame boundaries depend only on the members and their
bytes, so the same images still give a byte-identical bundle.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from pathlib import Path

import zstandard

from arcgap.bundle import tarstream
from arcgap.bundle.diskspace import check_free_space
from arcgap.bundle.format import TOC_NAME, TableOfContents
from arcgap.bundle.parts import BundleIdentity, PartsIndex, sidecar_name
from arcgap.bundle.partsink import PartSink, existing_outputs, io_error, partial_of
from arcgap.errors import LocalIOError, UsageError, option
from arcgap.oci.digest import Digest
from arcgap.util.backgroundsink import BackgroundSink
from arcgap.util.safetext import safe


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
        # Each compressor writes its frames straight into the background sink (``stream_writer``); ``compressobj``
        # gathered each call's output into a new bytes object first: measured 5 % less CPU on 128 MiB of
        # incompressible data at level 3 (0.0555 -> 0.0527 s, medians of 5), the same bytes out.
        self._dense: zstandard.ZstdCompressionWriter | None = None  # multithreaded: members that compress
        self._light: zstandard.ZstdCompressionWriter | None = None  # one thread: members already compressed
        self._frame: zstandard.ZstdCompressionWriter | None = None  # the one whose frame is being written
        self._frame_light = False
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
        check_name_length(self.path)  # before existing_outputs asks about NAME.parts.yaml
        existing = existing_outputs(self.path)
        if existing and not self.overwrite:
            raise LocalIOError(
                f"{existing[0]} already exists",
                hint=f"remove it, choose another {option('output')}, or pass {option('force')}",
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
        light = zstandard.ZstdCompressionParameters.from_level(self.level, threads=0, write_checksum=True)
        self._out = BackgroundSink(self._sink)
        self._dense = zstandard.ZstdCompressor(compression_params=params).stream_writer(
            self._out, write_size=WRITE_BYTES, closefd=False)
        self._light = zstandard.ZstdCompressor(compression_params=light).stream_writer(
            self._out, write_size=WRITE_BYTES, closefd=False)
        return self

    def __exit__(self, exc_type: object, exc: object, _tb: object) -> None:
        if not self.committed:
            self.abort()

    def _use(self, light: bool) -> None:
        """Write what follows into a frame of the dense (multithreaded) or the light (one thread) compressor."""
        if self._frame is not None and self._frame_light == light:
            return
        try:
            self._end_frame()
        except OSError as exc:
            self.abort()
            raise io_error(exc, self._sink) from None
        self._frame = self._light if light else self._dense
        self._frame_light = light

    def _end_frame(self) -> None:
        if self._frame is not None:
            frame, self._frame = self._frame, None
            frame.flush(zstandard.FLUSH_FRAME)  # the frame's end and checksum; the next write starts a new one

    def _write(self, data: bytes | memoryview) -> None:
        if self._frame is None:
            self._use(False)
        assert self._frame is not None
        try:
            self._frame.write(data)  # its output goes to the background sink as it comes
        except OSError as exc:
            self.abort()
            raise io_error(exc, self._sink) from None
        self.uncompressed_bytes += len(data)

    def add_toc(self, toc: TableOfContents, data: bytes) -> None:
        """The first member, ``arcgap.yaml``: ``data`` is ``manifest.to_yaml()`` (not parsed again)."""
        if self.uncompressed_bytes == 0:
            self._identity = _identity(data, toc)
        self.add_bytes(TOC_NAME, data)

    def add_bytes(self, name: str, data: bytes) -> None:
        if name == TOC_NAME and self.uncompressed_bytes == 0 and self._identity is None:
            self._identity = _identity(data)
        self._use(already_compressed(data, len(data)))
        self._write(tarstream.member_header(name, len(data)))
        self._write(data)
        self._write(tarstream.padding(len(data)))

    def add_stream(self, name: str, size: int, chunks: Iterable[bytes]) -> None:
        """Write a member of known ``size`` from ``chunks`` (which verify their own digest)."""
        it = iter(chunks)
        head: list[bytes] = []  # the first chunks, until they hold the bytes that tell a compressed stream
        while sum(map(len, head)) < MAGIC_BYTES and (chunk := next(it, None)) is not None:
            head.append(chunk)
        self._use(already_compressed(b"".join(bytes(c[:MAGIC_BYTES]) for c in head), size))
        self._write(tarstream.member_header(name, size))
        written = 0
        for chunk in itertools.chain(head, it):
            written += len(chunk)
            if written > size:
                raise RuntimeError(f"{name}: more data than the declared {size} bytes")
            self._write(chunk)
        if written != size:
            raise RuntimeError(f"{name}: {written} bytes written, {size} declared")
        self._write(tarstream.padding(size))

    def commit(self) -> int:
        """Finish the archive, flush to disk and rename every file into place; returns the compressed bytes."""
        self._use(False)
        self._write(tarstream.END_OF_ARCHIVE)
        try:
            self._end_frame()  # with its checksum
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
        self._sink.abort()  # anything still written is discarded, never a new part
        self._frame = None

# Multithreaded zstd hands each worker a job of this size. The library default (4 × window ≈ 8 MiB at level 3)
# kept ~50 MiB in flight; 2 MiB measured: peak RSS 125 → 94 MiB and 8 % faster on a 330 MB export of
# gzip layers. 4 MiB: each job boundary costs some ratio, and on the 505 MB bench release 2 MiB jobs made
# the bundle 501,348,266 B, larger than skopeo's zstd -T0 of the same blobs (501,338,457 B); 4 MiB gives
# 501,283,894 B, same CPU, about 13 MiB more peak RSS. The output depends on it, so it is fixed (determinism).
ZSTD_JOB_BYTES = 4 * 1024 * 1024
# The compressors hand the background sink pieces of at most this size (its queue holds 8 of them).
WRITE_BYTES = 1024 * 1024


# A member at least this large whose first bytes are a gzip or zstd header goes into a light frame; below it a
# frame switch (about 20 bytes of frame header and checksum) is not worth making.
LIGHT_MIN_BYTES = 64 * 1024
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd")  # gzip, zstd
MAGIC_BYTES = 4


def already_compressed(head: bytes | memoryview, size: int) -> bool:
    """True when a member of ``size`` bytes starting with ``head`` is a gzip or zstd stream worth a light frame."""
    return size >= LIGHT_MIN_BYTES and bytes(head[:MAGIC_BYTES]).startswith(_COMPRESSED_MAGIC)


def _identity(toc_bytes: bytes, toc: TableOfContents | None = None) -> BundleIdentity:
    if toc is None:
        toc = TableOfContents.from_yaml(toc_bytes)
    return BundleIdentity(
        manifest_sha256=Digest.of(toc_bytes).hex,  # the sidecar's field name (bundle format): arcgap.yaml's sha256
        format_version=toc.format_version,
        arcgap_version=toc.arcgap_version,
        created=toc.created,
        images=len(toc.images),
        blobs=len(toc.blobs),
        content_bytes=toc.total_bytes,
    )


def check_name_length(path: Path) -> None:
    """Every name derived from the bundle's (``NAME.parts.yaml.partial`` the longest) must fit the file system:
    refused before anything is written, not as ``OSError: File name too long`` at the end. A backslash, a path
    separator on Windows, is refused too: the sidecar's reader refuses a bundle name holding one."""
    if "\\" in path.name:
        raise UsageError(f"the bundle's file name {safe(path.name[:80])} holds a backslash, which the other side "
                         "may take for a path separator (the NAME.parts.yaml written beside it would be refused)",
                         hint=f"choose an {option('output')} without a backslash")
    try:
        name_max = os.pathconf(path.parent if str(path.parent) else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    longest = partial_of(path.with_name(sidecar_name(path.name))).name
    if len(longest.encode("utf-8", "surrogateescape")) > name_max:
        room = name_max - (len(longest.encode("utf-8", "surrogateescape")) - len(path.name.encode("utf-8",
                                                                                                "surrogateescape")))
        raise UsageError(f"the bundle's file name is too long for this file system: arcgap also writes "
                         f"{safe(path.name[:40])}….parts.yaml.partial beside it, longer than {name_max} bytes",
                         hint=f"choose a shorter {option('output')} (at most {room} bytes)")

