"""End to end against a second registry implementation: go-containerregistry's ``crane registry serve``.

distribution 2.8 is the registry every other test talks to; crane's registry differs where it matters to a
client: it answers a cross-repository mount with ``202`` and a fresh upload session (it never mounts), keeps
upload sessions in memory, refuses a second streamed ``PATCH`` without ``Content-Range``, and stores blobs
once for all repositories (in memory, or on disk with ``--disk``). Every round trip here is checked by two
clients independent of arcgap: ``skopeo inspect --raw`` and ``crane manifest`` (each manifest's digest is the
sha256 of the exact bytes served), and every blob the manifests name is read back (``HEAD``) at the target.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from devtools.images import ImageInfo
from devtools.registries import Registry, crane_binary
from devtools.synth import SMALL_SET_ROLES, SmallSet, push_small_set
from tests.conftest import MediumSet
from tests.e2e_helpers import arcgap, isolate_env, oracle_digest, source_args, target_args

pytestmark = pytest.mark.crane
ROLES = SMALL_SET_ROLES


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


def crane_digest(reg: Registry, repo: str, ref: str) -> str:
    """Digest of the manifest bytes ``crane manifest`` reads (go-containerregistry's client, not arcgap's)."""
    crane = crane_binary()
    assert crane is not None
    done = subprocess.run(
        [str(crane), "manifest", "--insecure", reg.ref(repo, ref)], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return "sha256:" + hashlib.sha256(done.stdout).hexdigest()


def assert_image_at(target: Registry, repo: str, tag: str, info: ImageInfo) -> None:
    """The tag, each child and every blob are at ``target``, byte for byte, as two independent clients see it."""
    assert oracle_digest(target, repo, tag) == info.digest
    assert crane_digest(target, repo, tag) == info.digest
    body, media_type = target.raw_get_manifest(repo, tag)
    assert body == info.manifest and media_type == info.media_type
    for child in info.children:
        assert oracle_digest(target, repo, child.digest) == child.digest
        assert crane_digest(target, repo, child.digest) == child.digest
    with target.raw_client() as client:
        missing = sorted(d for d in info.all_digests() - {info.digest, *(c.digest for c in info.children)}
                         if not client.blob_exists(repo, d))
    assert missing == [], f"{repo}: blobs named by the manifests but absent: {missing}"


def name_of(info: ImageInfo) -> str:
    return info.repository.split("/", 1)[1]


def test_export_from_distribution_import_into_crane(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, synth_medium: MediumSet, fresh_crane_registry,
    tmp_path: Path,
) -> None:
    small, medium = tmp_path / "small.tar.zst", tmp_path / "medium.tar.zst"
    res = arcgap(capsys, "export", *(name_of(synth_small[r]) for r in ROLES), *source_args(synth_small.registry),
                 "--source-repository", "synth", "--source-tag", "v1", "-o", str(small))
    assert res.code == 0, res.err
    # multi-MiB layers: chunked uploads into crane's in-memory upload sessions
    res = arcgap(capsys, "export", *synth_medium.names, *source_args(synth_medium.registry),
                 "--source-repository", synth_medium.repository, "--source-tag", synth_medium.tag, "-o", str(medium))
    assert res.code == 0, res.err
    target: Registry = fresh_crane_registry(disk=True)
    res = arcgap(capsys, "import", str(small), *target_args(target), "--target-repository", "mirror/arcdata",
                 "--json", "--no-input")
    assert res.code == 0, res.err
    result = json.loads(res.out)
    assert len(result["images"]) == len(ROLES)
    for role in ROLES:
        assert_image_at(target, f"mirror/arcdata/{name_of(synth_small[role])}", "v1", synth_small[role])
    res = arcgap(capsys, "import", str(medium), *target_args(target), "--target-repository", "arc", "--json",
                 "--no-input")
    assert res.code == 0, res.err
    for name, info in synth_medium.images.items():
        assert_image_at(target, f"arc/{name}", synth_medium.tag, info)
    # a second import finds everything in place: no blob is sent again, no tag rewritten
    res = arcgap(capsys, "import", str(medium), *target_args(target), "--target-repository", "arc", "--json",
                 "--no-input")
    assert res.code == 0, res.err
    again = json.loads(res.out)
    assert again["uploaded_blobs"] == 0 and again["uploaded_bytes"] == 0


def test_mirror_distribution_to_crane_in_memory(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_crane_registry
) -> None:
    target: Registry = fresh_crane_registry(disk=False)
    res = arcgap(capsys, "mirror", *(name_of(synth_small[r]) for r in ROLES), *source_args(synth_small.registry),
                 "--source-repository", "synth", "--source-tag", "v1", *target_args(target),
                 "--target-repository", "mirror", "--jobs", "3", "--json", "--no-input")
    assert res.code == 0, res.err
    for role in ROLES:
        assert_image_at(target, f"mirror/{name_of(synth_small[role])}", "v1", synth_small[role])
    res = arcgap(capsys, "mirror", *(name_of(synth_small[r]) for r in ROLES), *source_args(synth_small.registry),
                 "--source-repository", "synth", "--source-tag", "v1", *target_args(target),
                 "--target-repository", "mirror", "--json", "--no-input")
    assert res.code == 0, res.err
    again = json.loads(res.out)
    assert again["uploaded_blobs"] == 0 and again["skipped_tags"] == len(ROLES)


def test_export_from_crane_import_into_distribution(
    capsys: pytest.CaptureFixture[str], fresh_crane_registry, fresh_registry, tmp_path: Path
) -> None:
    source: Registry = fresh_crane_registry(disk=True)
    synth = push_small_set(source, prefix="cr", seed="crane-source")
    for role in ROLES:  # what the source serves is what was pushed, before arcgap reads it
        assert oracle_digest(source, synth[role].repository, "v1") == synth[role].digest
    bundle = tmp_path / "from-crane.tar.zst"
    res = arcgap(capsys, "export", *(name_of(synth[r]) for r in ROLES), *source_args(source),
                 "--source-repository", "cr", "--source-tag", "v1", "-o", str(bundle))
    assert res.code == 0, res.err
    res = arcgap(capsys, "verify", str(bundle), "--json")
    assert res.code == 0, res.err
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(bundle), *target_args(target), "--target-repository", "back", "--json",
                 "--no-input")
    assert res.code == 0, res.err
    for role in ROLES:
        assert_image_at(target, f"back/{name_of(synth[role])}", "v1", synth[role])
