"""Deterministic tar headers for writing, and a strict streaming tar parser for untrusted input.

Writing uses PAX headers from the standard library (mtime 0, uid/gid 0, mode 0644); reading accepts only
regular files and PAX extended headers, checks every header checksum, and never touches the filesystem.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from arcgap.bundle.limits import MAX_MEMBER_NAME, MAX_PAX_BYTES, MAX_PAX_HEADERS, MAX_PAX_RECORDS
from arcgap.errors import BundleFormatError, IntegrityError

BLOCK = 512


def member_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


END_OF_ARCHIVE = b"\0" * (2 * BLOCK)


@dataclass(frozen=True)
class MemberHeader:
    name: str
    size: int


def read_exact(stream: BinaryIO, n: int) -> bytes:
    """Read exactly ``n`` bytes or fewer only at end of stream."""
    parts: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def _number(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        value = int.from_bytes(field, "big") & ~(0x80 << (8 * (len(field) - 1)))
        return value
    text = field.rstrip(b"\0 ").lstrip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise BundleFormatError(f"bundle tar header: bad {what} field") from None


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = _number(block[148:156], "checksum")
    except BundleFormatError:
        return False
    computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return stored == computed


def _parse_pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise BundleFormatError("bundle tar: malformed PAX header")
        try:
            if space - pos > 8:  # a record longer than the header itself
                raise ValueError
            length = int(data[pos:space])
        except ValueError:
            raise BundleFormatError("bundle tar: malformed PAX header") from None
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise BundleFormatError("bundle tar: malformed PAX record")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        if len(records) > MAX_PAX_RECORDS:
            raise BundleFormatError(f"bundle tar: more than {MAX_PAX_RECORDS} PAX records for one member")
        pos += length
    return records


class TarReader:
    """Iterate members of a tar stream: ``next_member()`` then read exactly ``size`` bytes with ``read``."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._remaining = 0  # data bytes left in the current member
        self._pad = 0
        self.offset = 0

    def _read(self, n: int, what: str) -> bytes:
        data = read_exact(self._stream, n)
        self.offset += len(data)
        if len(data) != n:
            raise IntegrityError(f"bundle truncated while reading {what}")
        return data

    def next_member(self) -> MemberHeader | None:
        """The next regular file's header, or None at the end-of-archive marker."""
        if self._remaining:
            raise RuntimeError("previous member not fully read")
        if self._pad:
            self._read(self._pad, "padding")
            self._pad = 0
        pax: dict[str, str] = {}
        headers = 0
        while True:
            block = self._read(BLOCK, "a tar header")
            if block == b"\0" * BLOCK:
                return None
            if not _checksum_ok(block):
                raise IntegrityError("bundle tar header checksum mismatch: the bundle is damaged")
            typeflag = block[156:157]
            size = _number(block[124:136], "size")
            if typeflag == b"x":
                headers += 1
                if headers > MAX_PAX_HEADERS:
                    raise BundleFormatError(f"bundle tar: more than {MAX_PAX_HEADERS} PAX headers before one member")
                if size > MAX_PAX_BYTES:
                    raise BundleFormatError(f"bundle tar: PAX header of more than {MAX_PAX_BYTES} bytes")
                pax.update(_parse_pax(self._read(size, "a PAX header")))
                if len(pax) > MAX_PAX_RECORDS:
                    raise BundleFormatError(f"bundle tar: more than {MAX_PAX_RECORDS} PAX records for one member")
                self._read(-size % BLOCK, "padding")
                continue
            name = block[0:100].split(b"\0", 1)[0]
            prefix = block[345:500].split(b"\0", 1)[0] if block[257:263] == b"ustar\x00" else b""
            full = (prefix + b"/" + name if prefix else name).decode("utf-8", "replace")
            full = pax.get("path", full)
            if len(full) > MAX_MEMBER_NAME:
                raise BundleFormatError(f"bundle tar: a member name of more than {MAX_MEMBER_NAME} characters")
            if "size" in pax:
                text = pax["size"]
                if not (text.isascii() and text.isdigit() and len(text) <= 20):
                    raise BundleFormatError("bundle tar: bad PAX size")
                size = int(text)
            if typeflag not in (b"0", b"\0"):
                kind = {b"1": "hard link", b"2": "symbolic link", b"3": "character device", b"4": "block device",
                        b"5": "directory", b"6": "FIFO", b"g": "global header"}.get(typeflag, "special file")
                raise BundleFormatError(f"bundle member {full!r} is a {kind}; only regular files are allowed")
            if size < 0:
                raise BundleFormatError(f"bundle member {full!r} has a negative size")
            self._remaining = size
            self._pad = -size % BLOCK
            return MemberHeader(full, size)

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of the current member (b"" at its end); raises on truncation."""
        n = min(n, self._remaining)
        if n <= 0:
            return b""
        data = read_exact(self._stream, n)
        self.offset += len(data)
        if not data:
            raise IntegrityError("bundle truncated in the middle of a member")
        self._remaining -= len(data)
        return data

    def iter_member(self, chunk_bytes: int) -> Iterator[bytes]:
        while self._remaining:
            data = self.read(chunk_bytes)
            yield data

    def read_trailing(self, n: int) -> bytes:
        """Raw bytes after the end-of-archive block (normally zero padding or nothing)."""
        data = self._stream.read(n)
        self.offset += len(data)
        return data
