"""A bundle is untrusted input: decompression bombs, deep nesting, arbitrary and mutated bytes (hypothesis),
and the reference parser on arbitrary text. Only ArcgapError subclasses may come out, quickly, in bounded memory."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

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
from arcgap.bundle.reader import MAX_TRAILING_BYTES, BundleReader
from arcgap.bundle.verify import verify_bundle
from arcgap.errors import ArcgapError, BundleFormatError, ExitCode, IntegrityError, UsageError
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import OCI_MANIFEST
from arcgap.oci.reference import Reference, parse_reference

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "hostile.tar.zst"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


# -- a small valid bundle, built by hand ------------------------------------------------------------------


def _manifest_bytes(config: bytes, layers: list[bytes]) -> bytes:
    doc = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": str(Digest.of(config)), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": str(Digest.of(x)), "size": len(x)} for x in layers],
    }
    return json.dumps(doc, indent=2).encode()


def _content(layer: bytes | None = None) -> tuple[TableOfContents, dict[Digest, bytes]]:
    layer = layer if layer is not None else hashlib.shake_256(b"layer").digest(1500)
    config = b'{"architecture":"amd64","os":"linux"}'
    manifest = _manifest_bytes(config, [layer])
    blobs = [(manifest, OCI_MANIFEST, "manifest"), (config, CONFIG_TYPE, "config"), (layer, LAYER_TYPE, "layer")]
    digest = Digest.of(manifest)
    image = ImageEntry(name="arc-dns", tag="v1", source="src.example/arcdata/arc-dns:v1", digest=digest,
                       media_type=OCI_MANIFEST, size=len(manifest),
                       platforms=(PlatformEntry("linux/amd64", digest, OCI_MANIFEST),))
    toc = TableOfContents(source_registry="src.example", source_repository="arcdata", images=(image,),
                         blobs=tuple(BlobEntry(Digest.of(d), len(d), mt, k) for d, mt, k in blobs),
                         created="2024-04-09T10:00:00Z", format_version=1)
    return toc, {Digest.of(d): d for d, _, _ in blobs}


def _members(toc: TableOfContents, data: dict[Digest, bytes]) -> list[tuple[str, bytes]]:
    return [(TOC_NAME, toc.to_yaml()), (LAYOUT_NAME, toc.oci_layout()), (INDEX_NAME, toc.oci_index())] + [
        (b.member, data[b.digest]) for b in toc.blobs
    ]


def _tar(members: list[tuple[str, bytes]], trailer: bytes = tarstream.END_OF_ARCHIVE) -> bytes:
    out = b"".join(tarstream.member_header(n, len(d)) + d + tarstream.padding(len(d)) for n, d in members)
    return out + trailer


def _zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


TOC, DATA = _content()
TAR = _tar(_members(TOC, DATA))
GOOD = _zst(TAR)


def _read_all(raw: bytes) -> dict[Digest, bytes]:
    reader = BundleReader(io.BytesIO(raw), origin=ORIGIN)
    got: dict[Digest, bytes] = {}
    for entry, chunks in reader.blobs():
        got[entry.digest] = b"".join(chunks)
    return got


def _verify(raw: bytes) -> None:
    verify_bundle(BundleReader(io.BytesIO(raw), origin=ORIGIN))


def test_the_hand_built_bundle_is_valid() -> None:
    assert _read_all(GOOD) == DATA
    _verify(GOOD)


# -- decompression bombs ---------------------------------------------------------------------------------


def rle_frame(total_bytes: int, byte: int = 0, *, window_log: int = 17) -> bytes:
    """A zstd frame of RLE blocks: 4 compressed bytes per 128 KiB of ``byte`` (RFC 8878 §3.1.1.2)."""
    block = 128 * 1024
    out = bytearray(b"\x28\xb5\x2f\xfd" + bytes([0x00, (window_log - 10) << 3]))  # no size, no checksum
    count = max(1, total_bytes // block)
    for n in range(count):
        header = (1 if n == count - 1 else 0) | (1 << 1) | (block << 3)
        out += header.to_bytes(3, "little") + bytes([byte])
    return bytes(out)


GiB = 2**30
# VmHWM, not ru_maxrss: the latter keeps the forking parent's high-water mark across exec.
BOMB_SCRIPT = """
import re, sys, time
from arcgap.cli import run
t0 = time.monotonic()
code = run(["verify", sys.argv[1]])
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) // 1024
print(f"{code} {time.monotonic() - t0:.3f} {hwm}")
"""


def _verify_in_a_process(path: Path) -> tuple[int, float, int, str]:
    """``arcgap verify`` in a fresh process: exit code, seconds, peak RSS in MiB, the error lines."""
    done = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    code, seconds, rss = done.stdout.split()[-3:]
    errors = "\n".join(line for line in done.stderr.splitlines() if line.startswith(("error: ", "hint: ")))
    return int(code), float(seconds), int(rss), errors


@pytest.mark.parametrize("gib", [1, 64])
def test_zeros_after_the_end_of_the_archive_are_refused_quickly(tmp_path: Path, gib: int) -> None:
    """A second frame of a few KB to MB that expands to gigabytes of zero "padding"."""
    bomb = GOOD + rle_frame(gib * GiB)
    assert len(bomb) < gib * GiB / 30_000
    path = tmp_path / "bomb.tar.zst"
    path.write_bytes(bomb)
    code, seconds, rss, err = _verify_in_a_process(path)
    assert code == ExitCode.BUNDLE_FORMAT, err
    assert err.splitlines()[0] == (f"error: {path}: more than {MAX_TRAILING_BYTES} bytes of padding after the end "
                                   "of the archive")
    assert seconds < 10 and rss < 128, (seconds, rss)  # a plain verify peaks at ~46 MiB here; seconds: shared machine


def test_zero_padding_up_to_the_cap_is_accepted() -> None:
    assert _read_all(_zst(_tar(_members(TOC, DATA), trailer=b"\0" * MAX_TRAILING_BYTES))) == DATA


def test_a_member_larger_than_arcgap_yaml_declares_is_refused_before_it_is_read() -> None:
    """The layer's tar header says 64 GiB where arcgap.yaml says 1500 bytes; zeros follow, lazily expanded."""
    members = _members(TOC, DATA)
    layer = TOC.blobs[-1]
    head = b"".join(tarstream.member_header(n, len(d)) + d + tarstream.padding(len(d)) for n, d in members[:-1])
    bomb = zstandard.ZstdCompressor(write_checksum=False).compress(head + tarstream.member_header(layer.member,
                                                                                                  64 * GiB))
    bomb += rle_frame(64 * GiB)
    t0 = time.monotonic()
    with pytest.raises(IntegrityError) as info:
        _read_all(bomb)
    assert time.monotonic() - t0 < 5  # reading the 64 GiB would take minutes
    assert info.value.message == (f"{ORIGIN}: blob {layer.digest}: size {64 * GiB} differs from the declared "
                                  f"{layer.size}")


