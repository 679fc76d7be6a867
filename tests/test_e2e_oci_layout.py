"""End to end: ``arcgap export --format oci-layout`` from a real distribution registry into an OCI image layout
directory, read back by skopeo (``oci:DIR:NAME:TAG``), crane and oras, digests compared with the source's."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.registries import Registry, crane_binary
from devtools.synth import SMALL_SET_ROLES, SmallSet
from tests.e2e_helpers import Outcome, arcgap, isolate_env, oracle_digest, source_args

ROLES = SMALL_SET_ROLES
REF_NAME = "org.opencontainers.image.ref.name"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


def name_of(synth: SmallSet, role: str) -> str:
    return synth[role].repository.split("/", 1)[1]


def skopeo(*argv: str) -> bytes:
    proc = subprocess.run(["skopeo", *argv], capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def export_layout(capsys: pytest.CaptureFixture[str], synth: SmallSet, out: Path, *roles: str,
                  extra: tuple[str, ...] = ()) -> Outcome:
    return arcgap(capsys, "export", *(name_of(synth, r) for r in roles), *source_args(synth.registry),
                  "--source-repository", "synth", "--source-tag", "v1", "--format", "oci-layout", "-o", str(out),
                  "--json", "--no-input", *extra)


def test_export_to_an_oci_layout_that_skopeo_reads_and_copies_with_the_same_digests(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, tmp_path: Path
) -> None:
    out = tmp_path / "layout"
    res = export_layout(capsys, synth_small, out, *ROLES)
    assert res.code == 0, res.err
    result = json.loads(res.out)
    assert result["output"] == str(out) and result["images"] == len(ROLES) and result["parts"] == []
    assert json.loads((out / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((out / "index.json").read_bytes())
    names = {m["annotations"][REF_NAME]: m["digest"] for m in index["manifests"]}
    assert names == {f"{name_of(synth_small, r)}:v1": synth_small[r].digest for r in ROLES}
    # every file under blobs/ is named by the sha256 of its bytes; nothing half-written is left
    blobs = sorted((out / "blobs" / "sha256").iterdir())
    assert len(blobs) == result["blobs"]
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert not list(out.rglob("*.partial"))
    for role in ROLES:  # each image's manifest is stored byte for byte under its own digest
        info = synth_small[role]
        assert (out / "blobs" / "sha256" / info.digest.split(":", 1)[1]).read_bytes() == info.manifest
    # skopeo 1.9 (Debian 12) looks up only OCI-typed descriptors in a layout's index; Docker-typed images are
    # read back by crane below
    target: Registry = fresh_registry(tls=False, auth="none")
    oci_roles = [r for r in ROLES if ".oci." in synth_small[r].media_type]
    assert oci_roles
    for role in oci_roles:
        info = synth_small[role]
        ref = f"oci:{out}:{name_of(synth_small, role)}:v1"
        assert skopeo("inspect", "--raw", ref) == info.manifest  # byte for byte
        repo = f"copied/{name_of(synth_small, role)}"
        skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", ref,
               f"docker://{target.host}/{repo}:v1")
        assert oracle_digest(target, repo, "v1") == info.digest, role
        for child in info.children:
            assert oracle_digest(target, repo, child.digest) == child.digest, role


@pytest.mark.crane
def test_crane_pushes_each_one_image_layout_with_its_digest(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, tmp_path: Path
) -> None:
    crane = crane_binary()
    if crane is None:
        pytest.skip("crane is not built (ARCGAP_CRANE)")
    target: Registry = fresh_registry(tls=False, auth="none")
    for role in ROLES:  # ``crane push DIR REF`` takes a layout holding one image
        out = tmp_path / role
        res = export_layout(capsys, synth_small, out, role)
        assert res.code == 0, res.err
        proc = subprocess.run([str(crane), "push", "--insecure", str(out), f"{target.host}/crane/{role}:v1"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        info = synth_small[role]
        assert oracle_digest(target, f"crane/{role}", "v1") == info.digest, role
        for child in info.children:
            assert oracle_digest(target, f"crane/{role}", child.digest) == child.digest, role


def test_an_existing_layout_is_kept_unless_forced_and_bundle_options_are_refused(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path
) -> None:
    out = tmp_path / "layout"
    assert export_layout(capsys, synth_small, out, "oci").code == 0
    before = (out / "index.json").read_bytes()
    res = export_layout(capsys, synth_small, out, "docker")
    assert res.code == 9 and "already holds an OCI layout" in res.err
    assert (out / "index.json").read_bytes() == before
    res = export_layout(capsys, synth_small, out, "docker", extra=("--force",))
    assert res.code == 0, res.err
    index = json.loads((out / "index.json").read_bytes())
    assert [m["annotations"][REF_NAME] for m in index["manifests"]] == [f"{name_of(synth_small, 'docker')}:v1"]
    res = export_layout(capsys, synth_small, tmp_path / "split", "oci", extra=("--split-size", "1MB"))
    assert res.code == 2 and "--split-size" in res.err and not (tmp_path / "split").exists()


def test_oras_reads_every_image_of_the_layout_by_digest_and_copies_it_unchanged(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, tmp_path: Path
) -> None:
    """oras 1.3 splits ``DIR:REF`` at the last colon, so it cannot name a ``NAME:TAG`` ref.name: it names each
    image by digest (``DIR@sha256:…``), which the layout's index.json lists."""
    oras = os.environ.get("ARCGAP_ORAS") or shutil.which("oras")
    if not oras or not os.access(oras, os.X_OK):
        pytest.skip("oras is not installed (ARCGAP_ORAS)")
    out = tmp_path / "layout"
    assert export_layout(capsys, synth_small, out, *ROLES).code == 0
    target: Registry = fresh_registry(tls=False, auth="none")
    for role in ROLES:
        info = synth_small[role]
        at = f"{out}@{info.digest}"
        fetched = subprocess.run([oras, "manifest", "fetch", "--oci-layout", at], capture_output=True, timeout=60,
                                 check=False)
        assert fetched.returncode == 0, fetched.stderr.decode(errors="replace")
        assert fetched.stdout == info.manifest  # byte for byte
        copied = subprocess.run([oras, "cp", "--from-oci-layout", at, "--to-plain-http",
                                 f"{target.host}/oras/{role}:v1"], capture_output=True, text=True, timeout=120,
                                check=False)
        assert copied.returncode == 0, copied.stderr
        assert oracle_digest(target, f"oras/{role}", "v1") == info.digest, role
        for child in info.children:
            assert oracle_digest(target, f"oras/{role}", child.digest) == child.digest, role
