"""Getting bulk writes to disk cheaply: past the page cache, or with writeback started early.

:class:`SequentialWriter` writes a new file front to back past the page cache (``O_DIRECT``), where the
filesystem allows it.

The export's blob cache writes a copy of every blob it downloads, data nobody reads again in that run.
Through the page cache that copy cost 1.2–1.3 s of kernel time per 500 MB on a fresh 2-core VM (every
page first touched), against 0.12–0.15 s with ``O_DIRECT`` (``dd``, 1 MiB writes), and it pushed the
pages of the bundle being written out of memory. Data goes through one page-aligned buffer, written whole;
the last piece that is not a multiple of the block size is written with ``O_DIRECT`` switched off.
Where direct I/O is refused (tmpfs, some FUSE or network filesystems, other systems than Linux) the
writer falls back to ordinary writes, with the same result on disk.

:func:`start_writeback` asks the kernel to begin writing a range of a file now, without waiting
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``). The bundle writer calls it as it goes, so the ``fsync`` that
ends each file waits for the last few MiB instead of the whole file (0.25 s of a 505 MB export here), and
dirty pages never pile up in memory ahead of a slow USB stick. Where the call does not exist it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import mmap
import os

BLOCK = 4096  # alignment of buffer, offset and length that every Linux filesystem doing direct I/O accepts
BUFFER_BYTES = 1 << 20
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> object | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # not Linux (or no such symbol in this libc)
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Start writing ``length`` bytes at ``offset`` of ``fd`` to disk, without waiting; False if not possible.

    Only a hint: durability still comes from ``fsync``. Errors are ignored (``fsync`` reports them).
    """
    if _sync_file_range is None or length <= 0:
        return False
    return _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE) == 0  # type: ignore[operator]


class SequentialWriter:
    """Owns ``fd`` (a new, empty file opened for writing) and closes it in :meth:`close`."""

    def __init__(self, fd: int, *, buffer_bytes: int = BUFFER_BYTES, direct: bool = True) -> None:
        if buffer_bytes <= 0 or buffer_bytes % BLOCK:
            raise ValueError(f"buffer_bytes must be a positive multiple of {BLOCK}")
        self._fd = fd
        self._buf = mmap.mmap(-1, buffer_bytes)  # anonymous mappings are page-aligned
        self._fill = 0
        self.direct = direct and _set_direct(fd, True)
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        size = len(self._buf)
        while view:
            n = min(len(view), size - self._fill)
            self._buf[self._fill:self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == size:
                self._write_out(size)
                self._fill = 0

    def close(self, *, fsync: bool = False) -> None:
        """Write what is buffered and close the file (also after an error: the descriptor never leaks).

        ``fsync`` waits for the data (and the file's size) to be on disk before closing.
        """
        try:
            if self._fill:
                aligned = self._fill - self._fill % BLOCK
                if aligned:
                    self._write_out(aligned)
                tail = self._fill - aligned
                if tail:
                    self._buffered()
                    self._buf.move(0, aligned, tail)
                    self._write_out(tail)
                self._fill = 0
            if fsync:
                os.fsync(self._fd)
        finally:
            fd, self._fd = self._fd, -1
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(BufferError):  # a traceback still holds a view: freed with it
                self._buf.close()

    def abort(self) -> None:
        """Close without writing what is buffered."""
        self._fill = 0
        self.close()

    def _buffered(self) -> None:
        if self.direct:
            _set_direct(self._fd, False)
            self.direct = False

    def _write_out(self, length: int) -> None:
        with memoryview(self._buf) as whole:
            self._write_view(whole[:length])

    def _write_view(self, view: memoryview) -> None:
        with view:
            done = 0
            while done < len(view):
                try:
                    n = os.write(self._fd, view[done:])
                except OSError as exc:
                    if not (self.direct and exc.errno == errno.EINVAL):
                        raise
                    self._buffered()  # the filesystem wants another alignment: write as everyone else does
                    continue
                self.written += n
                done += n
                if done < len(view):
                    self._buffered()  # a short write leaves the offset unaligned


def _set_direct(fd: int, on: bool) -> bool:
    if not _O_DIRECT:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | _O_DIRECT) if on else (flags & ~_O_DIRECT))
    except OSError:
        return False
    return True