def test_zeros_where_the_next_member_belongs_end_the_archive_early() -> None:
    """A member of the declared size, then gigabytes of zeros where the next header belongs: the first zero
    block reads as the end of the archive, and the missing blobs are named."""
    members = _members(TOC, DATA)
    head = b"".join(tarstream.member_header(n, len(d)) + d + tarstream.padding(len(d)) for n, d in members[:-1])
    bomb = zstandard.ZstdCompressor(write_checksum=False).compress(head) + rle_frame(64 * GiB)
    t0 = time.monotonic()
    with pytest.raises(IntegrityError) as info:
        _read_all(bomb)
    assert time.monotonic() - t0 < 5  # reading the 64 GiB would take minutes
    assert info.value.message == f"{ORIGIN}: bundle truncated: blob {TOC.blobs[-1].digest} missing"


def test_a_frame_asking_for_a_huge_window_is_refused(tmp_path: Path) -> None:
    """A 2 GiB decoding window would be allocated up front: refused as over the limit, not called damage."""
    path = tmp_path / "window.tar.zst"
    path.write_bytes(GOOD + rle_frame(GiB, window_log=31))
    code, seconds, rss, err = _verify_in_a_process(path)
    assert code == ExitCode.BUNDLE_FORMAT, err
    assert err.splitlines() == [
        f"error: {path}: a zstd frame asks for a 2,048 MiB decoding window; arcgap allows at most 128 MiB",
        "hint: recompress the tar with a window of at most 128 MiB (zstd --long=27 or less); arcgap export never "
        "goes over it"]
    assert seconds < 10 and rss < 128  # seconds: the machine is shared; reading the bomb would take minutes


# -- deep nesting -------------------------------------------------------------------------------------------

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


def test_deeply_nested_index_json_is_a_format_error() -> None:
    members = [(n, DEEP_JSON if n == INDEX_NAME else d) for n, d in _members(TOC, DATA)]
    with pytest.raises(BundleFormatError) as info:
        _read_all(_zst(_tar(members)))
    assert info.value.message == f"{ORIGIN}: index.json refused: more than 50000 objects and arrays"


def test_deeply_nested_arcgap_yaml_is_a_format_error() -> None:
    with pytest.raises(BundleFormatError):
        TableOfContents.from_yaml(b"format: arcgap-bundle\nimages: " + b"[" * 5000, origin=TOC_NAME)


