"""Splitting for removable media: --split-size parsing, the parts sink and reader, the sidecar, end to end."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from arcgap.bundle.diskspace import check_free_space, estimate_bundle_bytes
from arcgap.bundle.format import TOC_NAME
from arcgap.bundle.parts import BundleIdentity, PartEntry, PartsIndex, parse_size, split_part_name
from arcgap.bundle.partsink import PartSink
from arcgap.bundle.partstream import PartFile, PartSet, PartStream, check_present, locate
from arcgap.bundle.reader import open_bundle
from arcgap.bundle.writer import BundleWriter
from arcgap.cli.hints import words
from arcgap.errors import BundleFormatError, ExitCode, IntegrityError, LocalIOError, UsageError
from arcgap.util.progress import human_bytes
from devtools.registries import Registry
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, flip_byte, oracle_digest, source_args, target_args
from tests.test_bundle_rw import CONTENT
from tests.test_e2e_roundtrip import ROLES, clean_env  # noqa: F401 (autouse fixture)

SPLIT = "4KiB"  # the small set (~17 KiB) in 5 parts; the same code path as fat32
SPLIT_BYTES = 4 * 1024
SIZE_HINT = ("hint: give fat32 (4 GiB − 1 byte), dvd (4.7 GB), bd25 (25 GB), or a number with a unit: KB, MB, GB, "
             "TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. 700MB or 4GiB")

# -- parse_size ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fat32", 4_294_967_295),
        ("FAT32", 4_294_967_295),
        ("dvd", 4_700_000_000),
        ("bd25", 25_000_000_000),
        ("4GB", 4_000_000_000),
        ("4GiB", 4_294_967_296),
        ("4 GiB", 4_294_967_296),
        ("4gib", 4_294_967_296),
        ("4.7GB", 4_700_000_000),
        ("700MB", 700_000_000),
        ("700MiB", 734_003_200),
        ("7KiB", 7168),
        ("100KB", 100_000),
        ("1.5KiB", 1536),
        ("1TB", 10**12),
        ("2TiB", 2 * 2**40),
        ("512B", 512),
        ("0.5KB", 500),
        ("1.0009KB", 1000),  # rounded down: a part never exceeds what was asked
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4096", "--split-size 4096: a bare number is ambiguous (bytes? MB? MiB?)"),
        ("4.7", "--split-size 4.7: a bare number is ambiguous (bytes? MB? MiB?)"),
        ("4G", "--split-size 4G: unknown unit 'G'"),
        ("4GBytes", "--split-size 4GBytes: unknown unit 'GBytes'"),
        ("cdrom", "--split-size 'cdrom' is not a size"),
        ("", "--split-size '' is not a size"),
        ("-1GB", "--split-size '-1GB' is not a size"),
        ("4,7GB", "--split-size '4,7GB' is not a size"),
        ("1e9", "--split-size '1e9' is not a size"),
        ("0KB", "--split-size 0KB: a part must hold at least one byte"),
        ("0.0001KB", "--split-size 0.0001KB: a part must hold at least one byte"),
    ],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_size(text)
    assert words(info.value.message) == message
    assert f"hint: {info.value.hint}" == SIZE_HINT
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.tar.zst.001", ("a.tar.zst", 1)), ("a.tar.zst.1000", ("a.tar.zst", 1000)), ("a.tar.zst", None),
     ("a.01", None), (".001", None), ("a.tar.zst.parts.yaml", None)],
)
def test_split_part_name(name: str, expected: tuple[str, int] | None) -> None:
    assert split_part_name(name) == expected


# -- the sidecar -----------------------------------------------------------------------------------------

IDENTITY = BundleIdentity(manifest_sha256="ab" * 32, format_version=1, arcgap_version="0.1.0",
                          created="2024-04-09T10:00:00Z", images=2, blobs=9, content_bytes=12345)


def _index(data: bytes, split: int | None, name: str = "b.tar.zst") -> PartsIndex:
    pieces = [data[i : i + split] for i in range(0, len(data), split)] if split else [data]
    parts = tuple(
        PartEntry(f"{name}.{n:03d}" if split else name, len(p), hashlib.sha256(p).hexdigest())
        for n, p in enumerate(pieces, 1)
    )
    return PartsIndex(name, IDENTITY, parts, len(data), hashlib.sha256(data).hexdigest(), split)


def test_sidecar_round_trip() -> None:
    index = _index(bytes(range(256)) * 10, 1000)
    text = index.to_yaml()
    assert text.startswith(b"# arcgap: 3 parts of b.tar.zst; check them with 'arcgap verify b.tar.zst.parts.yaml'")
    assert PartsIndex.from_yaml(text, origin="x") == index
    doc = yaml.safe_load(text)
    assert doc["parts"][0] == {"name": "b.tar.zst.001", "size": 1000, "sha256": index.parts[0].sha256}
    assert doc["total"] == {"size": 2560, "sha256": hashlib.sha256(bytes(range(256)) * 10).hexdigest()}
    assert doc["bundle"]["manifest_sha256"] == "ab" * 32
    unsplit = _index(b"whole", None)
    assert PartsIndex.from_yaml(unsplit.to_yaml(), origin="x") == unsplit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["parts"][1].update(name="../../etc/passwd"),
         "s.parts.yaml: parts[1].name is '../../etc/passwd', expected 'b.tar.zst.002'"),
        (lambda d: d["bundle"].update(name="../b"), "s.parts.yaml: bundle.name '../b' is not a plain file name"),
        (lambda d: d["parts"][0].update(size=5000), "s.parts.yaml: parts[0]: 5000 bytes, more than split_bytes 1000"),
        (lambda d: d["parts"][0].update(sha256="XYZ"), "s.parts.yaml: parts[0].sha256: not a sha256 hex digest"),
        (lambda d: d["total"].update(size=1), "s.parts.yaml: total.size is not the sum of the parts' sizes"),
        (lambda d: d.update(parts=[]), "s.parts.yaml: parts: empty"),
        (lambda d: d.update(format="other"), "s.parts.yaml: not an arcgap parts file"),
    ],
)
def test_hostile_sidecar_refused(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(_index(bytes(2560), 1000).to_yaml())
    edit(doc)
    with pytest.raises(BundleFormatError) as info:
        PartsIndex.from_yaml(yaml.safe_dump(doc).encode(), origin="s.parts.yaml")
    assert info.value.message == message
    assert info.value.exit_code == ExitCode.BUNDLE_FORMAT


def test_malformed_sidecar_names_the_line() -> None:
    with pytest.raises(BundleFormatError) as info:
        PartsIndex.from_yaml(b"format: arcgap-parts\nparts: [\n  {name: x\n", origin="s.parts.yaml")
    assert info.value.message.startswith("s.parts.yaml:4: not valid YAML")


# -- the part reader, in memory --------------------------------------------------------------------------

DATA = hashlib.shake_256(b"parts").digest(2500)
DIR = Path("media")


def _memory(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    def opener(path: Path) -> io.BytesIO:
        if path.name not in files:
            raise FileNotFoundError(path)
        return io.BytesIO(files[path.name])

    return opener


def _set(index: PartsIndex) -> PartSet:
    files = tuple(PartFile(DIR / p.name, n, p.size, p.sha256) for n, p in enumerate(index.parts, 1))
    return PartSet(files, base=DIR / index.bundle_name, split=index.split_bytes is not None, index=index,
                   sidecar=DIR / index.file_name)


def _pieces(stream: PartStream, n: int = 300) -> Iterator[bytes]:
    while data := stream.read(n):
        yield data


def test_part_stream_reads_the_parts_as_one_stream_and_checks_each() -> None:
    index = _index(DATA, 1000)
    files = {p.name: DATA[i * 1000 : (i + 1) * 1000] for i, p in enumerate(index.parts)}
    stream = PartStream(_set(index), opener=_memory(files))
    assert b"".join(_pieces(stream)) == DATA
    assert stream.complete and stream.parts_checked == 3
    assert stream.read(10) == b""


def test_part_stream_names_a_corrupt_part_before_handing_on_the_next() -> None:
    index = _index(DATA, 1000)
    files = {p.name: DATA[i * 1000 : (i + 1) * 1000] for i, p in enumerate(index.parts)}
    files["b.tar.zst.002"] = files["b.tar.zst.002"][:500] + b"X" + files["b.tar.zst.002"][501:]
    stream = PartStream(_set(index), opener=_memory(files))
    got = bytearray()
    with pytest.raises(IntegrityError) as info:
        for piece in _pieces(stream, 300):
            got += piece
    assert len(got) < 2000  # nothing of part 3 was handed on
    assert info.value.message == "part 2 of 3, media/b.tar.zst.002: sha256 mismatch — copy it again"
    assert info.value.hint == (f"the original is 1000 bytes with sha256 {index.parts[1].sha256}; "
                               "check the copy with 'arcgap verify media/b.tar.zst.parts.yaml'")
    assert stream.failure is info.value


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.update({"b.tar.zst.003": f["b.tar.zst.003"][:100]}),
         "part 3 of 3, media/b.tar.zst.003: truncated: 100 of 500 bytes — copy it again"),
        (lambda f: f.update({"b.tar.zst.001": f["b.tar.zst.001"] + b"extra"}),
         "part 1 of 3, media/b.tar.zst.001: longer than the 1000 bytes listed — copy it again"),
        (lambda f: f.pop("b.tar.zst.002"), "part 2 of 3, media/b.tar.zst.002: missing — copy it again"),
    ],
)
def test_part_stream_size_problems(damage, message: str) -> None:  # type: ignore[no-untyped-def]
    index = _index(DATA, 1000)
    files = {p.name: DATA[i * 1000 : (i + 1) * 1000] for i, p in enumerate(index.parts)}
    damage(files)
    with pytest.raises(IntegrityError) as info:
        b"".join(_pieces(PartStream(_set(index), opener=_memory(files))))
    assert info.value.message == message


def test_blame_reads_the_rest_of_the_part_to_name_it() -> None:
    index = _index(DATA, 1000)
    files = {p.name: DATA[i * 1000 : (i + 1) * 1000] for i, p in enumerate(index.parts)}
    files["b.tar.zst.001"] = b"Y" + files["b.tar.zst.001"][1:]
    stream = PartStream(_set(index), opener=_memory(files))
    assert stream.read(10)  # the layer above finds damage here, long before the part ends
    with pytest.raises(IntegrityError) as info:
        stream.blame()
    assert info.value.message == "part 1 of 3, media/b.tar.zst.001: sha256 mismatch — copy it again"
    intact = PartStream(_set(index), opener=_memory({p.name: DATA[i * 1000 : (i + 1) * 1000]
                                                     for i, p in enumerate(index.parts)}))
    intact.read(10)
    intact.blame()  # an intact part: nothing to blame, the caller's error stands


def test_without_part_hashing_blame_finds_damage_in_a_part_already_passed() -> None:
    index = _index(DATA, 1000)
    intact = {p.name: DATA[i * 1000 : (i + 1) * 1000] for i, p in enumerate(index.parts)}
    files = dict(intact, **{"b.tar.zst.001": intact["b.tar.zst.001"][:999] + b"Z"})
    stream = PartStream(_set(index), opener=_memory(files), hash_parts=False)
    got = stream.read(1000) + stream.read(300)  # sizes still checked; the damage is not seen here
    assert len(got) == 1300 and stream.parts_checked == 1
    with pytest.raises(IntegrityError) as info:
        stream.blame()  # the layer above found the damage after part 2 had begun
    assert info.value.message == "part 1 of 3, media/b.tar.zst.001: sha256 mismatch — copy it again"
    clean = PartStream(_set(index), opener=_memory(intact), hash_parts=False)
    assert b"".join(_pieces(clean)) == DATA
    clean.blame()  # every part intact: the caller's error stands


def test_without_part_hashing_sizes_are_still_checked() -> None:
    index = _index(DATA, 1000)
    files = {p.name: DATA[i * 1000 : (i + 1) * 1000] for i, p in enumerate(index.parts)}
    files["b.tar.zst.002"] = files["b.tar.zst.002"][:10]
    with pytest.raises(IntegrityError) as info:
        b"".join(_pieces(PartStream(_set(index), opener=_memory(files), hash_parts=False)))
    assert info.value.message == "part 2 of 3, media/b.tar.zst.002: truncated: 10 of 1000 bytes — copy it again"


def test_sibling_parts_without_sidecar_are_concatenated_unchecked() -> None:
    files = {"b.tar.zst.001": DATA[:1000], "b.tar.zst.002": DATA[1000:]}
    parts = PartSet((PartFile(DIR / "b.tar.zst.001", 1), PartFile(DIR / "b.tar.zst.002", 2)), base=DIR / "b.tar.zst",
                    split=True, count_known=False)
    stream = PartStream(parts, opener=_memory(files))
    assert stream.read() == DATA
    assert stream.parts_checked == 0
    assert parts.origin == "media/b.tar.zst (2 parts)"


# -- finding the parts on disk ---------------------------------------------------------------------------


def _write_parts(directory: Path, data: bytes = DATA, split: int = 1000, sidecar: bool = True) -> PartsIndex:
    index = _index(data, split)
    for n, part in enumerate(index.parts):
        (directory / part.name).write_bytes(data[n * split : (n + 1) * split])
    if sidecar:
        (directory / index.file_name).write_bytes(index.to_yaml())
    return index


@pytest.mark.parametrize("given", ["b.tar.zst.parts.yaml", "b.tar.zst.002", "b.tar.zst.003", "b.tar.zst"])
def test_locate_from_sidecar_part_or_name(tmp_path: Path, given: str) -> None:
    index = _write_parts(tmp_path)
    found = locate(tmp_path / given)
    assert found.index == index and found.sidecar == tmp_path / "b.tar.zst.parts.yaml"
    assert [f.path.name for f in found.files] == ["b.tar.zst.001", "b.tar.zst.002", "b.tar.zst.003"]
    check_present(found)


def test_locate_siblings_without_sidecar(tmp_path: Path) -> None:
    _write_parts(tmp_path, sidecar=False)
    (tmp_path / "b.tar.zst.002.partial").write_bytes(b"junk")  # not a part
    found = locate(tmp_path / "b.tar.zst.002")
    assert found.index is None and not found.count_known
    assert [f.number for f in found.files] == [1, 2, 3]
    (tmp_path / "b.tar.zst.002").unlink()
    found = locate(tmp_path / "b.tar.zst.003")
    with pytest.raises(IntegrityError) as info:
        check_present(found)
    assert info.value.message == f"part 2 of at least 3, {tmp_path}/b.tar.zst.002: missing — copy it again"
    assert info.value.hint == ("copy b.tar.zst.parts.yaml along with the parts: with it, arcgap checks each part's "
                               "size and sha256")


def test_check_present_names_the_first_problem_and_counts_the_rest(tmp_path: Path) -> None:
    index = _write_parts(tmp_path, data=DATA * 2)  # 5 parts
    (tmp_path / "b.tar.zst.002").unlink()
    (tmp_path / "b.tar.zst.004").write_bytes(b"short")
    with pytest.raises(IntegrityError) as info:
        check_present(locate(tmp_path / "b.tar.zst.parts.yaml"))
    assert info.value.message == f"part 2 of 5, {tmp_path}/b.tar.zst.002: missing — copy it again"
    assert info.value.hint == (f"1 more part is missing or damaged too; the original is 1000 bytes with sha256 "
                               f"{index.parts[1].sha256}; check the copy with "
                               f"'arcgap verify {tmp_path}/b.tar.zst.parts.yaml'")


def test_stale_sidecar_that_does_not_list_the_given_part(tmp_path: Path) -> None:
    _write_parts(tmp_path)
    (tmp_path / "b.tar.zst.009").write_bytes(b"x")
    with pytest.raises(BundleFormatError) as info:
        locate(tmp_path / "b.tar.zst.009")
    assert info.value.message == f"{tmp_path}/b.tar.zst.parts.yaml does not list b.tar.zst.009"


def test_unsplit_bundle_named_like_a_part_is_read_as_a_bundle(tmp_path: Path) -> None:
    path = tmp_path / "release.2024"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"rest")
    found = locate(path)
    assert not found.split and [f.path for f in found.files] == [path]


def test_a_part_that_happens_to_start_like_a_bundle_is_still_a_part(tmp_path: Path) -> None:
    data = DATA[:1000] + b"\x28\xb5\x2f\xfd" + DATA[1004:]  # part 2 begins with the zstd magic
    _write_parts(tmp_path, data=data)
    assert len(locate(tmp_path / "b.tar.zst.002").files) == 3
    (tmp_path / "b.tar.zst.parts.yaml").unlink()
    assert not locate(tmp_path / "b.tar.zst.002").split  # no sidecar: taken for an unsplit bundle's name
    assert [f.number for f in locate(tmp_path / "b.tar.zst").files] == [1, 2, 3]  # the name: its siblings


def test_missing_everything(tmp_path: Path) -> None:
    with pytest.raises(LocalIOError) as info:
        locate(tmp_path / "nope.tar.zst.003")
    assert info.value.message == f"{tmp_path}/nope.tar.zst.003: no such file"


# -- the writer's sink -------------------------------------------------------------------------------------


def test_sink_rotates_hashes_and_renames_at_the_end(tmp_path: Path) -> None:
    sink = PartSink(tmp_path / "b.tar.zst", split_bytes=1000)
    sink.open()
    for i in range(0, len(DATA), 333):
        sink.write(DATA[i : i + 333])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"b.tar.zst.00{n}.partial" for n in (1, 2, 3)]
    index = sink.finish(IDENTITY)
    assert index == _index(DATA, 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "b.tar.zst.001", "b.tar.zst.002", "b.tar.zst.003", "b.tar.zst.parts.yaml"]
    assert b"".join((tmp_path / f"b.tar.zst.00{n}").read_bytes() for n in (1, 2, 3)) == DATA


def test_sink_writes_each_part_past_the_page_cache_where_the_filesystem_allows(tmp_path: Path) -> None:
    sink = PartSink(tmp_path / "b", split_bytes=2500)
    sink.open()
    modes = []
    for n in range(20):
        sink.write(bytes([n]) * 300)
        assert sink._fh is not None
        modes.append(sink._fh.direct)
    sink.finish(IDENTITY)
    assert [p.stat().st_size for p in sorted(tmp_path.glob("b.00?"))] == [2500, 2500, 1000]
    assert b"".join(p.read_bytes() for p in sorted(tmp_path.glob("b.00?"))) == b"".join(
        bytes([n]) * 300 for n in range(20))
    if not any(modes):
        pytest.skip(f"{tmp_path}: this filesystem refuses O_DIRECT (the sink wrote through the page cache)")
    assert modes[0] is True  # until the unaligned tail of a part, no byte went through the page cache


def test_sink_exact_multiple_leaves_no_empty_part(tmp_path: Path) -> None:
    sink = PartSink(tmp_path / "b", split_bytes=500)
    sink.open()
    sink.write(DATA[:2000])
    assert [e.size for e in sink.finish(IDENTITY).parts] == [500, 500, 500, 500]  # type: ignore[union-attr]


def test_sink_abort_removes_every_part(tmp_path: Path) -> None:
    sink = PartSink(tmp_path / "b", split_bytes=500)
    sink.open()
    sink.write(DATA)
    sink.abort()
    sink.write(b"discarded")
    assert list(tmp_path.iterdir()) == []


def _write_content(path: Path, *, split: int | None, overwrite: bool = False) -> BundleWriter:
    with BundleWriter(path, split_bytes=split, overwrite=overwrite, threads=0) as writer:
        for name, data in CONTENT.members():
            writer.add_bytes(name, data)
        writer.commit()
    return writer


def test_split_bundle_reads_back_from_sidecar_and_part(tmp_path: Path) -> None:
    whole = _write_content(tmp_path / "one" / "b.tar.zst", split=None)
    split = _write_content(tmp_path / "split" / "b.tar.zst", split=1000)
    assert len(split.parts) > 3 and all(p.stat().st_size <= 1000 for p in split.parts)
    assert b"".join(p.read_bytes() for p in split.parts) == whole.parts[0].read_bytes()
    assert whole.sidecar == tmp_path / "one" / "b.tar.zst.parts.yaml"
    assert whole.index is not None and whole.index.identity.manifest_sha256 == hashlib.sha256(
        CONTENT.manifest.to_yaml()).hexdigest()
    for given in (split.sidecar, split.parts[2], tmp_path / "split" / "b.tar.zst", whole.parts[0], whole.sidecar):
        assert given is not None
        with open_bundle(given) as reader:
            got = {e.digest: b"".join(chunks) for e, chunks in reader.blobs()}
        assert got == CONTENT.data


def test_sidecar_of_another_bundle_is_refused(tmp_path: Path) -> None:
    _write_content(tmp_path / "b.tar.zst", split=1000)
    other = tmp_path / "o"
    other.mkdir()
    with BundleWriter(other / "b.tar.zst", split_bytes=1000, threads=0) as writer:
        writer.add_bytes(TOC_NAME, CONTENT.manifest.to_yaml().replace(b"10:00:00Z", b"11:00:00Z"))
        writer.commit()
    stale = yaml.safe_load((other / "b.tar.zst.parts.yaml").read_bytes())
    real = yaml.safe_load((tmp_path / "b.tar.zst.parts.yaml").read_bytes())
    real["bundle"] = stale["bundle"]  # the parts' sizes and sha256 are right, the identity is not
    (tmp_path / "b.tar.zst.parts.yaml").write_text(yaml.safe_dump(real))
    with pytest.raises(IntegrityError) as info, open_bundle(tmp_path / "b.tar.zst.parts.yaml"):
        pass
    assert info.value.message == (f"{tmp_path}/b.tar.zst.parts.yaml describes another bundle (created "
                                  f"2024-04-09T11:00:00Z) than {tmp_path}/b.tar.zst.001 holds (created "
                                  "2024-04-09T10:00:00Z)")


@pytest.mark.parametrize(("first", "second"), [(1000, None), (None, 1000), (500, 2000)])
def test_overwrite_removes_the_other_shapes_leftovers(tmp_path: Path, first: int | None, second: int | None) -> None:
    _write_content(tmp_path / "b.tar.zst", split=first)
    with pytest.raises(LocalIOError) as info:
        _write_content(tmp_path / "b.tar.zst", split=second)
    assert info.value.message.endswith(" already exists")
    writer = _write_content(tmp_path / "b.tar.zst", split=second, overwrite=True)
    assert sorted(tmp_path.iterdir()) == sorted([*writer.parts, tmp_path / "b.tar.zst.parts.yaml"])
    with open_bundle(writer.parts[-1]) as reader:
        assert {e.digest: b"".join(c) for e, c in reader.blobs()} == CONTENT.data


# -- free space ------------------------------------------------------------------------------------------


def test_estimate_covers_the_bundle(tmp_path: Path) -> None:
    writer = _write_content(tmp_path / "b.tar.zst", split=None)
    assert estimate_bundle_bytes(CONTENT.manifest) >= writer.compressed_bytes
    assert estimate_bundle_bytes(CONTENT.manifest) >= CONTENT.manifest.total_bytes


def test_free_space_refused(tmp_path: Path) -> None:
    asked: list[Path] = []

    def usage(path: Path) -> object:
        asked.append(path)
        return shutil._ntuple_diskusage(10, 10, 2048)  # type: ignore[attr-defined]

    with pytest.raises(LocalIOError) as info:
        check_free_space(tmp_path / "new" / "dir", 5 * 1024 * 1024, usage=usage)
    assert asked == [tmp_path]  # the nearest existing parent is the one asked
    assert info.value.message == (f"not enough free space in {tmp_path}: the bundle needs about 5.0 MiB "
                                  "(5242880 bytes), 2.0 KiB (2048 bytes) available")
    assert words(info.value.hint) == "free space or choose another --output location; --no-space-check writes anyway"
    assert info.value.exit_code == ExitCode.LOCAL_IO
    check_free_space(tmp_path, 2048)


# -- end to end ------------------------------------------------------------------------------------------


def _export(directory: Path, synth: SmallSet, *extra: str) -> Path:
    from tests.e2e_helpers import run

    out = directory / "small.tar.zst"
    names = [synth[r].repository.split("/", 1)[1] for r in ROLES]
    code = run(["export", *names, *source_args(synth.registry), "--source-repository", "synth",
                "--source-tag", "v1", "-o", str(out), "-q", *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, synth_small: SmallSet) -> tuple[Path, Path]:
    """(unsplit bundle, split bundle's name), exported once with a pinned creation time."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
        for key in ("REGISTRY", "REPOSITORY", "USERNAME", "PASSWORD", "TAG", "CA_FILE"):
            mp.delenv(f"SOURCE_DOCKER_{key}", raising=False)
        whole = _export(tmp_path_factory.mktemp("whole"), synth_small)
        split = _export(tmp_path_factory.mktemp("split"), synth_small, "--split-size", SPLIT)
    return whole, split


def _parts(base: Path) -> list[Path]:
    return sorted(base.parent.glob(base.name + ".[0-9][0-9][0-9]"))


@pytest.fixture
def copied(exports: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the split bundle's directory ("the USB stick"), free to damage."""
    shutil.copytree(exports[1].parent, tmp_path / "stick")
    return tmp_path / "stick" / exports[1].name


def no_tags(target: Registry) -> bool:
    client = target.raw_client()
    try:
        return all(client.list_tags(repo) == [] for repo in client.catalog())
    finally:
        client.close()


def test_split_export_parts_fit_and_join_to_the_unsplit_bundle(exports: tuple[Path, Path]) -> None:
    whole, split = exports
    parts = _parts(split)
    assert len(parts) == 5, [p.stat().st_size for p in parts]
    assert all(p.stat().st_size <= SPLIT_BYTES for p in parts)
    assert all(p.stat().st_size == SPLIT_BYTES for p in parts[:-1])
    assert b"".join(p.read_bytes() for p in parts) == whole.read_bytes()  # one stream, cut at byte boundaries
    assert not split.exists() and not list(split.parent.glob("*.partial"))
    doc = yaml.safe_load(split.with_name("small.tar.zst.parts.yaml").read_text())
    assert doc["split_bytes"] == SPLIT_BYTES
    assert doc["parts"] == [{"name": p.name, "size": p.stat().st_size,
                             "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in parts]
    assert doc["total"] == {"size": whole.stat().st_size, "sha256": hashlib.sha256(whole.read_bytes()).hexdigest()}
    with open_bundle(whole) as reader:
        manifest_sha256 = hashlib.sha256(reader.toc_bytes).hexdigest()
        assert doc["bundle"]["images"] == len(reader.toc.images) == len(ROLES)
    assert doc["bundle"]["manifest_sha256"] == manifest_sha256
    assert doc["bundle"]["created"] == "2023-11-14T22:13:20Z"
    one = yaml.safe_load(whole.with_name("small.tar.zst.parts.yaml").read_text())  # unsplit: a sidecar too
    assert one["split_bytes"] is None and one["parts"] == [{"name": "small.tar.zst", "size": whole.stat().st_size,
                                                            "sha256": doc["total"]["sha256"]}]
    assert one["bundle"] == doc["bundle"]


def test_import_from_sidecar_and_from_a_middle_part_keeps_every_digest(
    capsys: pytest.CaptureFixture[str], exports: tuple[Path, Path], synth_small: SmallSet, fresh_registry
) -> None:
    split = exports[1]
    parts = _parts(split)
    target: Registry = fresh_registry()
    for given, repo in ((split.with_name("small.tar.zst.parts.yaml"), "viasidecar"), (parts[2], "viapart")):
        res = arcgap(capsys, "import", str(given), *target_args(target), "--target-repository", repo, "-q")
        assert res.code == 0, res.err
        for role in ROLES:
            info = synth_small[role]
            assert oracle_digest(target, f"{repo}/{info.repository.split('/', 1)[1]}", "v1") == info.digest
    res = arcgap(capsys, "verify", str(parts[1]), "-q")
    assert res.code == 0, res.err
    assert res.out.strip().endswith(f"; all {len(parts)} parts match small.tar.zst.parts.yaml")
    res = arcgap(capsys, "inspect", str(split.with_name("small.tar.zst.parts.yaml")))
    assert res.code == 0 and f"in {len(parts)} parts: small.tar.zst.001 … {parts[-1].name}" in res.out


def test_verify_unsplit_with_its_sidecar(capsys: pytest.CaptureFixture[str], exports: tuple[Path, Path]) -> None:
    res = arcgap(capsys, "verify", str(exports[0]), "-q")
    assert res.code == 0, res.err
    assert res.out.strip().endswith("; size and sha256 match small.tar.zst.parts.yaml")


def test_missing_part_is_named_before_anything_is_pushed(
    capsys: pytest.CaptureFixture[str], copied: Path, fresh_registry
) -> None:
    parts = _parts(copied)
    sidecar = copied.with_name("small.tar.zst.parts.yaml")
    sha = hashlib.sha256(parts[1].read_bytes()).hexdigest()
    parts[1].unlink()
    target: Registry = fresh_registry()
    for given in (sidecar, parts[0], parts[-1]):
        res = arcgap(capsys, "import", str(given), *target_args(target), "--target-repository", "arc")
        assert res.code == 7, res.err
        assert res.error_lines == [
            f"error: part 2 of {len(parts)}, {parts[1]}: missing — copy it again",
            f"hint: the original is {SPLIT_BYTES} bytes with sha256 {sha}; check the copy with "
            f"'arcgap verify {sidecar}'",
        ]
    assert target.raw_client().catalog() == []  # checked up front: not one blob went out
    sidecar.unlink()  # without the sidecar: the gap between the siblings is still named
    res = arcgap(capsys, "import", str(parts[2]), *target_args(target), "--target-repository", "arc")
    assert res.code == 7, res.err
    assert res.error_lines == [
        f"error: part 2 of at least {len(parts)}, {parts[1]}: missing — copy it again",
        "hint: copy small.tar.zst.parts.yaml along with the parts: with it, arcgap checks each part's size and sha256",
    ]
    assert no_tags(target)


def test_truncated_part_is_named_before_anything_is_pushed(
    capsys: pytest.CaptureFixture[str], copied: Path, fresh_registry
) -> None:
    parts = _parts(copied)
    sha = hashlib.sha256(parts[2].read_bytes()).hexdigest()
    with parts[2].open("r+b") as fh:
        fh.truncate(3000)
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(parts[0]), *target_args(target), "--target-repository", "arc")
    assert res.code == 7, res.err
    sidecar = copied.with_name("small.tar.zst.parts.yaml")
    assert res.error_lines == [
        f"error: part 3 of {len(parts)}, {parts[2]}: truncated: 3000 of {SPLIT_BYTES} bytes — copy it again",
        f"hint: the original is {SPLIT_BYTES} bytes with sha256 {sha}; check the copy with 'arcgap verify {sidecar}'",
    ]
    assert target.raw_client().catalog() == []


@pytest.mark.parametrize("offset", [100, 2500, SPLIT_BYTES - 1])
def test_corrupt_part_is_named_and_no_tag_moves(
    capsys: pytest.CaptureFixture[str], copied: Path, fresh_registry, offset: int
) -> None:
    parts = _parts(copied)
    sha = hashlib.sha256(parts[1].read_bytes()).hexdigest()
    flip_byte(parts[1], offset)
    sidecar = copied.with_name("small.tar.zst.parts.yaml")
    expected = [
        f"error: part 2 of {len(parts)}, {parts[1]}: sha256 mismatch — copy it again",
        f"hint: the original is {SPLIT_BYTES} bytes with sha256 {sha}; check the copy with 'arcgap verify {sidecar}'",
    ]
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(sidecar), *target_args(target), "--target-repository", "arc")
    assert res.code == 7, res.err
    assert res.error_lines == expected
    assert no_tags(target)
    res = arcgap(capsys, "verify", str(parts[3]))
    assert (res.code, res.error_lines) == (7, expected)


def test_split_size_without_unit_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    res = arcgap(capsys, "export", "x", "--source-registry", "127.0.0.1:9", "--split-size", "4096")
    assert res.code == 2
    assert res.error_lines == ["error: --split-size 4096: a bare number is ambiguous (bytes? MB? MiB?)", SIZE_HINT]


def test_export_refuses_without_free_space(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    exports: tuple[Path, Path],
) -> None:
    with open_bundle(exports[0]) as reader:
        needed = estimate_bundle_bytes(reader.toc)
    monkeypatch.setattr("arcgap.bundle.diskspace.shutil.disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 4096))
    out = tmp_path / "out"
    names = [synth_small[r].repository.split("/", 1)[1] for r in ROLES]
    args = ["export", *names, *source_args(synth_small.registry), "--source-repository", "synth",
            "--source-tag", "v1", "-o", str(out / "s.tar.zst"), "--split-size", SPLIT, "-q"]
    res = arcgap(capsys, *args)
    assert res.code == 9, res.err
    assert res.error_lines == [
        f"error: not enough free space in {tmp_path}: the bundle needs about {human_bytes(needed)} ({needed} "
        "bytes), 4.0 KiB (4096 bytes) available",
        "hint: free space or choose another --output location; --no-space-check writes anyway",
    ]
    assert not out.exists()
    res = arcgap(capsys, *args, "--no-space-check")
    assert res.code == 0, res.err
    assert " parts: s.tar.zst.001 … s.tar.zst.0" in res.out


def test_disk_full_while_writing_parts_removes_them_all(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path
) -> None:
    small = tmp_path / "tiny"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = small / "b.tar.zst"
        names = [synth_small[r].repository.split("/", 1)[1] for r in ROLES]
        res = arcgap(capsys, "export", *names, *source_args(synth_small.registry), "--source-repository", "synth",
                     "--source-tag", "v1", "-o", str(out), "--split-size", "4KiB", "--no-space-check")
        assert res.code == 9, res.err
        assert res.error_lines[0].startswith(f"error: disk full while writing {out}.00")
        assert res.error_lines[0].endswith("; the partial files were removed")
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_bundle_name_too_long_for_its_derived_names_is_refused_before_writing(tmp_path: Path) -> None:
    """250 bytes is a valid file name, but NAME.parts.yaml.partial is not: a clear error, nothing written."""
    from arcgap.bundle.writer import BundleWriter
    from arcgap.cli.hints import words
    from arcgap.errors import UsageError

    path = tmp_path / ("a" * 242 + ".tar.zst")
    with pytest.raises(UsageError) as caught, BundleWriter(path, level=1, threads=0, overwrite=False):
        pass
    assert "too long for this file system" in caught.value.message
    assert words(caught.value.hint).startswith("choose a shorter --output (at most 236 bytes)")
    assert list(tmp_path.iterdir()) == []
