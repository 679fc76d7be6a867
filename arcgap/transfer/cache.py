"""The connected side's content-addressed blob cache: verified downloads kept by digest, re-verified on use.

Layout: ``ROOT/blobs/<algorithm>/<hex>`` (complete, verified blobs; an entry's mtime is its last use) and
``ROOT/tmp/`` (downloads in progress, renamed into ``blobs/`` only after their digest checked out).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from arcgap.bundle.parts import UNITS
from arcgap.errors import IntegrityError, LocalIOError, UsageError, option
from arcgap.oci.digest import Digest, Verifier, verified_chunks
from arcgap.util.backgroundsink import BackgroundSink
from arcgap.util.directfile import SequentialWriter

DEFAULT_MAX_BYTES = 20 * 2**30
READ_CHUNK = 512 * 1024
STALE_TEMP_S = 3600.0  # a download in progress writes every few seconds; an hour of silence means it died
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")
_HEX = re.compile(r"^[0-9a-f]{64,128}$")
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})  # a write refused for room: the run ends (LocalIOError)


def default_cache_dir(environ: Mapping[str, str]) -> Path | None:
    """``$XDG_CACHE_HOME/arcgap`` (when set and absolute, per the XDG spec), else ``~/.cache/arcgap``."""
    xdg = environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "arcgap"
    try:
        return Path.home() / ".cache" / "arcgap"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry: no default place
        return None


def parse_cache_size(text: str) -> int:
    """``--cache-max-size``: a number with an explicit unit (``20GiB``, ``500MB``; ``0B`` keeps nothing)."""
    hint = "give a number with a unit: KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB, e.g. 20GiB"
    match = _SIZE.match(text)
    factor = UNITS.get(match.group(2).lower()) if match else None
    if match is None or factor is None:
        raise UsageError(f"{option('cache_max_size')} {text!r} is not a size with a unit", hint=hint)
    return int(Decimal(match.group(1)) * factor)


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    entries: int
    size_bytes: int
    partial_files: int

    def to_dict(self, command: str) -> dict[str, Any]:
        return {"command": command, "path": str(self.path), "entries": self.entries,
                "size_bytes": self.size_bytes, "partial_files": self.partial_files}


@dataclass
class CacheStats:
    """What one export did with the cache."""

    hits: int = 0
    hit_bytes: int = 0
    stored: int = 0
    stored_bytes: int = 0
    discarded: int = 0  # damaged entries removed (and downloaded again)
    evicted: int = 0
    evicted_bytes: int = 0
    problems: list[str] = field(default_factory=list)  # cache write/read trouble: warnings (a full disk: an error)

    def to_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "hit_bytes": self.hit_bytes, "stored": self.stored,
                "stored_bytes": self.stored_bytes, "discarded": self.discarded, "evicted": self.evicted,
                "evicted_bytes": self.evicted_bytes}


class BlobCache:
    """Thread-safe; several processes may share one directory (writes are temp file + rename)."""

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._writable = True

    def __repr__(self) -> str:
        return f"BlobCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    def path_for(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    def _problem(self, text: str) -> None:
        with self._lock:
            if text not in self.stats.problems:
                self.stats.problems.append(text)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    # -- one blob ---------------------------------------------------------------------------------------

    def fetch(self, digest: Digest, size_bytes: int, download: Callable[[], Iterable[bytes]]) -> Iterator[bytes]:
        """The blob's bytes: from the cache when a verified copy is there, else from ``download()`` (which
        verifies itself) while a copy is written alongside."""
        cached = self._open_verified(digest, size_bytes)
        if cached is not None:
            yield from self._replay(cached, digest, size_bytes)
            return
        if not self._writable or size_bytes > self.max_bytes:
            yield from download()
            return
        yield from self._tee(digest, size_bytes, download())

    def _open_verified(self, digest: Digest, size_bytes: int) -> BinaryIO | None:
        """An open cache entry whose size and digest were just checked, or None (a damaged one is removed)."""
        path = self.path_for(digest)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - handed to _replay, which closes it
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            self._problem(f"cannot read the blob cache in {self.root}: {exc.strerror or exc}")
            return None
        try:
            actual = os.fstat(fh.fileno()).st_size
            if actual != size_bytes:
                raise IntegrityError(f"cache entry {path}: {actual} bytes, expected {size_bytes}")
            verifier = Verifier(digest, size_bytes, what=f"cache entry {path}")
            while chunk := fh.read(READ_CHUNK):
                verifier.update(chunk)
            verifier.finish()
            fh.seek(0)
            os.utime(path)  # last use, for least-recently-used eviction
            return fh
        except (IntegrityError, OSError) as exc:
            fh.close()
            with contextlib.suppress(OSError):
                path.unlink()
            self._count(discarded=1)
            self._problem(f"discarded a damaged cache entry and downloaded it again ({exc})")
            return None

    def _replay(self, fh: BinaryIO, digest: Digest, size_bytes: int) -> Iterator[bytes]:
        # Checked again while streaming, the last chunk held back: an entry changed since the check above
        # (another process, a failing disk) never reaches the bundle whole.
        verifier = Verifier(digest, size_bytes, what=f"cache entry {self.path_for(digest)}")
        try:
            yield from verified_chunks(iter(lambda: fh.read(READ_CHUNK), b""), verifier)
        except IntegrityError as exc:
            raise IntegrityError(exc.message + " while it was being read",
                                 hint="run 'arcgap cache clear', then export again") from None
        finally:
            fh.close()
        self._count(hits=1, hit_bytes=size_bytes)

    def _tee(self, digest: Digest, size_bytes: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Pass ``chunks`` on while writing them to a temp file; rename it into place once they are complete
        (``chunks`` verify their own digest before their last chunk, so complete means verified)."""
        tmp_dir = self.root / "tmp"
        out: _CacheCopy | None = None
        tmp_name = ""
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)  # private: images may be too
            tmp_dir.mkdir(exist_ok=True, mode=0o700)
            fd, tmp_name = tempfile.mkstemp(prefix=f"{digest.hex[:16]}.", suffix=".partial", dir=tmp_dir)
            out = _CacheCopy(fd)
        except (OSError, RuntimeError) as exc:  # RuntimeError: no thread to spare; the export goes on without
            if tmp_name and isinstance(exc, OSError) and exc.errno in DISK_FULL:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
            self._give_up(exc)  # the temp file, if made, goes in the finally below
        written = 0
        try:
            for chunk in chunks:
                if out is not None:
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        failed, out = out, None
                        self._abandon(failed, exc)
                written += len(chunk)
                yield chunk
            if out is not None and written == size_bytes:
                try:
                    out.close()
                except OSError as exc:
                    out = None
                    self._give_up(exc)
                    return
                out = None
                final = self.path_for(digest)
                try:
                    final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    os.replace(tmp_name, final)
                    tmp_name = ""
                    self._count(stored=1, stored_bytes=size_bytes)
                except OSError as exc:
                    self._give_up(exc)
        finally:
            if out is not None:
                with contextlib.suppress(OSError):
                    out.abort()
            if tmp_name:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    def _abandon(self, out: _CacheCopy, exc: OSError) -> None:
        with contextlib.suppress(OSError):
            out.abort()
        self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        """A cache that cannot be written is skipped for the rest of this run; the export goes on. A full disk
        ends the run: the cache would have held the blobs a rerun needs, and its disk is often the bundle's."""
        self._writable = False
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise self.disk_full() from None
        reason = getattr(exc, "strerror", None) or exc
        self._problem(f"cannot write the blob cache in {self.root}: {reason}; continuing without it")

    def disk_full(self) -> LocalIOError:
        """The error for a full disk under the cache, naming the file system (its mount point)."""
        mount = mount_point(self.root)
        where = f" (the file system mounted at {mount})" if mount is not None else ""
        return LocalIOError(
            f"disk full while writing the blob cache in {self.root}{where}; the export stopped, its partial "
            "files were removed",
            hint=f"free space there, or give the cache another place with {option('cache_dir')} (or run with "
                 f"{option('no_cache')}), then run the same command again: blobs already in the cache are reused",
        )

    # -- the whole cache --------------------------------------------------------------------------------

    def _entries(self) -> list[tuple[Path, os.stat_result]]:
        found: list[tuple[Path, os.stat_result]] = []
        blobs = self.root / "blobs"
        with contextlib.suppress(FileNotFoundError):
            for algo in blobs.iterdir():
                for entry in algo.iterdir() if algo.is_dir() else ():
                    with contextlib.suppress(FileNotFoundError):
                        if _HEX.match(entry.name):
                            found.append((entry, entry.stat()))
        return found

    def _temps(self) -> list[Path]:
        try:
            return [p for p in (self.root / "tmp").iterdir() if p.name.endswith(".partial")]
        except FileNotFoundError:
            return []

    def info(self) -> CacheInfo:
        try:
            entries = self._entries()
            temps = self._temps()
        except OSError as exc:
            raise LocalIOError(f"cannot read the blob cache {self.root}: {exc.strerror or exc}") from None
        return CacheInfo(self.root, len(entries), sum(st.st_size for _, st in entries), len(temps))

    def prune(self) -> None:
        """Evict least-recently-used entries down to ``max_bytes`` and drop abandoned temp files. Never raises:
        a cache that cannot be tidied is only a warning."""
        try:
            now = time.time()
            for tmp in self._temps():
                with contextlib.suppress(FileNotFoundError):
                    if now - tmp.stat().st_mtime > STALE_TEMP_S:
                        tmp.unlink()
            entries = sorted(self._entries(), key=lambda e: e[1].st_mtime)
            total = sum(st.st_size for _, st in entries)
            for path, st in entries:
                if total <= self.max_bytes:
                    break
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                total -= st.st_size
                self._count(evicted=1, evicted_bytes=st.st_size)
        except OSError as exc:
            self._problem(f"cannot tidy the blob cache in {self.root}: {exc.strerror or exc}")

    def clear(self) -> CacheInfo:
        """Remove every entry and temp file; returns what was there."""
        before = self.info()
        try:
            for path, _ in self._entries():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            for tmp in self._temps():
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        except OSError as exc:
            raise LocalIOError(f"cannot clear the blob cache {self.root}: {exc.strerror or exc}",
                               hint="check the permissions of the cache directory") from None
        return before


