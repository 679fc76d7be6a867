"""docker save → bundle conversion without an engine: a fake client serves docker 25's OCI-style save
(manifest.json last, compressed layer, config under blobs/) and a legacy save with a symlinked layer."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from arcgap.bundle.reader import open_bundle
from arcgap.dockerengine.save import DockerImage, docker_export
from arcgap.transfer.export import BundleOutput
from arcgap.util.progress import Reporter


def _tar(members: list[tuple[str, bytes | str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Api:
    def __init__(self, saves: dict[str, bytes]) -> None:
        self.saves = saves

    def get_image(self, name: str, chunk_size: int):  # noqa: ANN201
        data = self.saves[name]
        return (data[i:i + 1000] for i in range(0, len(data), 1000))


class _Client:
    def __init__(self, saves: dict[str, bytes]) -> None:
        self.api = _Api(saves)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_oci_style_and_legacy_saves_convert_to_a_verifiable_bundle(tmp_path: Path) -> None:
    layer = _tar([("hello.txt", b"hi\n")])
    gz = gzip.compress(layer, mtime=0)
    config = json.dumps({"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers",
                         "diff_ids": ["sha256:" + _sha(layer)]}}).encode()
    oci_save = _tar([
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        (f"blobs/sha256/{_sha(gz)}", gz),
        (f"blobs/sha256/{_sha(config)}", config),
        ("index.json", b'{"schemaVersion":2,"manifests":[]}'),
        ("manifest.json", json.dumps([{"Config": f"blobs/sha256/{_sha(config)}", "RepoTags": ["new:1"],
                                       "Layers": [f"blobs/sha256/{_sha(gz)}"]}]).encode()),
    ])
    config2 = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                          "diff_ids": ["sha256:" + _sha(layer)] * 2}}).encode()
    legacy_save = _tar([
        ("manifest.json", json.dumps([{"Config": f"{_sha(config2)}.json", "RepoTags": ["old:1"],
                                       "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]).encode()),
        (f"{_sha(config2)}.json", config2),
        ("bbb/layer.tar", "../aaa/layer.tar"),
        ("aaa/layer.tar", layer),
        ("repositories", b"{}"),
    ])
    out = tmp_path / "conv.tar.zst"
    result = docker_export(_Client({"new:1": oci_save, "old:1": legacy_save}),
                           [DockerImage("new", "1", "new:1", pull=False), DockerImage("old", "1", "old:1", pull=False)],
                           output=BundleOutput(out, threads=0), source_registry="local", source_repository="",
                           auth=None, reporter=Reporter(), created="2024-01-01T00:00:00Z")
    assert result.images == 2
    with open_bundle(out) as reader:
        toc = reader.toc
        got = {b.digest.hex: b for b in toc.blobs}
        for _entry, chunks in reader.blobs():  # every blob verifies
            for _ in chunks:
                pass
        assert "manifest.json" in reader.layout_files
    assert got[_sha(gz)].media_type.endswith("+gzip")
    assert got[_sha(layer)].media_type == "application/vnd.oci.image.layer.v1.tar"
    assert {i.platforms[0].platform for i in toc.images} == {"linux/arm64", "linux/amd64"}
    assert not list(tmp_path.glob(".conv.tar.zst.spool-*"))


def test_a_save_without_manifest_json_is_refused(tmp_path: Path) -> None:
    from arcgap.errors import UsageError

    save = _tar([("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", b"{}")])
    with pytest.raises(UsageError, match="OCI layout without manifest.json"):
        docker_export(_Client({"x:1": save}), [DockerImage("x", "1", "x:1", pull=False)],
                      output=BundleOutput(tmp_path / "x.zst", threads=0), source_registry="local",
                      source_repository="", auth=None, reporter=Reporter(), created="2024-01-01T00:00:00Z")
    assert list(tmp_path.iterdir()) == []


def test_the_same_saves_go_into_an_oci_layout_through_the_same_output_interface(tmp_path: Path) -> None:
    from arcgap.transfer.ocilayout import LayoutOutput

    layer = _tar([("a.txt", b"a\n")])
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    save = _tar([("manifest.json", json.dumps([{"Config": f"{_sha(config)}.json",
                                                "Layers": ["l/layer.tar"]}]).encode()),
                 (f"{_sha(config)}.json", config), ("l/layer.tar", layer)])
    out = tmp_path / "layout"
    result = docker_export(_Client({"x:1": save}), [DockerImage("x", "1", "x:1", pull=False)],
                           output=LayoutOutput(out), source_registry="local", source_repository="", auth=None,
                           reporter=Reporter(), created="2024-01-01T00:00:00Z")
    index = json.loads((out / "index.json").read_bytes())
    (entry,) = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "x:1"
    assert entry["digest"] == result.image_digests["x:1"]
    manifest = json.loads((out / "blobs" / "sha256" / entry["digest"].split(":", 1)[1]).read_bytes())
    assert manifest["config"]["digest"] == "sha256:" + _sha(config)  # the image ID survives
    for blob in (out / "blobs" / "sha256").iterdir():
        assert _sha(blob.read_bytes()) == blob.name
    assert not list(tmp_path.glob(".layout.spool-*"))


class _DistributionApi:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    def inspect_distribution(self, ref: str, auth_config: object = None) -> object:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class _Inspecting:
    def __init__(self, answer: object) -> None:
        self.api = _DistributionApi(answer)


def _engine_sink(client: object):  # noqa: ANN202
    from arcgap.bundle.format import TableOfContents
    from arcgap.dockerengine.load import EngineSink

    toc = TableOfContents(created="2026-01-01T00:00:00Z", source_registry="src", source_repository="", images=(),
                          blobs=())
    return EngineSink(client, toc, registry="reg:5000", repository="", tag=None, auth=None, platform="linux/amd64")


def test_the_engine_sinks_tag_check_names_a_tag_that_moved() -> None:
    from arcgap.bundle.format import ImageEntry
    from arcgap.errors import TargetMismatchError
    from arcgap.oci.digest import Digest
    from arcgap.transfer.plan import TargetImage
    from arcgap.transfer.publish import verify_tags

    pushed, other = Digest.parse("sha256:" + "a" * 64), Digest.parse("sha256:" + "b" * 64)
    entry = ImageEntry(name="x", tag="1", source="src/x:1", digest=Digest.parse("sha256:" + "c" * 64), size=2,
                       media_type="application/vnd.oci.image.manifest.v1+json", platforms=())
    target = TargetImage(entry, "reg:5000", "x", "1")
    sink = _engine_sink(_Inspecting({"Descriptor": {"digest": str(pushed)}}))
    verify_tags(sink, [target], jobs=1, rewritten={target.reference: pushed})  # what the push said is there
    with pytest.raises(TargetMismatchError, match=f"reg:5000/x:1 resolves to {pushed} after the push"):
        verify_tags(sink, [target], jobs=1)  # the bundle's own digest expected: the engine rewrote it
    sink = _engine_sink(_Inspecting({"Descriptor": {"digest": str(other)}}))
    with pytest.raises(TargetMismatchError, match=f"resolves to {other} after the push, expected {pushed}"):
        verify_tags(sink, [target], jobs=1, rewritten={target.reference: pushed})


def test_the_engine_sink_takes_an_unanswered_question_as_absent_only_before_its_push() -> None:
    from arcgap.errors import ArcgapError
    from arcgap.oci.digest import Digest

    pushed = Digest.parse("sha256:" + "a" * 64)
    sink = _engine_sink(_Inspecting(RuntimeError("manifest unknown")))
    assert sink.head_manifest("x", "1") is None  # before the push: the push will tell
    sink._pushed["reg:5000/x:1"] = pushed  # as put_manifest(tag) records it
    with pytest.raises(ArcgapError, match="re-reading reg:5000/x:1 through the engine"):
        sink.head_manifest("x", "1")
    sink = _engine_sink(_Inspecting({}))
    sink._pushed["reg:5000/x:1"] = pushed
    with pytest.raises(ArcgapError, match="re-reading"):
        sink.head_manifest("x", "1")
