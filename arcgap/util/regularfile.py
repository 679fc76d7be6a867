"""Open a file for reading only when it is a regular file: a FIFO, a device or a socket named as a receipt,
sidecar, key or image list would block ``open`` or ``read`` forever (nothing writes to it)."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class NotRegularFile(OSError):
    """``path`` names something other than a regular file; ``strerror`` says what."""


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``open(path, "rb")`` that refuses anything but a regular file before a byte is read. The open itself
    does not block (``O_NONBLOCK``: a FIFO with no writer opens at once); the flag is cleared for reading."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a file")
            raise NotRegularFile(errno.EINVAL, f"not a regular file ({kind})", str(path))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], *, limit: int | None = None) -> bytes:
    """The bytes of a regular file (at most ``limit`` + 1 of them, so a caller can tell "too large")."""
    with open_regular(path) as fh:
        return fh.read() if limit is None else fh.read(limit + 1)


def read_regular_text(path: str | os.PathLike[str]) -> str:
    return read_regular(Path(path)).decode("utf-8")
