"""arcgap.bundle.tarstream: deterministic headers for writing, strict parsing of untrusted tar streams."""

from __future__ import annotations

import io
import tarfile

import pytest

from arcgap.bundle.tarstream import (
    BLOCK,
    END_OF_ARCHIVE,
    MemberHeader,
    TarReader,
    member_header,
    padding,
    read_exact,
)
from arcgap.errors import BundleFormatError, ExitCode, IntegrityError


def _archive(members: list[tuple[str, bytes]]) -> bytes:
    out = b""
    for name, data in members:
        out += member_header(name, len(data)) + data + padding(len(data))
    return out + END_OF_ARCHIVE


def _read_all(raw: bytes) -> list[tuple[str, bytes]]:
    reader = TarReader(io.BytesIO(raw))
    got: list[tuple[str, bytes]] = []
    while (member := reader.next_member()) is not None:
        data = b"".join(reader.iter_member(7))
        assert len(data) == member.size
        got.append((member.name, data))
    return got


MEMBERS = [
    ("arcgap.yaml", b"format: arcgap-bundle\n"),
    ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}\n'),
    ("empty", b""),
    ("blobs/sha256/" + "a" * 64, bytes(range(256)) * 4),  # exactly 2 blocks: no padding
    ("one-block-plus-one", b"x" * (BLOCK + 1)),
    ("n" * 150, b"long name"),  # more than 100 characters: a PAX path record
    ("ünïcode/名前", b"utf-8 name"),
]


@pytest.mark.parametrize(("name", "size"), [("a", 0), ("arcgap.yaml", 1234), ("blobs/sha256/" + "f" * 64, 512)])
def test_member_header_is_deterministic(name: str, size: int) -> None:
    header = member_header(name, size)
    assert header == member_header(name, size)
    assert len(header) % BLOCK == 0
    with tarfile.open(fileobj=io.BytesIO(header + b"\0" * size + padding(size) + END_OF_ARCHIVE)) as tf:
        (info,) = tf.getmembers()
    assert (info.name, info.size, info.mtime, info.mode, info.uid, info.gid) == (name, size, 0, 0o644, 0, 0)
    assert (info.uname, info.gname, info.type) == ("", "", tarfile.REGTYPE)


def test_member_header_readable_by_tarfile() -> None:
    raw = _archive(MEMBERS)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        got = []
        for info in tf.getmembers():
            fh = tf.extractfile(info)
            assert fh is not None
            got.append((info.name, fh.read()))
            assert info.isreg() and info.mtime == 0 and info.mode == 0o644
    assert got == MEMBERS


@pytest.mark.parametrize(("size", "pad"), [(0, 0), (1, 511), (511, 1), (512, 0), (513, 511), (1024, 0)])
def test_padding(size: int, pad: int) -> None:
    assert padding(size) == b"\0" * pad


def test_tar_reader_reads_back_members() -> None:
    assert _read_all(_archive(MEMBERS)) == MEMBERS


def test_tar_reader_reads_tarfile_output() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in MEMBERS:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert _read_all(buf.getvalue()) == MEMBERS


def test_tar_reader_offset_and_end() -> None:
    raw = _archive([("a", b"abc")])
    reader = TarReader(io.BytesIO(raw))
    assert reader.next_member() == MemberHeader("a", 3)
    assert reader.read(100) == b"abc"
    assert reader.read(100) == b""
    assert reader.next_member() is None
    assert reader.offset == 3 * BLOCK
    assert reader.read_trailing(10_000) == b"\0" * BLOCK


def test_next_member_before_data_consumed_is_a_bug() -> None:
    reader = TarReader(io.BytesIO(_archive([("a", b"abc")])))
    reader.next_member()
    with pytest.raises(RuntimeError, match="previous member not fully read"):
        reader.next_member()


