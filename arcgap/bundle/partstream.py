"""Find a bundle's files from any one of them, and read them in order as one stream without joining them on disk.

``locate`` accepts ``NAME.parts.yaml``, any part ``NAME.003`` (then the sidecar next to it, else the sibling
parts) or an unsplit ``NAME``. ``check_present`` compares every file's size with the sidecar before anything
is read; ``PartStream`` checks each part's size and sha256 when its last byte has been read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from arcgap.bundle.limits import MAX_PARTS
from arcgap.bundle.parts import (
    MAX_SIDECAR_BYTES,
    PART_SUFFIX,
    SIDECAR_SUFFIX,
    PartsIndex,
    part_name,
    sidecar_name,
    split_part_name,
)
from arcgap.errors import BundleFormatError, IntegrityError, LocalIOError
from arcgap.util.regularfile import open_regular

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DRAIN_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class PartFile:
    path: Path
    number: int
    size: int | None = None  # from the sidecar; None when there is none
    sha256: str | None = None


@dataclass(frozen=True)
class PartSet:
    """A bundle's files in stream order; ``index`` is the sidecar when there is one."""

    files: tuple[PartFile, ...]
    base: Path  # the bundle's name: dir/NAME for dir/NAME.001 …
    split: bool
    index: PartsIndex | None = None
    sidecar: Path | None = None
    count_known: bool = True  # False: sibling parts without a sidecar, so a missing last part goes unseen

    @property
    def origin(self) -> str:
        """How messages name the bundle: the file, or ``dir/NAME (5 parts)``."""
        return f"{self.base} ({len(self.files)} parts)" if self.split else str(self.files[0].path)

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``: the files read and the sidecar their sizes and sha256 come from."""
        return {
            "sidecar": str(self.sidecar) if self.sidecar is not None else None,
            "parts": [{"file": str(f.path), "size": f.size, "sha256": f.sha256} for f in self.files],
        }

    def label(self, part: PartFile) -> str:
        if not self.split:
            return str(part.path)
        last = self.files[-1].number
        return f"part {part.number} {'of' if self.count_known else 'of at least'} {last}, {part.path}"

    def hint(self, part: PartFile, others: int = 0) -> str:
        also = f"{others} more {'part is' if others == 1 else 'parts are'} missing or damaged too; " if others else ""
        if self.sidecar is None:
            name = sidecar_name(self.base.name)
            return f"{also}copy {name} along with the parts: with it, arcgap checks each part's size and sha256"
        check = f"check the copy with 'arcgap verify {self.sidecar}'"
        if part.size is None or part.sha256 is None:
            return also + check
        return f"{also}the original is {part.size} bytes with sha256 {part.sha256}; {check}"


# -- finding the files -----------------------------------------------------------------------------------


def locate(path: Path) -> PartSet:
    """The files of the bundle ``path`` names (see the module docstring); raises when it names nothing."""
    name = path.name
    if name.endswith(SIDECAR_SUFFIX) and name != SIDECAR_SUFFIX:
        return _from_sidecar(path, given=None)
    parsed = split_part_name(name)
    if parsed is not None:
        sidecar = path.with_name(sidecar_name(parsed[0]))
        if sidecar.is_file():
            return _from_sidecar(sidecar, given=path)
        if not (parsed[1] != 1 and path.is_file() and _starts_like_a_bundle(path)):
            return _from_siblings(path.with_name(parsed[0]), given=path)
        # else: an unsplit bundle whose name happens to end in digits ("release.2024")
    sidecar = path.with_name(sidecar_name(name))
    if sidecar.is_file():
        return _from_sidecar(sidecar, given=path)
    if path.is_dir():
        raise LocalIOError(f"{path} is a directory", hint="give the bundle file, one of its parts or its .parts.yaml")
    if path.exists():
        return PartSet((PartFile(path, 1),), base=path, split=False)
    return _from_siblings(path, given=path)  # NAME for NAME.001, NAME.002, …


def _from_siblings(base: Path, *, given: Path) -> PartSet:
    siblings = _siblings(base)
    if not siblings:
        raise LocalIOError(f"{given}: no such file", hint="check the bundle path")
    return PartSet(tuple(PartFile(p, n) for n, p in siblings), base=base, split=True, count_known=False)


def _starts_like_a_bundle(path: Path) -> bool:
    try:
        with open_regular(path) as fh:
            return fh.read(4) == ZSTD_MAGIC
    except OSError:
        return False


def _siblings(base: Path) -> list[tuple[int, Path]]:
    pattern = re.compile(re.escape(base.name) + PART_SUFFIX.pattern)
    if not base.parent.is_dir():
        return []
    found = []
    for p in base.parent.iterdir():
        match = pattern.fullmatch(p.name)
        if match:
            found.append((int(match.group(1)), p))
            if len(found) > MAX_PARTS:
                raise BundleFormatError(f"{base}: more than {MAX_PARTS} parts next to it",
                                        hint="give the bundle's NAME.parts.yaml, or move the parts into a folder "
                                             "of their own")
    return sorted(found)


def _from_sidecar(sidecar: Path, *, given: Path | None) -> PartSet:
    try:
        with open_regular(sidecar) as fh:  # a FIFO would block forever
            data = fh.read(MAX_SIDECAR_BYTES + 1)
    except FileNotFoundError:
        raise LocalIOError(f"{sidecar}: no such file", hint="check the bundle path") from None
    except OSError as exc:
        raise LocalIOError(f"cannot read {sidecar}: {exc.strerror}") from None
    if len(data) > MAX_SIDECAR_BYTES:
        raise BundleFormatError(f"{sidecar}: implausibly large for a parts file")
    index = PartsIndex.from_yaml(data, origin=str(sidecar))
    files = tuple(PartFile(sidecar.with_name(p.name), n, p.size, p.sha256) for n, p in enumerate(index.parts, 1))
    if given is not None:
        listed = {f.path.name for f in files}
        if given.name not in listed and not (given.name == index.bundle_name and not given.exists()):
            raise BundleFormatError(
                f"{sidecar} does not list {given.name}",
                hint=f"it describes {index.bundle_name}: give that bundle's parts, or move the stale {sidecar.name}",
            )
    split = index.split_bytes is not None
    return PartSet(files, base=sidecar.with_name(index.bundle_name), split=split, index=index, sidecar=sidecar)


# -- checking before reading ------------------------------------------------------------------------------


def _problem(part: PartFile) -> str | None:
    try:
        st = part.path.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not part.path.is_file():
        return "not a regular file"
    if part.size is not None and st.st_size < part.size:
        return f"truncated: {st.st_size} of {part.size} bytes"
    if part.size is not None and st.st_size > part.size:
        return f"longer than the {part.size} bytes listed ({st.st_size} bytes)"
    return None


def check_present(parts: PartSet) -> None:
    """Every part is there (and, with a sidecar, has its size): else name the first one that is not."""
    problems = [(part, p) for part in parts.files if (p := _problem(part)) is not None]
    if not problems and not parts.count_known:
        numbers = [f.number for f in parts.files]
        gap = next((n for n in range(1, numbers[-1] + 1) if n not in numbers), None)
        if gap is not None:
            missing = PartFile(parts.base.with_name(part_name(parts.base.name, gap)), gap)
            count = numbers[-1] - len(numbers)
            raise IntegrityError(f"{parts.label(missing)}: missing — copy it again",
                                 hint=parts.hint(missing, count - 1))
    if problems:
        part, what = problems[0]
        raise IntegrityError(f"{parts.label(part)}: {what} — copy it again", hint=parts.hint(part, len(problems) - 1))


# -- reading ----------------------------------------------------------------------------------------------


def _open(path: Path) -> BinaryIO:
    return open(path, "rb")  # noqa: SIM115 - closed by PartStream


class PartStream:
    """The parts read in order as one binary stream; each is checked when its last byte has been read.

    A part is checked as soon as the sidecar's size has been read (before any byte of the next part is handed
    on), and again at its end of file for extra bytes. ``failure`` keeps the part error once raised, since the
    decompressor and tar reader above may re-word the exceptions passing through them.

    ``hash_parts=False`` checks sizes only while reading, for a reader that verifies every byte it uses in
    another way (import: each blob's digest, and zstd's own checksum over the whole tar). That saves one
    sha256 pass over the whole bundle; damage is still named by part, by :meth:`blame` after the error.
    """

    def __init__(self, parts: PartSet, *, opener: Callable[[Path], BinaryIO] = _open, hash_parts: bool = True) -> None:
        self.parts = parts
        self._opener = opener
        self._hash_parts = hash_parts
        self._unhashed: list[PartFile] = []  # parts read to the end without a sha256 check, for blame()
        self._i = 0
        self._fh: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._seen = 0
        self._checked = False
        self.failure: IntegrityError | None = None
        self.parts_checked = 0
        self._closed = False

    @property
    def _part(self) -> PartFile:
        return self.parts.files[self._i]

    @property
    def complete(self) -> bool:
        return self._i >= len(self.parts.files)

    def read(self, n: int = -1) -> bytes:
        if self._closed:  # a read-ahead thread may outlive the bundle: never reopen a part for it
            raise ValueError("read from a closed bundle stream")
        if n < 0:
            return b"".join(iter(lambda: self.read(_DRAIN_CHUNK), b""))
        while not self.complete:
            if self._fh is None:
                self._open()
            assert self._fh is not None
            data = self._read_part(n)
            if data:
                self._take(data)
                return data
            self._end_of_part()
        return b""

    def _open(self) -> None:
        part = self._part
        try:
            self._fh = self._opener(part.path)
        except FileNotFoundError:
            self._fail("missing")
        except OSError as exc:
            raise LocalIOError(f"cannot read {self.parts.label(part)}: {exc.strerror}",
                               hint="check the medium, or copy the part again") from None
        self._hash = hashlib.sha256()
        self._seen = 0
        self._checked = False
        if part.size == 0:  # no byte will arrive to trigger the check
            self._check()

    def _read_part(self, n: int) -> bytes:
        assert self._fh is not None
        try:
            return self._fh.read(n)
        except OSError as exc:
            raise LocalIOError(f"cannot read {self.parts.label(self._part)}: {exc.strerror}",
                               hint="check the medium, or copy the part again") from None

    def _take(self, data: bytes) -> None:
        part = self._part
        if self._hash_parts:
            self._hash.update(data)
        self._seen += len(data)
        if part.size is None:
            return
        if self._seen > part.size:
            self._fail(f"longer than the {part.size} bytes listed")
        if self._seen == part.size:
            self._check()

    def _check(self) -> None:
        if not self._hash_parts:
            self._unhashed.append(self._part)
        elif self._part.sha256 is not None and self._hash.hexdigest() != self._part.sha256:
            self._fail("sha256 mismatch")
        self._checked = True

    def _end_of_part(self) -> None:
        part = self._part
        if part.size is not None and not self._checked:
            self._fail(f"truncated: {self._seen} of {part.size} bytes")
        self._close_part()
        self.parts_checked += part.size is not None
        self._i += 1

    def _fail(self, what: str, part: PartFile | None = None) -> None:
        part = part or self._part
        self.failure = IntegrityError(f"{self.parts.label(part)}: {what} — copy it again",
                                      hint=self.parts.hint(part))
        raise self.failure

    def blame(self) -> None:
        """After a bundle error: if a part read so far does not match the sidecar, raise that instead.

        Damage shows up in the decompressed data soon after the damaged bytes were read: in the part being
        read, or (a blob spans parts, the decompressor reads ahead) in one read before it that was not hashed
        while streaming. Those are hashed on their own, newest first (a fresh handle: a read-ahead thread may
        still hold this stream), which tells a damaged copy, named with "copy it again", from a bundle that
        was already wrong when it was written.
        """
        if self.failure is not None:
            raise self.failure
        suspects = list(reversed(self._unhashed))
        if not self.complete and not self._checked:
            suspects.insert(0, self._part)
        for part in suspects:
            self._check_file(part)

    def _check_file(self, part: PartFile) -> None:
        if part.size is None or part.sha256 is None:
            return
        digest, size = hashlib.sha256(), 0
        try:
            with self._opener(part.path) as fh:
                while data := fh.read(_DRAIN_CHUNK):
                    digest.update(data)
                    size += len(data)
        except OSError:
            return  # cannot tell: the original error stands
        if size < part.size:
            self._fail(f"truncated: {size} of {part.size} bytes", part)
        if size > part.size:
            self._fail(f"longer than the {part.size} bytes listed", part)
        if digest.hexdigest() != part.sha256:
            self._fail("sha256 mismatch", part)

    def _close_part(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def close(self) -> None:
        """Close the stream for good: a later read raises instead of opening a part again."""
        self._closed = True
        self._close_part()
