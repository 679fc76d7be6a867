"""End to end: ``arcgap mirror`` between real registries, digests compared with skopeo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.registries import Registry
from devtools.synth import SMALL_SET_ROLES, SmallSet, push_small_set
from tests.e2e_helpers import arcgap, isolate_env, oracle_digest, source_args, target_args

ROLES = SMALL_SET_ROLES
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def synth_tls(tls_registry: Registry) -> SmallSet:
    return push_small_set(tls_registry, prefix="mir")


def names_of(synth: SmallSet) -> list[str]:
    return [synth[r].repository.split("/", 1)[1] for r in ROLES]


def assert_same_digests(synth: SmallSet, target: Registry, repository: str, tag: str) -> None:
    for role in ROLES:
        info = synth[role]
        repo = f"{repository}/{info.repository.split('/', 1)[1]}"
        assert oracle_digest(target, repo, tag) == info.digest, role
        for child in info.children:
            assert oracle_digest(target, repo, child.digest) == child.digest, role
        body, media_type = target.raw_get_manifest(repo, tag)
        assert body == info.manifest and media_type == info.media_type


def test_mirror_with_all_ten_environment_variables_and_no_terminal(
    synth_small: SmallSet, fresh_registry, tmp_path: Path
) -> None:
    target: Registry = fresh_registry(tls=True, auth="htpasswd")
    assert target.ca_file is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCE_DOCKER_", "TARGET_DOCKER_"))}
    env.update(
        SOURCE_DOCKER_REGISTRY=f"http://{synth_small.registry.host}",
        SOURCE_DOCKER_REPOSITORY="synth",
        SOURCE_DOCKER_USERNAME="reader",  # the plain source asks for no login: these are never used
        SOURCE_DOCKER_PASSWORD="unused-pass",
        SOURCE_DOCKER_TAG="v1",
        TARGET_DOCKER_REGISTRY=target.host,
        TARGET_DOCKER_REPOSITORY="mirror/arcdata",
        TARGET_DOCKER_USERNAME=target.username or "",
        TARGET_DOCKER_PASSWORD=target.password or "",
        TARGET_DOCKER_TAG="v1",
        TARGET_DOCKER_CA_FILE=str(target.ca_file),
        PYTHONPATH=str(ROOT),
    )
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "arcgap", "mirror", *names_of(synth_small), "--json"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, cwd=work, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert target.password not in proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["command"] == "mirror" and result["dry_run"] is False
    assert len(result["images"]) == len(ROLES)
    assert {i["action"] for i in result["images"]} <= {"pushed", "mounted"}
    assert_same_digests(synth_small, target, "mirror/arcdata", "v1")
    # the base layer shared by docker-image and oci-image went over once and was mounted into the other repository
    assert result["mounted_blobs"] >= 1
    assert result["uploaded_bytes"] == result["missing_bytes"] == result["content_bytes"]
    assert list(work.iterdir()) == []  # nothing written to disk: no bundle, no receipt


def test_mirror_tls_basic_source_to_token_target_keeps_every_digest(
    capsys: pytest.CaptureFixture[str], synth_tls: SmallSet, fresh_registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = synth_tls.registry
    target: Registry = fresh_registry(tls=True, auth="token")
    monkeypatch.setenv("SOURCE_DOCKER_USERNAME", src.username or "")
    monkeypatch.setenv("SOURCE_DOCKER_PASSWORD", src.password or "")
    monkeypatch.setenv("TARGET_DOCKER_USERNAME", target.username or "")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", target.password or "")
    res = arcgap(capsys, "mirror", *names_of(synth_tls), *source_args(src), "--source-repository", "mir",
                 "--source-tag", "v1", *target_args(target), "--target-repository", "arc", "--jobs", "3",
                 "--json", "--no-input")
    assert res.code == 0, res.err
    assert_same_digests(synth_tls, target, "arc", "v1")
    result = json.loads(res.out)
    assert result["image_digests"] == {f"{src.host}/{synth_tls[r].repository}:v1": synth_tls[r].digest
                                       for r in ROLES}
    # a second run finds everything in place: nothing is copied, no tag is written again
    res = arcgap(capsys, "mirror", *names_of(synth_tls), *source_args(src), "--source-repository", "mir",
                 "--source-tag", "v1", *target_args(target), "--target-repository", "arc", "--json", "--no-input")
    assert res.code == 0, res.err
    again = json.loads(res.out)
    assert again["uploaded_blobs"] == 0 and again["mounted_blobs"] == 0
    assert again["skipped_tags"] == len(ROLES)
    assert {i["action"] for i in again["images"]} == {"skipped"}


def test_mirror_passwords_from_stdin_one_line_each(
    synth_tls: SmallSet, fresh_registry, tmp_path: Path
) -> None:
    src = synth_tls.registry
    target: Registry = fresh_registry(tls=True, auth="htpasswd")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCE_DOCKER_", "TARGET_DOCKER_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "arcgap", "mirror", "docker-image", *source_args(src), "--source-repository", "mir",
         "--source-tag", "v1", "--source-username", src.username or "", "--source-password-stdin",
         *target_args(target), "--target-repository", "arc", "--target-username", target.username or "",
         "--target-password-stdin", "--json"],
        input=f"{src.password}\n{target.password}\n", capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert oracle_digest(target, "arc/docker-image", "v1") == synth_tls["docker"].digest


def test_mirror_dry_run_changes_nothing_and_reports_the_bytes(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry
) -> None:
    target: Registry = fresh_registry()
    base = ["--source-repository", "synth", "--source-tag", "v1", *source_args(synth_small.registry),
            *target_args(target), "--target-repository", "arc", "--json"]
    res = arcgap(capsys, "mirror", *names_of(synth_small), *base, "--dry-run")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["dry_run"] is True and doc["command"] == "mirror"
    assert doc["content_bytes"] > 0 and doc["missing_bytes"] == doc["content_bytes"] and doc["present_bytes"] == 0
    assert [i["target"] for i in doc["images"]] == [f"{target.host}/arc/{n}:v1" for n in names_of(synth_small)]
    assert all(not i["pushed"] for i in doc["images"])
    assert target.raw_client().catalog() == []
    res = arcgap(capsys, "mirror", *names_of(synth_small), *base[:-1], "--dry-run")  # the human lines
    assert res.code == 0, res.err
    assert "would mirror 5 images" in res.out and "nothing changed" in res.out
    assert target.raw_client().catalog() == []
    # after one image is there, a dry run reports what the target already holds
    assert arcgap(capsys, "mirror", "docker-image", *base).code == 0
    res = arcgap(capsys, "mirror", *names_of(synth_small), *base, "--dry-run")
    doc = json.loads(res.out)
    assert 0 < doc["present_bytes"] < doc["content_bytes"]
    assert doc["images"][0]["action"] == "skipped"
    assert target.raw_client().catalog() == ["arc/docker-image"]


def test_mirror_target_tag_override(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    target: Registry = fresh_registry(tls=True, auth="htpasswd")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", target.password or "")
    res = arcgap(capsys, "mirror", *names_of(synth_small), "--source-repository", "synth", "--source-tag", "v1",
                 *source_args(synth_small.registry), *target_args(target), "--target-repository", "arc",
                 "--target-username", target.username or "", "--target-tag", "2024-04", "--json")
    assert res.code == 0, res.err
    assert_same_digests(synth_small, target, "arc", "2024-04")
    for name in names_of(synth_small):
        assert target.list_tags(f"arc/{name}") == ["2024-04"]  # the source tag was not pushed instead


def test_mirror_unknown_image_exits_4_naming_it_before_anything_is_pushed(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry
) -> None:
    target: Registry = fresh_registry()
    res = arcgap(capsys, "mirror", "docker-image", "no-such-image", "--source-repository", "synth",
                 "--source-tag", "v1", *source_args(synth_small.registry), *target_args(target),
                 "--target-repository", "arc")
    assert res.code == 4, res.err
    assert "no-such-image" in res.error_lines[0]
    assert target.raw_client().catalog() == []


def test_mirror_a_corrupt_source_blob_exits_7_and_moves_no_tag(
    capsys: pytest.CaptureFixture[str], fresh_registry
) -> None:
    source: Registry = fresh_registry()
    synth = push_small_set(source, prefix="bad", seed="corrupt")
    layer = synth["docker"].layer_digests[-1]  # the image's own layer, not the shared base
    data = source.root_dir / "docker/registry/v2/blobs/sha256" / layer[7:9] / layer[7:] / "data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # same size, other bytes: only the digest can tell
    data.write_bytes(bytes(raw))
    target: Registry = fresh_registry()
    res = arcgap(capsys, "mirror", "docker-image", "oci-image", "--source-repository", "bad", "--source-tag", "v1",
                 *source_args(source), *target_args(target), "--target-repository", "arc")
    assert res.code == 7, res.err
    assert layer in res.error_lines[0]
    for name in ("docker-image", "oci-image"):
        assert target.list_tags(f"arc/{name}") == []  # no manifest and no tag moved
    assert not target.raw_client().blob_exists("arc/docker-image", layer)


def test_mirror_without_a_terminal_asks_nothing_and_names_the_missing_value(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet
) -> None:
    res = arcgap(capsys, "mirror", "docker-image", "--source-repository", "synth", "--source-tag", "v1",
                 *source_args(synth_small.registry), "--target-repository", "arc")
    assert res.code == 2
    assert res.error_lines == ["error: TARGET_DOCKER_REGISTRY is not set",
                               "hint: pass --target-registry or set TARGET_DOCKER_REGISTRY"]