@pytest.mark.parametrize("size", [8 * 2**30, 9 * 2**30, 2**40 + 5])
def test_large_sizes_use_a_pax_size_record(size: int) -> None:
    header = member_header("blobs/sha256/" + "b" * 64, size)
    assert b" size=%d\n" % size in header
    assert header[156:157] == b"x"  # a PAX extended header comes first
    reader = TarReader(io.BytesIO(header))
    assert reader.next_member() == MemberHeader("blobs/sha256/" + "b" * 64, size)
    assert reader.offset == len(header)


def test_size_just_below_8_gib_needs_no_pax() -> None:
    size = 8 * 2**30 - 1
    header = member_header("a", size)
    assert len(header) == BLOCK
    assert TarReader(io.BytesIO(header)).next_member() == MemberHeader("a", size)


def _tarfile_bytes(*infos: tarfile.TarInfo, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info in infos:
            tf.addfile(info, io.BytesIO(b"z" * info.size) if info.isreg() else None)
    return buf.getvalue()


def _info(name: str, kind: bytes, *, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("info", "kind"),
    [
        pytest.param(_info("evil", tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link", id="symlink"),
        pytest.param(_info("hard", tarfile.LNKTYPE, linkname="arcgap.yaml"), "hard link", id="hardlink"),
        pytest.param(_info("blobs/", tarfile.DIRTYPE), "directory", id="directory"),
        pytest.param(_info("tty", tarfile.CHRTYPE), "character device", id="char-device"),
        pytest.param(_info("sda", tarfile.BLKTYPE), "block device", id="block-device"),
        pytest.param(_info("pipe", tarfile.FIFOTYPE), "FIFO", id="fifo"),
        pytest.param(_info("cont", tarfile.CONTTYPE), "special file", id="contiguous"),
    ],
)
def test_hostile_member_kinds_rejected(info: tarfile.TarInfo, kind: str) -> None:
    raw = _tarfile_bytes(info)
    reader = TarReader(io.BytesIO(raw))
    with pytest.raises(BundleFormatError) as exc:
        reader.next_member()
    assert exc.value.message == f"bundle member {info.name!r} is a {kind}; only regular files are allowed"
    assert exc.value.exit_code == ExitCode.BUNDLE_FORMAT


def test_hostile_member_after_a_good_one() -> None:
    good = tarfile.TarInfo("arcgap.yaml")
    good.size = 3
    raw = _tarfile_bytes(good, _info("../../etc/cron.d/x", tarfile.SYMTYPE, linkname="/tmp/x"))
    reader = TarReader(io.BytesIO(raw))
    assert reader.next_member() == MemberHeader("arcgap.yaml", 3)
    assert reader.read(3) == b"zzz"
    with pytest.raises(BundleFormatError, match=r"'\.\./\.\./etc/cron\.d/x' is a symbolic link"):
        reader.next_member()


def test_pax_global_header_rejected() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "hi"}) as tf:
        info = tarfile.TarInfo("a")
        tf.addfile(info, io.BytesIO(b""))
    with pytest.raises(BundleFormatError, match=r"is a global header; only regular files are allowed$"):
        TarReader(io.BytesIO(buf.getvalue())).next_member()


def test_gnu_longname_rejected() -> None:
    info = tarfile.TarInfo("g" * 150)
    info.size = 1
    raw = _tarfile_bytes(info, fmt=tarfile.GNU_FORMAT)
    assert raw[156:157] == tarfile.GNUTYPE_LONGNAME
    with pytest.raises(BundleFormatError) as exc:
        TarReader(io.BytesIO(raw)).next_member()
    assert exc.value.message == "bundle member '././@LongLink' is a special file; only regular files are allowed"


def test_pax_path_override_honoured() -> None:
    info = tarfile.TarInfo("short-ustar-name")
    info.size = 4
    info.pax_headers = {"path": "blobs/sha256/" + "c" * 64}
    raw = _tarfile_bytes(info)
    reader = TarReader(io.BytesIO(raw))
    assert reader.next_member() == MemberHeader("blobs/sha256/" + "c" * 64, 4)
    assert reader.read(10) == b"zzzz"
    assert reader.next_member() is None


def test_pax_size_override_honoured() -> None:
    info = tarfile.TarInfo("a")
    info.size = 3
    info.pax_headers = {"size": "3"}
    raw = _tarfile_bytes(info)
    assert TarReader(io.BytesIO(raw)).next_member() == MemberHeader("a", 3)


def test_pax_applies_to_the_next_member_only() -> None:
    first = tarfile.TarInfo("x")
    first.size = 1
    first.pax_headers = {"path": "renamed"}
    second = tarfile.TarInfo("y")
    second.size = 1
    reader = TarReader(io.BytesIO(_tarfile_bytes(first, second)))
    names = []
    while (m := reader.next_member()) is not None:
        names.append(m.name)
        reader.read(1)
    assert names == ["renamed", "y"]


def test_ustar_prefix_joined() -> None:
    name = "d" * 120 + "/" + "f" * 20
    info = tarfile.TarInfo(name)
    info.size = 2
    raw = _tarfile_bytes(info, fmt=tarfile.USTAR_FORMAT)
    assert raw[345:350] == b"ddddd"  # the directory part went into the ustar prefix field
    assert TarReader(io.BytesIO(raw)).next_member() == MemberHeader(name, 2)


def test_ustar_prefix_is_part_of_the_name() -> None:
    # A hostile ustar header: name "arcgap.yaml" with prefix "../evil". tar(1) and tarfile see
    # "../evil/arcgap.yaml"; the reader must not see plain "arcgap.yaml".
    block = bytearray(member_header("arcgap.yaml", 0))
    block[345 : 345 + len(b"../evil")] = b"../evil"
    raw = _with_checksum(block) + END_OF_ARCHIVE
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        assert tf.getnames() == ["../evil/arcgap.yaml"]
    assert TarReader(io.BytesIO(raw)).next_member() == MemberHeader("../evil/arcgap.yaml", 0)


def _with_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


@pytest.mark.parametrize(
    ("offset", "what"),
    [
        pytest.param(0, "name", id="name"),
        pytest.param(124, "size", id="size"),
        pytest.param(150, "checksum", id="checksum-field"),
        pytest.param(156, "typeflag", id="typeflag"),
        pytest.param(300, "uname", id="uname"),
        pytest.param(511, "last byte", id="last-byte"),
    ],
)
def test_corrupt_header_checksum(offset: int, what: str) -> None:
    raw = bytearray(_archive([("arcgap.yaml", b"abc")]))
    raw[offset] ^= 0x01
    with pytest.raises(IntegrityError) as exc:
        TarReader(io.BytesIO(bytes(raw))).next_member()
    assert exc.value.message == "bundle tar header checksum mismatch: the bundle is damaged", what


def test_corrupt_checksum_field_non_octal_is_integrity_error() -> None:
    # One flipped bit turns the checksum digit '0' into '8'; that is damage like any other flip in the
    # header, so it must be IntegrityError ("damaged"), not BundleFormatError ("bad checksum field").
    raw = bytearray(_archive([("arcgap.yaml", b"abc")]))
    assert raw[148:149] == b"0"
    raw[148] ^= 0x08
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        TarReader(io.BytesIO(bytes(raw))).next_member()


def test_bad_octal_size_with_valid_checksum() -> None:
    block = bytearray(member_header("a", 1))
    block[124:136] = b"0000000009x\0"
    with pytest.raises(BundleFormatError, match="^bundle tar header: bad size field$"):
        TarReader(io.BytesIO(_with_checksum(block))).next_member()


def test_base256_size() -> None:
    block = bytearray(member_header("a", 0))
    block[124:136] = b"\x80" + (10 * 2**30).to_bytes(11, "big")
    reader = TarReader(io.BytesIO(_with_checksum(block)))
    assert reader.next_member() == MemberHeader("a", 10 * 2**30)


@pytest.mark.parametrize(
    ("pax", "message"),
    [
        pytest.param(b"garbage", "bundle tar: malformed PAX header", id="no-space"),
        pytest.param(b"xx path=a\n", "bundle tar: malformed PAX header", id="bad-length"),
        pytest.param(b"5 path=a\n", "bundle tar: malformed PAX record", id="length-too-short"),
        pytest.param(b"8 patha\nX", "bundle tar: malformed PAX record", id="no-equals"),
        pytest.param(b"0 x=y\n", "bundle tar: malformed PAX record", id="zero-length"),
        pytest.param(b"12 size=abc\n", "bundle tar: bad PAX size", id="bad-size"),
        pytest.param(b"11 size=-5\n", "bundle tar: bad PAX size", id="negative-size"),
    ],
)
def test_malformed_pax(pax: bytes, message: str) -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = len(pax)
    header = info.tobuf(tarfile.USTAR_FORMAT)
    raw = header + pax + padding(len(pax)) + member_header("a", 0) + END_OF_ARCHIVE
    with pytest.raises(BundleFormatError) as exc:
        TarReader(io.BytesIO(raw)).next_member()
    assert exc.value.message == message


def test_oversized_pax_rejected() -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 64 * 1024 + 1
    with pytest.raises(BundleFormatError, match="^bundle tar: PAX header of more than 65536 bytes$"):
        TarReader(io.BytesIO(info.tobuf(tarfile.USTAR_FORMAT))).next_member()


GOOD = _archive([("arcgap.yaml", b"x" * 700), ("b", b"y" * 10)])


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        pytest.param(0, "bundle truncated while reading a tar header", id="empty"),
        pytest.param(100, "bundle truncated while reading a tar header", id="in-first-header"),
        pytest.param(BLOCK + 1024 + 10, "bundle truncated while reading a tar header", id="in-second-header"),
        pytest.param(len(GOOD) - BLOCK - 1, "bundle truncated while reading a tar header", id="in-end-marker"),
        pytest.param(len(GOOD) - 2 * BLOCK, "bundle truncated while reading a tar header", id="no-end-marker"),
        pytest.param(BLOCK + 700 + 100, "bundle truncated while reading padding", id="in-padding"),
    ],
)
def test_truncated_header(cut: int, message: str) -> None:
    reader = TarReader(io.BytesIO(GOOD[:cut]))
    with pytest.raises(IntegrityError) as exc:
        while reader.next_member() is not None:
            b"".join(reader.iter_member(4096))
    assert exc.value.message == message