def test_deeply_nested_manifest_blob_is_refused_cleanly() -> None:
    manifest = b'{"schemaVersion": 2, "x": ' + DEEP_JSON + b"}"
    toc, data = _content()
    old = toc.blobs[0]
    digest = Digest.of(manifest)
    image = toc.images[0]
    image = ImageEntry(image.name, image.tag, image.source, digest, image.media_type, len(manifest),
                       (PlatformEntry("linux/amd64", digest, OCI_MANIFEST),))
    blobs = (BlobEntry(digest, len(manifest), old.media_type, old.kind), *toc.blobs[1:])
    toc = TableOfContents(toc.source_registry, toc.source_repository, (image,), blobs, toc.created,
                         format_version=1)
    data = {**data, digest: manifest}
    with pytest.raises(ArcgapError):
        _verify(_zst(_tar(_members(toc, data))))


# -- YAML mistakes name the file and the line -------------------------------------------------------------

BROKEN_YAML = b"format: arcgap-bundle\nformat_version: 1\nimages:\n  - name: [unclosed\n"


def test_broken_arcgap_yaml_names_file_and_line() -> None:
    with pytest.raises(BundleFormatError) as info:
        TableOfContents.from_yaml(BROKEN_YAML, origin=f"{ORIGIN}:{TOC_NAME}")
    assert info.value.message == f"{ORIGIN}:{TOC_NAME}:5: not valid YAML"


def test_broken_arcgap_yaml_inside_a_bundle_names_file_and_line() -> None:
    members = [(n, BROKEN_YAML if n == TOC_NAME else d) for n, d in _members(TOC, DATA)]
    with pytest.raises(BundleFormatError) as info:
        _read_all(_zst(_tar(members)))
    assert info.value.message == f"{ORIGIN}:{TOC_NAME}:5: not valid YAML"


def test_broken_receipt_names_file_and_line() -> None:
    from arcgap.transfer.receipt import Receipt

    with pytest.raises(BundleFormatError) as info:
        Receipt.from_yaml(b"format: arcgap-receipt\nimages:\n  - {target: x\n", origin="r.yaml")
    assert info.value.message.startswith("r.yaml:4: ")


def test_broken_receipt_given_to_since_names_file_and_line(tmp_path: Path) -> None:
    from arcgap.transfer.since import load_base

    broken = tmp_path / "receipt.yaml"
    broken.write_bytes(b"format: arcgap-receipt\nformat_version: 1\nbundle: [\n")
    with pytest.raises(ArcgapError) as info:
        load_base(broken)
    assert info.value.message.startswith(f"{broken}:4: ")


def test_broken_image_list_names_file_and_line(tmp_path: Path) -> None:
    from arcgap.arc.imagelist import load_image_list

    broken = tmp_path / "images.yaml"
    broken.write_text("images:\n  - arc-dns\n  - name: [oops\n")
    with pytest.raises(UsageError) as info:
        load_image_list(broken)
    assert info.value.message.startswith(f"{broken}:4")


# -- property-based: the reference parser -----------------------------------------------------------------

_COMPONENT = r"[a-z0-9]{1,8}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,8}){0,2}"
components = st.from_regex(rf"\A{_COMPONENT}\Z")
hosts = st.one_of(
    st.from_regex(r"\A[a-z0-9]{1,10}(?:\.[a-z0-9]{1,10}){1,3}(?::[0-9]{1,5})?\Z"),
    st.from_regex(r"\Alocalhost(?::[0-9]{1,5})?\Z"),
    st.from_regex(r"\A[a-z][a-z0-9]{0,9}:[0-9]{1,5}\Z"),
    st.from_regex(r"\A\[[0-9a-f:]{2,20}\](?::[0-9]{1,5})?\Z"),
)
tags = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}\Z")
digests = st.binary(min_size=1, max_size=8).map(lambda b: f"sha256:{hashlib.sha256(b).hexdigest()}")
REFERENCE_CHARS = "abcz019AZ._-/:@[]" + "sha256:" + "\t é"


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=120), st.text(alphabet=REFERENCE_CHARS, max_size=80)))
def test_parse_reference_raises_only_usage_errors_and_round_trips(text: str) -> None:
    try:
        ref = parse_reference(text)
    except UsageError:
        return
    assert isinstance(ref, Reference)
    assert parse_reference(str(ref)) == ref


@settings(max_examples=300, deadline=None)
@given(hosts, st.lists(components, min_size=1, max_size=4), st.none() | tags, st.none() | digests)
def test_valid_references_parse_to_their_parts(host: str, path: list[str], tag: str | None,
                                               digest: str | None) -> None:
    repository = "/".join(path)
    assume(len(repository) <= 255)
    text = f"{host}/{repository}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag) == (host, repository, tag)
    assert (str(ref.digest) if ref.digest else None) == digest
    assert str(ref) == text
    assert parse_reference(str(ref)) == ref