def mount_point(path: Path) -> Path | None:
    """The mount point of the file system holding ``path`` (or its nearest existing parent)."""
    try:
        here = path.absolute()
        while not here.exists() and here != here.parent:
            here = here.parent
        while not os.path.ismount(here) and here != here.parent:
            here = here.parent
    except OSError:
        return None
    return here


def cache_root(
    cache_dir: Path | None, environ: Mapping[str, str],
    *, default: Callable[[Mapping[str, str]], Path | None] = default_cache_dir,
) -> Path:
    """``--cache-dir`` when given, else the ``default`` place; a usage error when there is none."""
    root = cache_dir if cache_dir is not None else default(environ)
    if root is None:
        raise UsageError("no place for the blob cache: HOME is not set",
                         hint=f"pass {option('cache_dir')} DIR or {option('no_cache')}")
    return root


class _CacheCopy:
    """The copy of one blob being downloaded: written past the page cache (nothing reads it in this run) on a
    thread of its own, so the download never waits for the disk."""

    def __init__(self, fd: int) -> None:
        try:
            self._file = SequentialWriter(fd)
        except BaseException:
            os.close(fd)
            raise
        try:
            self._thread = BackgroundSink(self._file, depth=8)
        except BaseException:
            self._file.abort()
            raise

    def write(self, data: bytes) -> None:
        self._thread.write(data)

    def close(self) -> None:
        try:
            self._thread.drain()
        except BaseException:
            self.abort()
            raise
        self._thread.stop()
        self._file.close()

    def abort(self) -> None:
        self._thread.stop()
        self._file.abort()