@pytest.mark.parametrize("cut", [BLOCK, BLOCK + 1, BLOCK + 699])
def test_truncated_data(cut: int) -> None:
    reader = TarReader(io.BytesIO(GOOD[:cut]))
    assert reader.next_member() == MemberHeader("arcgap.yaml", 700)
    got = b""
    with pytest.raises(IntegrityError) as exc:
        for chunk in reader.iter_member(4096):
            got += chunk
    assert exc.value.message == "bundle truncated in the middle of a member"
    assert got == b"x" * (cut - BLOCK)


class _Trickle(io.RawIOBase):
    """A stream that returns at most 3 bytes per read, as a pipe might."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        chunk, self._data = self._data[: min(n, 3)], self._data[min(n, 3) :]
        return chunk


def test_short_reads_are_assembled() -> None:
    assert read_exact(_Trickle(b"abcdefgh"), 7) == b"abcdefg"  # type: ignore[arg-type]
    assert read_exact(_Trickle(b"ab"), 7) == b"ab"  # type: ignore[arg-type]
    reader = TarReader(_Trickle(_archive(MEMBERS)))  # type: ignore[arg-type]
    got = []
    while (m := reader.next_member()) is not None:
        got.append((m.name, b"".join(reader.iter_member(1000))))
    assert got == MEMBERS
