"""arcgap.bundle.writer + reader: deterministic bundles round-trip; damaged or hostile ones are refused."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from arcgap.bundle import tarstream
from arcgap.bundle.format import (
    INDEX_NAME,
    LAYOUT_NAME,
    TOC_NAME,
    BlobEntry,
    ImageEntry,
    PlatformEntry,
    TableOfContents,
)
from arcgap.bundle.reader import BundleReader, open_bundle
from arcgap.bundle.writer import BundleWriter
from arcgap.cli.hints import words
from arcgap.errors import BundleFormatError, ExitCode, IntegrityError, LocalIOError
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import OCI_MANIFEST

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ORIGIN = "b.tar.zst"


def _noise(seed: bytes, size: int) -> bytes:
    """Deterministic incompressible bytes."""
    return hashlib.shake_256(seed).digest(size)


def _image_manifest(config: bytes, layers: list[bytes]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": str(Digest.of(config)), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": str(Digest.of(x)), "size": len(x)} for x in layers],
    }
    return json.dumps(doc, indent=2).encode()


@dataclass(frozen=True)
class Content:
    manifest: TableOfContents
    data: dict[Digest, bytes]

    def members(self) -> list[tuple[str, bytes]]:
        """The members of a valid bundle, in order."""
        return [
            (TOC_NAME, self.manifest.to_yaml()),
            (LAYOUT_NAME, self.manifest.oci_layout()),
            (INDEX_NAME, self.manifest.oci_index()),
        ] + [(b.member, self.data[b.digest]) for b in self.manifest.blobs]


def _content() -> Content:
    base = _noise(b"base layer", 3000)
    app = _noise(b"app layer", 700)
    tool = b"tool layer " * 50
    cfg_a = b'{"architecture":"amd64","os":"linux","config":{"Cmd":["a"]}}'
    cfg_b = b'{"architecture":"amd64","os":"linux","config":{"Cmd":["b"]}}'
    man_a = _image_manifest(cfg_a, [base, app])
    man_b = _image_manifest(cfg_b, [base, tool])
    blobs: list[tuple[bytes, str, str]] = [
        (man_a, OCI_MANIFEST, "manifest"),
        (man_b, OCI_MANIFEST, "manifest"),
        (cfg_a, CONFIG_TYPE, "config"),
        (base, LAYER_TYPE, "layer"),
        (app, LAYER_TYPE, "layer"),
        (cfg_b, CONFIG_TYPE, "config"),
        (tool, LAYER_TYPE, "layer"),
        (b"", LAYER_TYPE, "layer"),  # an empty blob is legal and has no tar data at all
    ]
    images = tuple(
        ImageEntry(
            name=name,
            tag="v1.29.0_2024-04-09",
            source=f"src.example:5000/arcdata/{name}:v1.29.0_2024-04-09",
            digest=Digest.of(raw),
            media_type=OCI_MANIFEST,
            size=len(raw),
            platforms=(PlatformEntry("linux/amd64", Digest.of(raw), OCI_MANIFEST),),
        )
        for name, raw in (("arc-controller", man_a), ("sub/arc-dns", man_b))
    )
    toc = TableOfContents(
        source_registry="src.example:5000",
        source_repository="arcdata",
        images=images,
        blobs=tuple(BlobEntry(Digest.of(raw), len(raw), mt, kind) for raw, mt, kind in blobs),
        created="2024-04-09T10:00:00Z",
    )
    return Content(toc, {Digest.of(raw): raw for raw, _, _ in blobs})


CONTENT = _content()


def _write(path: Path, content: Content = CONTENT, *, threads: int = -1) -> int:
    with BundleWriter(path, threads=threads) as writer:
        for name, data in content.members()[:3]:
            writer.add_bytes(name, data)
        for n, blob in enumerate(content.manifest.blobs):
            data = content.data[blob.digest]
            if n % 2:
                writer.add_bytes(blob.member, data)
            else:  # streamed in uneven chunks, as export does for remote blobs
                writer.add_stream(blob.member, blob.size, (data[i : i + 1000] for i in range(0, len(data), 1000)))
        return writer.commit()


def _read(raw: bytes) -> tuple[BundleReader, dict[Digest, bytes]]:
    reader = BundleReader(io.BytesIO(raw), origin=ORIGIN)
    got: dict[Digest, bytes] = {}
    for entry, chunks in reader.blobs():
        got[entry.digest] = b"".join(chunks)
    return reader, got


def _tar(members: list[tuple[str, bytes]], *, trailer: bytes = tarstream.END_OF_ARCHIVE) -> bytes:
    out = b"".join(tarstream.member_header(n, len(d)) + d + tarstream.padding(len(d)) for n, d in members)
    return out + trailer


def _zst(tar: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(tar)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("good") / "bundle.tar.zst"
    _write(path)
    return path.read_bytes()


def _decompressed(raw: bytes) -> bytes | None:
    try:
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True).read()
    except zstandard.ZstdError:
        return None


# -- writing and reading back ------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "bundle.tar.zst"
    size = _write(path)
    assert size == path.stat().st_size
    assert not (tmp_path / "out" / "bundle.tar.zst.partial").exists()
    with open_bundle(path) as reader:
        assert reader.toc == CONTENT.manifest
        assert reader.toc_bytes == CONTENT.manifest.to_yaml()
        got: list[tuple[Digest, bytes]] = []
        for entry, chunks in reader.blobs():
            got.append((entry.digest, b"".join(chunks)))
        assert reader.layout_files == {
            LAYOUT_NAME: CONTENT.manifest.oci_layout(),
            INDEX_NAME: CONTENT.manifest.oci_index(),
        }
    assert got == [(b.digest, CONTENT.data[b.digest]) for b in CONTENT.manifest.blobs]


def test_hand_built_bundle_is_read(good: bytes) -> None:
    """The hostile cases below change one thing in this hand-built bundle; unchanged, it reads fine."""
    _, got = _read(_zst(_tar(CONTENT.members())))
    assert got == CONTENT.data
    _, got = _read(good)
    assert got == CONTENT.data


def test_uncompressed_size_counted(tmp_path: Path) -> None:
    with BundleWriter(tmp_path / "b.tar.zst") as writer:
        writer.add_bytes("a", b"x" * 10)
        assert writer.uncompressed_bytes == 1024
        writer.commit()
        assert writer.committed


def test_identity_from_the_manifest_object_equals_the_parsed_one(tmp_path: Path) -> None:
    data = CONTENT.manifest.to_yaml()
    indexes = []
    for name, add in (("parsed", lambda w: w.add_bytes(TOC_NAME, data)),
                      ("object", lambda w: w.add_toc(CONTENT.manifest, data))):
        with BundleWriter(tmp_path / f"{name}.tar.zst") as writer:
            add(writer)
            writer.commit()
        indexes.append(writer.index)
    assert indexes[0] is not None and indexes[1] is not None
    assert indexes[0].identity == indexes[1].identity
    assert indexes[0].identity.manifest_sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("threads", [-1, 0])
def test_deterministic(tmp_path: Path, threads: int) -> None:
    a, b = tmp_path / "a.tar.zst", tmp_path / "b.tar.zst"
    _write(a, threads=threads)
    _write(b, threads=threads)
    assert a.read_bytes() == b.read_bytes()
    assert hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest()


def test_zstd_and_tar_cli_list_the_members(tmp_path: Path) -> None:
    path = tmp_path / "bundle.tar.zst"
    _write(path)
    listing = subprocess.run(
        f"zstd -dc '{path}' | tar --numeric-owner -tvf -", shell=True, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    names = [line.split()[-1] for line in listing]
    assert names == [name for name, _ in CONTENT.members()]
    assert names[0] == "arcgap.yaml"
    for line in listing:
        mode, owner, _size, date = line.split()[:4]
        assert (mode, owner, date) == ("-rw-r--r--", "0/0", "1970-01-01")
    tar = subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    assert tar == _tar(CONTENT.members())  # byte for byte the deterministic tar


def test_partial_removed_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "bundle.tar.zst"
    partial = tmp_path / "bundle.tar.zst.partial"

    def chunks() -> Iterator[bytes]:
        yield b"x" * 100
        assert partial.exists()
        raise ConnectionError("source registry went away")

    with pytest.raises(ConnectionError), BundleWriter(path) as writer:
        writer.add_bytes(TOC_NAME, CONTENT.manifest.to_yaml())
        writer.add_stream("blobs/sha256/" + "a" * 64, 1000, chunks())
    assert not partial.exists()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        pytest.param([b"x" * 5], "blob: 5 bytes written, 10 declared", id="short"),
        pytest.param([b"x" * 6, b"x" * 6], "blob: more data than the declared 10 bytes", id="long"),
    ],
)
def test_stream_size_mismatch_aborts(tmp_path: Path, chunks: list[bytes], message: str) -> None:
    path = tmp_path / "bundle.tar.zst"
    with pytest.raises(RuntimeError) as info, BundleWriter(path) as writer:
        writer.add_stream("blob", 10, chunks)
    assert str(info.value) == message
    assert list(tmp_path.iterdir()) == []


def test_no_commit_leaves_nothing(tmp_path: Path) -> None:
    with BundleWriter(tmp_path / "b.tar.zst") as writer:
        writer.add_bytes("a", b"1")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_without_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "bundle.tar.zst"
    path.write_bytes(b"precious")
    with pytest.raises(LocalIOError) as info, BundleWriter(path):
        pass
    assert info.value.message == f"{path} already exists"
    assert words(info.value.hint) == "remove it, choose another --output, or pass --force"
    assert info.value.exit_code == ExitCode.LOCAL_IO
    assert path.read_bytes() == b"precious"
    assert not (tmp_path / "bundle.tar.zst.partial").exists()


def test_existing_output_with_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "bundle.tar.zst"
    path.write_bytes(b"old")
    with BundleWriter(path, overwrite=True) as writer:
        writer.add_bytes("a", b"new")
        writer.commit()
    assert _decompressed(path.read_bytes()) == _tar([("a", b"new")])


def test_missing_bundle_file(tmp_path: Path) -> None:
    with pytest.raises(LocalIOError) as info, open_bundle(tmp_path / "nope.tar.zst"):
        pass
    assert info.value.message == f"{tmp_path / 'nope.tar.zst'}: no such file"


# -- hostile and damaged input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"hello world, not a bundle", id="text"),
        pytest.param(_tar(CONTENT.members()), id="plain-tar"),
        pytest.param(b"\x1f\x8b\x08\x00" + b"\0" * 100, id="gzip"),
    ],
)
def test_not_zstd(raw: bytes) -> None:
    with pytest.raises(BundleFormatError) as info:
        BundleReader(io.BytesIO(raw), origin=ORIGIN)
    assert info.value.message == f"{ORIGIN} is not an arcgap bundle (not zstd-compressed)"
    assert info.value.exit_code == ExitCode.BUNDLE_FORMAT


@pytest.mark.parametrize(
    ("members", "first"),
    [
        pytest.param(CONTENT.members()[1:], "'oci-layout'", id="layout-first"),
        pytest.param([("manifest.json", b"[]"), *CONTENT.members()], "'manifest.json'", id="docker-save-first"),
        pytest.param([("./arcgap.yaml", CONTENT.manifest.to_yaml())], "'./arcgap.yaml'", id="dot-slash"),
        pytest.param([], "'missing'", id="empty-tar"),
    ],
)
def test_first_member_must_be_arcgap_yaml(members: list[tuple[str, bytes]], first: str) -> None:
    with pytest.raises(BundleFormatError) as info:
        BundleReader(io.BytesIO(_zst(_tar(members))), origin=ORIGIN)
    assert info.value.message == f"{ORIGIN} is not an arcgap bundle (first member is {first})"


def _swap(members: list[tuple[str, bytes]], i: int, j: int) -> list[tuple[str, bytes]]:
    out = list(members)
    out[i], out[j] = out[j], out[i]
    return out


def _insert(members: list[tuple[str, bytes]], at: int, member: tuple[str, bytes]) -> list[tuple[str, bytes]]:
    out = list(members)
    out.insert(at, member)
    return out


M = CONTENT.members()
BLOBS = CONTENT.manifest.blobs
OTHER = "blobs/sha256/" + hashlib.sha256(b"other").hexdigest()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        pytest.param(_swap(M, 1, 2), f"{ORIGIN}: unexpected member 'index.json'", id="index-before-layout"),
        pytest.param(_swap(M, 3, 4), f"{ORIGIN}: unexpected member '{BLOBS[1].member}' where {BLOBS[0].member} belongs",
                     id="blobs-swapped"),
        pytest.param(_insert(M, 1, ("../evil", b"x")), f"{ORIGIN}: unexpected member '../evil'",
                     id="dotdot-before-layout"),
        pytest.param(_insert(M, 3, ("../evil", b"x")), f"{ORIGIN}: unexpected member '../evil'",
                     id="dotdot-after-index"),
        pytest.param(_insert(M, 3, ("/etc/passwd", b"x")), f"{ORIGIN}: unexpected member '/etc/passwd'",
                     id="absolute"),
        pytest.param(_insert(M, 3, (OTHER, b"x")), f"{ORIGIN}: unexpected member '{OTHER}' where {BLOBS[0].member} "
                     "belongs", id="other-blob-first"),
        pytest.param(_insert(M, 6, (OTHER, b"x")), f"{ORIGIN}: unexpected member '{OTHER}' where {BLOBS[3].member} "
                     "belongs", id="other-blob-middle"),
        pytest.param(M + [(OTHER, b"x")], f"{ORIGIN}: unexpected member '{OTHER}' after the last blob",
                     id="other-blob-last"),
        pytest.param(M + [("../evil", b"x")], f"{ORIGIN}: unexpected member '../evil' after the last blob",
                     id="dotdot-last"),
        pytest.param(M + [M[-1]], f"{ORIGIN}: unexpected member '{M[-1][0]}' after the last blob",
                     id="blob-twice"),
        pytest.param(_insert(M, 3, ("manifest.json", b"[]")), None, id="optional-member-ok"),
        pytest.param(_insert(M, 3, ("manifest.json", b"[]"))[:4] + [("manifest.json", b"[]")] + M[3:],
                     f"{ORIGIN}: unexpected member 'manifest.json'", id="optional-member-twice"),
        pytest.param([M[0], *M[3:]], f"{ORIGIN}: oci-layout missing before the blobs", id="no-layout"),
        pytest.param(M[:2] + M[3:], f"{ORIGIN}: index.json missing before the blobs", id="no-index"),
        pytest.param(M[:1] + [(LAYOUT_NAME, b"{}")] + M[2:], f"{ORIGIN}: oci-layout lacks imageLayoutVersion",
                     id="layout-without-version"),
        pytest.param(M[:2] + [(INDEX_NAME, b"not json")] + M[3:],
                     f"{ORIGIN}: index.json refused: is not JSON (Expecting value: line 1 column 1 (char 0))",
                     id="index-not-json"),
    ],
)
def test_member_names_and_order(members: list[tuple[str, bytes]], message: str | None) -> None:
    raw = _zst(_tar(members))
    if message is None:
        reader, got = _read(raw)
        assert got == CONTENT.data
        assert reader.layout_files["manifest.json"] == b"[]"
        return
    with pytest.raises(BundleFormatError) as info:
        _read(raw)
    assert info.value.message == message


def _index_with(change: dict[str, object], at: int = 0) -> bytes:
    doc = json.loads(CONTENT.manifest.oci_index())
    doc["manifests"][at].update(change)
    return json.dumps(doc).encode()


_MISMATCH = "does not match arcgap.yaml"


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        pytest.param(_index_with({"digest": str(Digest.of(b"x"))}), _MISMATCH, id="wrong-digest"),
        pytest.param(_index_with({"annotations": {"org.opencontainers.image.ref.name": "arc-controller:v2"}}),
                     _MISMATCH, id="wrong-ref-name"),
        pytest.param(_index_with({"annotations": {}}), _MISMATCH, id="no-ref-name"),
        pytest.param(json.dumps({"schemaVersion": 2, "manifests": []}).encode(), _MISMATCH, id="no-images"),
        pytest.param(json.dumps({"schemaVersion": 2,
                                 "manifests": json.loads(CONTENT.manifest.oci_index())["manifests"][:1]}).encode(),
                     _MISMATCH, id="one-image-missing"),
        pytest.param(json.dumps({"manifests": []}).encode(), "refused: schemaVersion is 'null', not the integer 2",
                     id="no-schema-version"),
        pytest.param(json.dumps([]).encode(), "refused: not a JSON object", id="a-list"),
        pytest.param(json.dumps({"schemaVersion": 2, "manifests": "abc"}).encode(), _MISMATCH,
                     id="manifests-string"),
        pytest.param(json.dumps({"schemaVersion": 2, "manifests": 5}).encode(), _MISMATCH, id="manifests-int"),
        pytest.param(_index_with({"annotations": ["x"]}), "refused: manifests[0].annotations is not a map of strings",
                     id="annotations-list"),
        pytest.param(_index_with({"digest": ["sha256:x"]}), "refused: manifests[0].digest is not a string",
                     id="digest-list"),
        pytest.param(_index_with({"Digest": "sha256:x"}),
                     "refused: manifests[0]: key 'Digest' is read as 'digest' by Go readers (case-insensitive)",
                     id="digest-twice-by-case"),
    ],
)
def test_index_json_must_match_arcgap_yaml(index: bytes, expected: str) -> None:
    members = M[:2] + [(INDEX_NAME, index)] + M[3:]
    with pytest.raises(BundleFormatError) as info:
        _read(_zst(_tar(members)))
    assert info.value.message == f"{ORIGIN}: index.json {expected}"


def test_blob_bytes_not_matching_digest() -> None:
    entry = BLOBS[3]  # the shared base layer
    data = CONTENT.data[entry.digest]
    forged = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
    members = [(n, forged if n == entry.member else d) for n, d in M]
    reader = BundleReader(io.BytesIO(_zst(_tar(members))), origin=ORIGIN)
    handed_on: list[Digest] = []
    with pytest.raises(IntegrityError) as info:
        for e, chunks in reader.blobs():
            b"".join(chunks)
            handed_on.append(e.digest)
    actual = hashlib.sha256(forged).hexdigest()[:12]
    assert str(entry.digest) in info.value.message
    assert handed_on == [b.digest for b in BLOBS[:3]]
    assert info.value.exit_code == ExitCode.INTEGRITY
    # Like every other reader error, it should name the bundle file too.
    assert info.value.message == f"{ORIGIN}: blob {entry.digest}: digest mismatch: content hashes to sha256:{actual}…"


def test_bad_blob_is_never_handed_on_whole() -> None:
    """The last chunk is held back until the digest is checked, so a consumer never sees all of a bad blob."""
    entry = BLOBS[3]
    forged = b"\0" * entry.size
    members = [(n, forged if n == entry.member else d) for n, d in M]
    reader = BundleReader(io.BytesIO(_zst(_tar(members))), origin=ORIGIN)
    seen = b""
    with pytest.raises(IntegrityError):
        for e, chunks in reader.blobs():
            for chunk in chunks:
                if e == entry:
                    seen += chunk
    assert len(seen) < entry.size


@pytest.mark.parametrize("delta", [-1, 1, 512])
def test_member_size_differs_from_declaration(delta: int) -> None:
    entry = BLOBS[4]
    data = CONTENT.data[entry.digest]
    changed = data + b"x" * delta if delta > 0 else data[:delta]
    members = [(n, changed if n == entry.member else d) for n, d in M]
    with pytest.raises(IntegrityError) as info:
        _read(_zst(_tar(members)))
    assert info.value.message == (
        f"{ORIGIN}: blob {entry.digest}: size {entry.size + delta} differs from the declared {entry.size}"
    )


def test_blobs_missing_at_the_end() -> None:
    with pytest.raises(IntegrityError) as info:
        _read(_zst(_tar(M[:-3])))
    assert info.value.message == f"{ORIGIN}: bundle truncated: blob {BLOBS[-3].digest} missing (and 2 more)"
    with pytest.raises(IntegrityError) as info:
        _read(_zst(_tar(M[:-1])))
    assert info.value.message == f"{ORIGIN}: bundle truncated: blob {BLOBS[-1].digest} missing"


def test_data_after_end_of_archive() -> None:
    raw = _zst(_tar(M, trailer=tarstream.END_OF_ARCHIVE + b"\0" * 512 + b"smuggled"))
    with pytest.raises(BundleFormatError) as info:
        _read(raw)
    assert info.value.message == f"{ORIGIN}: unexpected data after the end of the archive"


def test_zero_padding_after_end_of_archive_is_fine() -> None:
    _, got = _read(_zst(_tar(M, trailer=tarstream.END_OF_ARCHIVE + b"\0" * 10240)))
    assert got == CONTENT.data


def test_garbage_appended_to_the_file(good: bytes) -> None:
    with pytest.raises(IntegrityError) as info:
        _read(good + b"garbage")
    assert info.value.message.startswith(f"{ORIGIN}: compressed data is damaged (")


# Where to cut: a byte count from the start (int >= 0), a fraction of the file (float), or bytes from the end
# (negative). The last 4 bytes are the zstd frame's content checksum: a copy that lost only those still holds
# every byte of the tar, and must be reported as truncated all the same.
CUTS: list[int | float] = [0, 1, 3, 4, 5, 8, 20, 0.2, 0.33, 0.5, 0.67, -600, -100, -30, -18, -17, -16, -13, -5, -4,
                           -3, -1]


def _cut_at(spec: int | float, n: int) -> int:
    if isinstance(spec, float):
        return int(n * spec)
    return spec if spec >= 0 else n + spec


@pytest.mark.parametrize("spec", CUTS, ids=[f"end{c}" if isinstance(c, int) and c < 0 else str(c) for c in CUTS])
def test_truncated(good: bytes, spec: int | float) -> None:
    cut = _cut_at(spec, len(good))
    assert 0 <= cut < len(good)
    with pytest.raises((IntegrityError, BundleFormatError)):  # any other exception type fails the test too
        _read(good[:cut])


def test_flipped_bytes_never_pass_or_crash(good: bytes) -> None:
    """Every flip either changes nothing the decompressor emits, or is refused as damaged/not-a-bundle."""
    expected_tar = _decompressed(good)
    assert expected_tar is not None
    offsets = sorted(set(range(0, len(good), 37)) | {0, 1, 2, 3, 4, 5, 6, len(good) - 14, len(good) - 1})
    refused = 0
    for offset in offsets:
        for mask in (0x01, 0x80):
            damaged = bytearray(good)
            damaged[offset] ^= mask
            try:
                _read(bytes(damaged))
            except (IntegrityError, BundleFormatError):
                refused += 1
                continue
            # Not refused: only acceptable if the flip hit a bit the decoder ignores.
            assert _decompressed(bytes(damaged)) == expected_tar, f"flip {mask:#x} at {offset} accepted"
    assert refused >= 0.9 * 2 * len(offsets)


@pytest.mark.parametrize(
    "offset_from_end",
    [
        pytest.param(4, id="checksum-first-byte"),
        pytest.param(1, id="checksum-last-byte"),
        pytest.param(20, id="last-block"),
    ],
)
def test_flipped_end_of_frame_refused(good: bytes, offset_from_end: int) -> None:
    damaged = bytearray(good)
    damaged[-offset_from_end] ^= 0x55
    with pytest.raises(IntegrityError) as info:
        _read(bytes(damaged))
    assert info.value.message.startswith(f"{ORIGIN}: ")


def test_bundle_is_one_checksummed_zstd_frame(good: bytes) -> None:
    assert zstandard.get_frame_parameters(good).has_checksum
    dobj = zstandard.ZstdDecompressor().decompressobj()
    assert dobj.decompress(good) == _tar(M)
    assert dobj.eof
    assert dobj.unused_data == b""  # no second (empty) frame after the first


def test_flip_in_tar_padding_caught_by_zstd_checksum() -> None:
    """The tar reader skips padding unchecked; the zstd frame checksum is what catches damage there."""
    tar = bytearray(_tar(M))
    pad_at = len(tarstream.member_header(M[0][0], len(M[0][1]))) + len(M[0][1]) + 1  # padding of arcgap.yaml
    assert tar[pad_at] == 0
    raw = bytearray(zstandard.ZstdCompressor(write_checksum=True, level=-1).compress(bytes(tar)))
    tar[pad_at] = 1
    forged = zstandard.ZstdCompressor(write_checksum=True, level=-1).compress(bytes(tar))
    # Keep the forged frame but the checksum of the original: the content differs only in padding.
    damaged = forged[:-4] + bytes(raw[-4:])
    with pytest.raises(IntegrityError) as info:
        _read(damaged)
    assert info.value.message.startswith(f"{ORIGIN}: compressed data is damaged (")


def test_an_error_after_the_whole_bundle_checked_out_blames_no_part(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry error at the end of an import (every blob and the zstd checksum already verified) must not
    re-read the parts to look for damage: on removable media that is minutes for nothing."""
    from arcgap.bundle.partstream import PartStream

    path = tmp_path / "b.tar.zst"
    with BundleWriter(path, split_bytes=300) as writer:
        for name, data in CONTENT.members():
            writer.add_bytes(name, data)
        writer.commit()
    assert len(writer.parts) > 2
    hashed: list[str] = []
    real = PartStream._check_file

    def recording(self: PartStream, part: object) -> None:
        hashed.append(str(part))
        real(self, part)  # type: ignore[arg-type]

    monkeypatch.setattr(PartStream, "_check_file", recording)
    with pytest.raises(IntegrityError), open_bundle(path, hash_parts=False) as reader:
        for _, chunks in reader.blobs():
            for _ in chunks:
                pass
        assert reader.finished
        raise IntegrityError("registry stored it as sha256:…, expected sha256:…")
    assert hashed == []
    with pytest.raises(IntegrityError), open_bundle(path, hash_parts=False) as reader:  # not finished: blamed
        raise IntegrityError("damage found early")
    assert hashed  # the parts read so far were checked against the sidecar
