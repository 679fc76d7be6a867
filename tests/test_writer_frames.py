"""The bundle writer's zstd frames: already-compressed members in light frames of their own, one standard stream.

What must hold whatever the frames: ``zstd -d`` reads the bundle as one stream, arcgap's reader reads every
blob back verified, the same members give the same bytes, and every frame carries its content checksum.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import zstandard

from arcgap.bundle import tarstream
from arcgap.bundle.format import INDEX_NAME, LAYOUT_NAME, BlobEntry, ImageEntry, PlatformEntry, TableOfContents
from arcgap.bundle.reader import open_bundle
from arcgap.bundle.writer import LIGHT_MIN_BYTES, BundleWriter, already_compressed
from arcgap.bundle.zstdframes import FrameTracker
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import OCI_MANIFEST

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def _noise(seed: bytes, size: int) -> bytes:
    return hashlib.shake_256(seed).digest(size)


GZ_LAYER = gzip.compress(_noise(b"layer", 300_000), compresslevel=1, mtime=0)  # ~300 KB, starts 1f 8b
ZSTD_LAYER = zstandard.ZstdCompressor().compress(_noise(b"zstd-layer", 200_000))
SMALL_GZ = gzip.compress(b"tiny", mtime=0)  # below LIGHT_MIN_BYTES: not worth a frame of its own
PLAIN_LAYER = b"uncompressed tar content " * 20_000  # 500 KB that compresses
CONFIG = b'{"architecture": "amd64", "os": "linux"}'
MEMBERS = [
    ("blobs/sha256/config", CONFIG),
    ("blobs/sha256/gz", GZ_LAYER),
    ("blobs/sha256/small", SMALL_GZ),
    ("blobs/sha256/zstd", ZSTD_LAYER),
    ("blobs/sha256/plain", PLAIN_LAYER),
]


def _write(path: Path, *, threads: int = -1) -> bytes:
    with BundleWriter(path, threads=threads) as writer:
        for n, (name, data) in enumerate(MEMBERS):
            if n % 2:  # streamed in uneven chunks, as export does for remote blobs
                writer.add_stream(name, len(data), (data[i : i + 7000] for i in range(0, len(data), 7000)))
            else:
                writer.add_bytes(name, data)
        writer.commit()
    return path.read_bytes()


def _frames(raw: bytes) -> list[bytes]:
    """The decompressed content of each zstd frame, in order (every frame must end with a checksum)."""
    out = []
    while raw:
        assert zstandard.get_frame_parameters(raw).has_checksum
        dobj = zstandard.ZstdDecompressor().decompressobj()
        out.append(dobj.decompress(raw))
        raw = dobj.unused_data
    return out


def _member(name: str, data: bytes) -> bytes:
    return tarstream.member_header(name, len(data)) + data + tarstream.padding(len(data))


def test_already_compressed_members_get_frames_of_their_own(tmp_path: Path) -> None:
    frames = _frames(_write(tmp_path / "b.tar.zst"))
    assert frames == [
        _member(*MEMBERS[0]),
        _member(*MEMBERS[1]),  # gzip
        _member(*MEMBERS[2]),  # gzip, but small: back in a dense frame
        _member(*MEMBERS[3]),  # zstd
        _member(*MEMBERS[4]) + tarstream.END_OF_ARCHIVE,
    ]


def test_the_frames_are_one_stream_for_zstd_and_for_arcgap(tmp_path: Path) -> None:
    raw = _write(tmp_path / "b.tar.zst")
    whole = b"".join(_member(n, d) for n, d in MEMBERS) + tarstream.END_OF_ARCHIVE
    assert zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True).read() == whole
    tracker = FrameTracker()
    tracker.feed(raw)
    assert tracker.complete and tracker.frames == 5
    if shutil.which("zstd"):
        done = subprocess.run(["zstd", "-dc", str(tmp_path / "b.tar.zst")], capture_output=True, check=True)
        assert done.stdout == whole


def test_same_members_same_bytes_whatever_the_chunking(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.tar.zst")
    with BundleWriter(tmp_path / "b.tar.zst") as writer:
        for name, data in MEMBERS:
            writer.add_stream(name, len(data), iter([data[:1], data[1:]]))  # the sniffed head is one byte
        writer.commit()
    assert (tmp_path / "b.tar.zst").read_bytes() == a


def test_already_compressed_needs_the_magic_and_the_size() -> None:
    assert already_compressed(GZ_LAYER[:4], LIGHT_MIN_BYTES)
    assert already_compressed(ZSTD_LAYER[:4], LIGHT_MIN_BYTES)
    assert not already_compressed(GZ_LAYER[:4], LIGHT_MIN_BYTES - 1)
    assert not already_compressed(PLAIN_LAYER[:4], 1 << 30)
    assert not already_compressed(b"", 1 << 30)


def test_a_bundle_with_light_frames_reads_back_verified(tmp_path: Path) -> None:
    layers = [GZ_LAYER, ZSTD_LAYER, PLAIN_LAYER]
    manifest_raw = _image_manifest(CONFIG, layers)
    blobs = [(manifest_raw, OCI_MANIFEST, "manifest"), (CONFIG, CONFIG_TYPE, "config"),
             *((x, LAYER_TYPE, "layer") for x in layers)]  # fmt: skip
    toc = TableOfContents(
        source_registry="src.example:5000",
        source_repository="arcdata",
        images=(ImageEntry(name="arc-controller", tag="v1", source="src.example:5000/arcdata/arc-controller:v1",
                           digest=Digest.of(manifest_raw), media_type=OCI_MANIFEST, size=len(manifest_raw),
                           platforms=(PlatformEntry("linux/amd64", Digest.of(manifest_raw), OCI_MANIFEST),)),),
        blobs=tuple(BlobEntry(Digest.of(raw), len(raw), mt, kind) for raw, mt, kind in blobs),
        created="2024-04-09T10:00:00Z",
    )  # fmt: skip
    path = tmp_path / "b.tar.zst"
    with BundleWriter(path) as writer:
        writer.add_toc(toc, toc.to_yaml())
        writer.add_bytes(LAYOUT_NAME, toc.oci_layout())
        writer.add_bytes(INDEX_NAME, toc.oci_index())
        data = {Digest.of(raw): raw for raw, _, _ in blobs}
        for entry in toc.blobs:
            raw = data[entry.digest]
            writer.add_stream(entry.member, entry.size, (raw[i : i + 65536] for i in range(0, len(raw), 65536)))
        writer.commit()
    frames = _frames(path.read_bytes())
    gz_member = _member(f"blobs/sha256/{Digest.of(GZ_LAYER).hex}", GZ_LAYER)
    assert len(frames) >= 3 and any(f.startswith(gz_member) for f in frames)  # a light frame starts with it
    with open_bundle(path) as reader:
        got = {e.digest: b"".join(chunks) for e, chunks in reader.blobs()}
        assert reader.finished
    assert got == data


def _image_manifest(config: bytes, layers: list[bytes]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": str(Digest.of(config)), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": str(Digest.of(x)), "size": len(x)} for x in layers],
    }
    return json.dumps(doc).encode()
