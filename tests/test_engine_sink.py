"""The Docker Engine as a sink of the one copy routine, against a fake engine API that reads the upload as dockerd
does (a tar, unpacked whole before anything is loaded) and pushes with a digest of its own.

The real engine is in tests/test_e2e_engine.py; here the order of events and the cut upload are checked exactly.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from arcgap.dockerengine.load import EngineSink
from arcgap.errors import IntegrityError
from arcgap.oci.digest import Digest, Verifier, verified_chunks
from arcgap.transfer.engine import CopyOptions, copy_images
from arcgap.transfer.source import Meter
from arcgap.transfer.tally import ImportResult
from arcgap.util.progress import Reporter
from tests.test_engine import REGISTRY, FakeSource, _release


class FakeEngineApi:
    """``load_image`` reads the whole tar (dockerd unpacks it all before loading), ``push`` answers with the digest
    of the manifest it rewrote, ``inspect_distribution`` says what the target holds."""

    def __init__(self, *, at_target: dict[str, str] | None = None) -> None:
        self.members: dict[str, bytes] = {}
        self.events: list[str] = []
        self.loaded: list[str] = []
        self.at_target = dict(at_target or {})  # reference → digest
        self._lock = threading.Lock()

    def load_image(self, body: Iterable[bytes]) -> Iterator[dict[str, Any]]:
        self.events.append("load-start")
        try:
            data = b"".join(body)
        except BaseException:
            self.events.append("load-cut")
            raise
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member)
                assert handle is not None
                assert member.name not in self.members, f"{member.name} twice"
                self.members[member.name] = handle.read()
        for entry in json.loads(self.members["manifest.json"]):
            assert entry["Config"] in self.members and all(x in self.members for x in entry["Layers"])
            self.loaded += entry["RepoTags"]
        self.events.append("loaded")
        return iter([{"stream": f"Loaded image: {ref}\n"} for ref in self.loaded])

    def push(self, repo: str, *, tag: str, stream: bool, decode: bool, auth_config: object) -> Iterator[dict[str, Any]]:
        ref = f"{repo}:{tag}"
        assert ref in self.loaded, "pushed before it was loaded"
        digest = str(Digest.of(f"rewritten {ref}".encode()))
        with self._lock:
            self.events.append(f"push {ref}")
            self.at_target[ref] = digest
        return iter([{"status": "Pushed"}, {"aux": {"Tag": tag, "Digest": digest}}])

    def inspect_distribution(self, ref: str, auth_config: object = None) -> dict[str, Any]:
        if ref not in self.at_target:
            raise RuntimeError(f"{ref}: manifest unknown")
        return {"Descriptor": {"digest": self.at_target[ref]}}

    def inspect_image(self, ref: str) -> dict[str, Any]:
        return {"Id": "sha256:" + "0" * 64}


class FakeEngine:
    def __init__(self, api: FakeEngineApi) -> None:
        self.api = api

    def ping(self) -> bool:
        return True


class DamagingSource(FakeSource):
    """A stream whose one blob fails its digest at its last chunk."""

    def __init__(self, *args: Any, damaged: Digest, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.damaged = damaged

    def _chunks(self, digest: Digest, meter: Meter) -> Iterator[bytes]:
        data = self.release.data[digest]
        if digest == self.damaged:
            data = data[:-1] + bytes([data[-1] ^ 1])
        return verified_chunks([data[:5], data[5:]], Verifier(digest, len(data), what=f"blob {digest}"))


def _import(source: FakeSource, api: FakeEngineApi) -> tuple[ImportResult, EngineSink]:
    release = source.release
    with EngineSink(FakeEngine(api), release.toc, registry=REGISTRY, repository="arc", tag=None, auth=None,
                    platform="linux/amd64") as sink:
        result, _ = copy_images(source, sink, release.targets(), ImportResult(dry_run=False),
                                options=CopyOptions(jobs=3), reporter=Reporter())
    return result, sink


@pytest.mark.parametrize("sequential", [True, False], ids=["stream", "random"])
def test_every_blob_goes_once_into_one_load_then_every_tag_is_pushed_and_reread(sequential: bool) -> None:
    release, api = _release(), FakeEngineApi()
    result, sink = _import(FakeSource(release, sequential=sequential), api)
    data = {f"blobs/sha256/{d.hex}": x for d, x in release.data.items()}
    manifests = {f"blobs/sha256/{d.hex}": x for d, x in release.manifests.items()}
    assert {k: v for k, v in api.members.items() if k.startswith("blobs/")} == {**data, **manifests}
    assert api.events[:2] == ["load-start", "loaded"]  # one upload, loaded before the first push
    pushes = sorted(e for e in api.events if e.startswith("push"))
    assert pushes == sorted(f"push {t.reference}" for t in release.targets())
    listing = json.loads(api.members["manifest.json"])
    assert sorted(ref for e in listing for ref in e["RepoTags"]) == sorted(t.reference for t in release.targets())
    images = {i["target"]: i for i in result.images}
    for target in release.targets():
        record = images[target.reference]
        assert record["digest"] == api.at_target[target.reference] != record["bundle_digest"]
        assert record["bundle_digest"] == str(target.entry.digest)
        assert record["action"] == "pushed (digest changed)"
        assert sink.image_id(target.reference) == "sha256:" + "0" * 64
    # one store: a blob two repositories need is written once and "mounted" into the other
    assert result.uploaded_blobs == len(release.data) and result.mounted_blobs > 0


def test_a_damaged_blob_cuts_the_upload_so_nothing_is_loaded_or_pushed() -> None:
    release, api = _release(), FakeEngineApi()
    damaged = next(d for d, x in release.data.items() if x.startswith(b"layer of b"))
    with pytest.raises(IntegrityError):
        _import(DamagingSource(release, sequential=True, damaged=damaged), api)
    assert api.events == ["load-start", "load-cut"]
    assert api.at_target == {}


def test_tags_already_at_their_digest_are_left_alone_and_the_unused_upload_is_cut() -> None:
    release = _release()
    api = FakeEngineApi(at_target={t.reference: str(t.entry.digest) for t in release.targets()})
    result, _ = _import(FakeSource(release, sequential=True), api)
    assert api.events == ["load-start", "load-cut"]  # nothing needed loading: the upload is abandoned
    assert result.skipped_tags == len(release.targets())
    assert all(i["action"] == "skipped" and not i["pushed"] for i in result.images)
