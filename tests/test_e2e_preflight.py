"""End to end: ``arcgap preflight`` against a real registry after a real import: it passes, and it fails (naming
the image, with the documented exit code) on a deleted tag, a re-pointed tag, a missing platform and, with
--blobs, a missing layer. Each target is changed behind arcgap's back with the independent raw client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arcgap.cli import run
from devtools.faultproxy import FaultProxy
from devtools.rawclient import repo_scope
from devtools.registries import Registry
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, isolate_env, oracle_digest, target_args
from tests.test_e2e_roundtrip import ROLES, clean_env, export_small  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def small_bundle(synth_small: SmallSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("preflight") / "small.tar.zst"
    with pytest.MonkeyPatch.context() as mp:  # a module fixture has no capsys: the CLI runs directly
        isolate_env(mp, bundle.parent)
        names = [synth_small[r].repository.split("/", 1)[1] for r in ROLES]
        reg = synth_small.registry
        assert run(["export", *names, "--source-registry", reg.host, "--source-plain-http",
                    "--source-repository", "synth", "--source-tag", "v1", "-o", str(bundle), "-q"]) == 0
    return bundle


@pytest.fixture
def imported(capsys: pytest.CaptureFixture[str], small_bundle: Path, fresh_registry,
             tmp_path: Path) -> tuple[Registry, Path]:
    target: Registry = fresh_registry()
    receipt = tmp_path / "receipt.yaml"
    res = arcgap(capsys, "import", str(small_bundle), *target_args(target), "--target-repository", "arc",
                 "--receipt", str(receipt), "-q")
    assert res.code == 0, res.err
    return target, receipt


def repo_of(synth: SmallSet, role: str) -> str:
    return "arc/" + synth[role].repository.split("/", 1)[1]


def test_preflight_passes_after_an_import_and_only_reads_the_target(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, small_bundle: Path, imported: tuple[Registry, Path],
) -> None:
    target, receipt = imported
    proxy = FaultProxy(target.host)
    try:
        res = arcgap(capsys, "preflight", str(receipt), "--target-registry", proxy.host, "--target-plain-http",
                     "--json")
        assert res.code == 0, res.err
        assert proxy.count(r"^(PUT|POST|PATCH|DELETE) ") == 0
        assert proxy.count(r"^HEAD /v2/arc/multiarch/manifests/sha256:") == 2  # each platform of the index
    finally:
        proxy.stop()
    doc = json.loads(res.out)
    assert doc["ok"] is True and doc["checked"] == len(ROLES)
    assert doc["target"] == {"registry": proxy.host, "repository": "arc"}
    by_ref = {i["reference"]: i for i in doc["images"]}
    for role in ROLES:
        info = synth_small[role]
        entry = by_ref[f"{proxy.host}/{repo_of(synth_small, role)}:v1"]
        assert entry["status"] == "ok" and entry["found_digest"] == entry["expected_digest"] == info.digest
        assert entry["platforms_checked"] == len(info.children)
    # from the bundle itself (the same mapping as import), and with --blobs: every config and layer HEADed
    res = arcgap(capsys, "preflight", str(small_bundle), *target_args(target), "--target-repository", "arc",
                 "--blobs")
    assert res.code == 0, res.err
    assert res.out.splitlines()[-1].startswith(f"{len(ROLES)} of {len(ROLES)} images ready at {target.host}/arc")


def test_deleted_tag_is_missing_exit_4(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, imported: tuple[Registry, Path],
) -> None:
    target, receipt = imported
    repo = repo_of(synth_small, "docker")
    target.raw_client().delete_manifest(repo, synth_small["docker"].digest)
    assert target.raw_client().manifest_digest(repo, "v1") is None
    res = arcgap(capsys, "preflight", str(receipt), *target_args(target))
    assert res.code == 4, res.err
    ref = f"{target.host}/{repo}:v1"
    assert res.out.splitlines()[0] == f"MISSING    {ref}"
    assert res.error_lines == [
        f"error: preflight: 1 of {len(ROLES)} images are not ready at {target.host}/arc (1 missing; first: {ref})",
        "hint: import the release's bundle again (tags already right are left alone), then run preflight again",
    ]
    # an image list names no digests, but a missing tag is missing all the same
    images = Path("list.yaml")
    images.write_text("format: arcgap-images/v1\nrelease: v1\nimages:\n"
                      + "".join(f"  - {repo_of(synth_small, r).split('/', 1)[1]}\n" for r in ROLES))
    res = arcgap(capsys, "preflight", str(images), *target_args(target), "--target-repository", "arc", "--json")
    assert res.code == 4
    statuses = {i["name"]: i["status"] for i in json.loads(res.out)["images"]}
    assert statuses.pop("docker-image") == "missing" and set(statuses.values()) == {"present"}


def test_repointed_tag_is_different_exit_10(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, imported: tuple[Registry, Path],
) -> None:
    target, receipt = imported
    repo = repo_of(synth_small, "index_docker")
    index = synth_small["index_docker"]
    child = index.children[0]
    with target.raw_client() as raw:  # point the tag at one platform's manifest instead of the index
        resp = raw.request("PUT", f"/v2/{repo}/manifests/v1", scopes=[repo_scope(repo, "pull,push")],
                           headers={"Content-Type": child.media_type}, content=child.manifest)
        assert resp.status_code == 201, resp.text
    assert oracle_digest(target, repo, "v1") == child.digest  # skopeo sees the new digest
    res = arcgap(capsys, "preflight", str(receipt), *target_args(target), "--json")
    assert res.code == 10, res.err
    doc = json.loads(res.out)
    assert doc["ok"] is False and doc["different"] == 1 and doc["missing"] == 0
    bad = [i for i in doc["images"] if i["status"] != "ok"]
    assert [(i["reference"], i["expected_digest"], i["found_digest"]) for i in bad] == [
        (f"{target.host}/{repo}:v1", index.digest, child.digest)]
    assert res.error_lines[0].startswith(f"error: preflight: 1 of {len(ROLES)} images are not ready at ")
    assert "1 at another digest" in res.error_lines[0]


def test_missing_platform_is_incomplete_exit_4(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, imported: tuple[Registry, Path],
) -> None:
    target, receipt = imported
    repo = repo_of(synth_small, "index_oci")
    child = synth_small["index_oci"].children[1]
    target.raw_client().delete_manifest(repo, child.digest)
    assert target.raw_client().manifest_digest(repo, "v1") == synth_small["index_oci"].digest  # the tag is fine
    res = arcgap(capsys, "preflight", str(receipt), *target_args(target))
    assert res.code == 4, res.err
    assert res.out.splitlines()[0] == (f"INCOMPLETE {target.host}/{repo}:v1  platform linux/arm64/v8 "
                                       f"({child.digest}) is missing")
    assert "1 incomplete" in res.error_lines[0]


def test_missing_layer_found_only_with_blobs(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, imported: tuple[Registry, Path],
) -> None:
    target, receipt = imported
    repo = repo_of(synth_small, "oci")
    layer = synth_small["oci"].layer_digests[-1]
    with target.raw_client() as raw:
        resp = raw.request("DELETE", f"/v2/{repo}/blobs/{layer}", scopes=[repo_scope(repo, "delete")])
        assert resp.status_code == 202, resp.text
        assert not raw.blob_exists(repo, layer)
    assert arcgap(capsys, "preflight", str(receipt), *target_args(target)).code == 0  # manifests are all there
    res = arcgap(capsys, "preflight", str(receipt), *target_args(target), "--blobs")
    assert res.code == 4, res.err
    assert res.out.splitlines()[0].startswith(f"INCOMPLETE {target.host}/{repo}:v1  blob {layer} of ")


def test_preflight_needs_something_to_check(capsys: pytest.CaptureFixture[str]) -> None:
    res = arcgap(capsys, "preflight", "--target-registry", "127.0.0.1:9", "--target-repository", "arc")
    assert res.code == 2
    assert res.error_lines[0] == "error: what should the target hold?"


def test_refused_login_is_exit_3_with_the_target_hint(
    capsys: pytest.CaptureFixture[str], fresh_registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    target: Registry = fresh_registry(tls=True, auth="htpasswd")
    images = tmp_path / "list.yaml"
    images.write_text("format: arcgap-images/v1\nrelease: v1\nimages:\n  - arc-controller\n")
    monkeypatch.setenv("TARGET_DOCKER_USERNAME", target.username or "")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", "wrong")
    res = arcgap(capsys, "preflight", str(images), *target_args(target), "--target-repository", "arc")
    assert res.code == 3, res.err
    assert res.error_lines[1] == "hint: check TARGET_DOCKER_USERNAME and TARGET_DOCKER_PASSWORD"