@settings(max_examples=200, deadline=None)
@given(st.lists(components, min_size=1, max_size=3), st.none() | tags)
def test_docker_hub_short_names_round_trip(path: list[str], tag: str | None) -> None:
    assume(len(path) == 1 or "." not in path[0])  # docker's rule: a first component with a dot is a host
    text = "/".join(path) + (f":{tag}" if tag else "")
    ref = parse_reference(text)
    assert ref.registry == "docker.io"
    assert ref.repository == ("/".join(path) if len(path) > 1 else f"library/{path[0]}")
    assert parse_reference(str(ref)) == ref


# -- property-based: the bundle reader --------------------------------------------------------------------


def _only_arcgap_errors(raw: bytes) -> dict[Digest, bytes] | None:
    """Read and verify ``raw``; None when refused. Any exception but an ArcgapError fails the test."""
    try:
        got = _read_all(raw)
        _verify(raw)
    except ArcgapError as exc:
        assert exc.exit_code in (ExitCode.INTEGRITY, ExitCode.BUNDLE_FORMAT), exc
        assert exc.message and "Traceback" not in exc.message
        return None
    return got


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048), st.sampled_from(["raw", "zstd-magic", "compressed", "after-yaml"]))
def test_arbitrary_bytes_are_refused_with_a_bundle_error(data: bytes, wrap: str) -> None:
    if wrap == "zstd-magic":
        data = b"\x28\xb5\x2f\xfd" + data
    elif wrap == "compressed":  # valid zstd, arbitrary tar
        data = _zst(data)
    elif wrap == "after-yaml":  # a valid arcgap.yaml member, then arbitrary bytes
        data = _zst(_tar(_members(TOC, DATA)[:1], trailer=b"") + data)
    assert _only_arcgap_errors(data) is None or data == GOOD


MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=600)),
    st.tuples(st.just("overwrite"), st.integers(0, 10**6), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("zero"), st.integers(0, 10**6), st.integers(1, 2048)),
)


def mutate(data: bytes, mutations: list[tuple[str, int, object]]) -> bytes:
    out = bytearray(data)
    for kind, where, arg in mutations:
        at = where % (len(out) + 1)
        if kind == "flip" and at < len(out):
            out[at] ^= int(arg)  # type: ignore[call-overload]
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = arg  # type: ignore[assignment]
        elif kind == "overwrite":
            out[at : at + len(arg)] = arg  # type: ignore[arg-type]
        elif kind == "zero":
            out[at : at + int(arg)] = bytes(len(out[at : at + int(arg)]))  # type: ignore[call-overload]
    return bytes(out)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MUTATIONS, min_size=1, max_size=4), st.booleans())
def test_mutated_bundles_are_read_whole_and_right_or_refused(mutations: list[tuple[str, int, object]],
                                                            inside: bool) -> None:
    """``inside``: mutate the tar and compress it again, so the damage passes zstd's checksum and reaches the
    tar parser, arcgap.yaml, the layout and the blobs; otherwise mutate the compressed file."""
    raw = _zst(mutate(TAR, mutations)) if inside else mutate(GOOD, mutations)
    got = _only_arcgap_errors(raw)
    if got is not None:  # accepted: then every blob is exactly what arcgap.yaml declares
        reader = BundleReader(io.BytesIO(raw), origin=ORIGIN)
        for entry in reader.toc.blobs:
            assert Digest.of(got[entry.digest]) == entry.digest and len(got[entry.digest]) == entry.size


def test_yaml_aliases_are_refused() -> None:
    """A "billion laughs" key in an otherwise valid arcgap.yaml: anchors and aliases are refused before anything
    is built (arcgap never writes them), with the line of the first anchor."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 9)]
    toc_yaml = TOC.to_yaml() + ("\n".join(lines) + "\n").encode()
    members = [(n, toc_yaml if n == TOC_NAME else d) for n, d in _members(TOC, DATA)]
    raw = _zst(_tar(members))
    with pytest.raises(BundleFormatError) as info:
        _read_all(raw)
    line = toc_yaml.decode().splitlines().index(lines[0]) + 1
    assert info.value.message == f"{ORIGIN}:{TOC_NAME}:{line}: refused: YAML anchors are not allowed"


def test_an_absurd_size_is_refused_and_never_reaches_the_progress_formatter() -> None:
    """10**400 as a blob size: refused by arcgap.yaml's range check (exit 8); the formatter copes anyway."""
    from arcgap.util.progress import human_bytes

    doc = TOC.to_dict()
    doc["blobs"][2]["size"] = 10**400
    with pytest.raises(BundleFormatError) as info:
        TableOfContents.from_yaml(json.dumps(doc).encode(), origin=TOC_NAME)
    assert "is out of range" in info.value.message
    assert human_bytes(10**400) == "more than 10**30 B" and human_bytes(2**50 * 3) == "3,072 TiB"
