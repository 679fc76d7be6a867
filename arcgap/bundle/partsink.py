"""The file end of the bundle writer: one compressed stream into ``NAME`` or ``NAME.001``, ``NAME.002``, ….

Each file is written as ``….partial`` and hashed while it is written (no second pass). ``finish()`` writes the
``NAME.parts.yaml`` sidecar and renames everything into place, the sidecar last; ``abort()`` removes every file
this sink created.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
from pathlib import Path

from arcgap.bundle.parts import PART_SUFFIX, BundleIdentity, PartEntry, PartsIndex, part_name, sidecar_name
from arcgap.errors import LocalIOError, option
from arcgap.util.directfile import SequentialWriter


def partial_of(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def existing_outputs(path: Path) -> list[Path]:
    """Files an export to ``path`` would replace: the bundle, its parts and its sidecar."""
    found = [p for p in (path, path.with_name(sidecar_name(path.name))) if p.exists()]
    pattern = re.compile(re.escape(path.name) + PART_SUFFIX.pattern)
    if path.parent.is_dir():
        found += sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))
    return found


# Each file is written past the page cache (O_DIRECT, arcgap.util.directfile.SequentialWriter) where the
# filesystem allows it: through the page cache, copying 505 MB of bundle into it cost about 1 s of kernel time
# on a 2-core VM (a fifth of the export's CPU), and nothing reads those pages again in the same run.


class PartSink:
    """A write-only binary stream that rotates files every ``split_bytes`` (never: None)."""

    def __init__(self, path: Path, *, split_bytes: int | None) -> None:
        if split_bytes is not None and split_bytes < 1:
            raise ValueError("split_bytes must be positive")
        self.path = path
        self.split_bytes = split_bytes
        self.entries: list[PartEntry] = []
        self.paths: list[Path] = []  # final names, in order
        self._fh: SequentialWriter | None = None
        self._written = 0  # bytes in the current file
        self._hash = hashlib.sha256()
        self._total = hashlib.sha256()
        self.total_bytes = 0
        self._discard = False
        self._now: Path | None = None  # a file being written that is not a part (the sidecar)
        self._created: list[Path] = []  # everything to remove on abort (partials and renamed files)

    @property
    def current(self) -> Path:
        """The file being written (its final name), for messages."""
        if self._now is not None:
            return self._now
        return self.paths[-1] if self.paths else self._next_path()

    def _next_path(self) -> Path:
        if self.split_bytes is None:
            return self.path
        return self.path.with_name(part_name(self.path.name, len(self.paths) + 1))

    def open(self) -> None:
        self._start()

    def _start(self) -> None:
        path = self._next_path()
        self.paths.append(path)
        self._created.append(partial_of(path))
        fd = os.open(partial_of(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        self._fh = SequentialWriter(fd)  # closed in _end or abort
        self._written = 0
        self._hash = hashlib.sha256()

    def _end(self) -> None:
        assert self._fh is not None
        fh, self._fh = self._fh, None
        fh.close(fsync=True)
        self.entries.append(PartEntry(self.paths[-1].name, self._written, self._hash.hexdigest()))

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | memoryview) -> int:
        if self._discard:
            return len(data)
        view = memoryview(data).cast("B")
        while view:
            if self._fh is None:
                self._start()
            assert self._fh is not None
            room = len(view) if self.split_bytes is None else self.split_bytes - self._written
            piece = view[:room]
            self._fh.write(piece)
            self._hash.update(piece)
            if self.split_bytes is not None:  # unsplit, the one part's hash is the stream's
                self._total.update(piece)
            self._written += len(piece)
            self.total_bytes += len(piece)
            view = view[len(piece):]
            if self.split_bytes is not None and self._written == self.split_bytes:
                self._end()  # the next byte, if any, opens the next part: no empty last part
        return len(data)

    def flush(self) -> None:
        """Nothing to do: data reaches the file in whole buffers, the rest when the file ends."""

    def finish(self, identity: BundleIdentity | None, *, remove_stale: bool = False) -> PartsIndex | None:
        """Close the last file, write the sidecar (when the bundle's identity is known), rename all into place.

        ``remove_stale`` first removes what an earlier export to the same name left and this one does not
        replace (parts beyond the new last one, or the other shape), so no stray part is taken for one of these.
        """
        if self._fh is not None:
            self._end()
        index = None
        renames = [(partial_of(p), p) for p in self.paths]
        if identity is not None:
            total_sha256 = self._total.hexdigest() if self.split_bytes is not None else self.entries[0].sha256
            index = PartsIndex(bundle_name=self.path.name, identity=identity, parts=tuple(self.entries),
                               total_size=self.total_bytes, total_sha256=total_sha256, split_bytes=self.split_bytes)
            sidecar = self._now = self.path.with_name(sidecar_name(self.path.name))
            self._created.append(partial_of(sidecar))
            with open(partial_of(sidecar), "wb") as fh:
                fh.write(index.to_yaml())
                fh.flush()
                os.fsync(fh.fileno())
            renames.append((partial_of(sidecar), sidecar))  # last: its presence means the parts are complete
            self._now = None
        if remove_stale:
            replaced = {final for _, final in renames}
            for path in existing_outputs(self.path):
                if path not in replaced:
                    path.unlink()
        for partial, final in renames:
            os.replace(partial, final)
            self._created.append(final)
        self._created.clear()  # complete: nothing left to remove
        return index

    def abort(self) -> None:
        """Remove every file this sink created; later writes are discarded."""
        self._discard = True
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.abort()
            self._fh = None
        for path in self._created:
            with contextlib.suppress(OSError):
                path.unlink()
        self._created.clear()


def io_error(exc: OSError, sink: PartSink) -> LocalIOError:
    """A write failure, naming the file; every file this export created has been removed by then."""
    split = sink.split_bytes is not None
    if exc.errno == errno.ENOSPC:
        removed = "the partial files were removed" if split else "the partial file was removed"
        return LocalIOError(f"disk full while writing {sink.current}; {removed}",
                            hint=f"free space or choose another {option('output')} location")
    return LocalIOError(f"cannot write {sink.current}: {exc.strerror or exc}",
                        hint=f"check the {option('output')} path")
