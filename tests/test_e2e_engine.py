"""The Docker engine path against a real dockerd (session fixture) and real registries.

- a default-engine bundle loads with plain ``zstd -dc bundle | docker load`` (manifest.json beside the layout);
- ``arcgap verify`` accepts bundles with and without manifest.json.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from arcgap.bundle.dockercompat import host_platform
from devtools.dockerd import Dockerd
from devtools.synth import SMALL_SET_ROLES, SmallSet
from tests.e2e_helpers import arcgap, isolate_env, source_args

ROLES = SMALL_SET_ROLES


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


def _names(synth: SmallSet) -> list[str]:
    return [synth[r].repository.split("/", 1)[1] for r in ROLES]


def _export(capsys: pytest.CaptureFixture[str], synth: SmallSet, out: Path, names: list[str] | None = None) -> None:
    """Export ``names`` (default: every image of the small set) from the synth registry through the API path."""
    res = arcgap(capsys, "export", *(names or _names(synth)), *source_args(synth.registry), "--source-repository",
                 "synth", "--source-tag", "v1", "-o", str(out), "--no-cache")
    assert res.code == 0, res.err


def _members(bundle: Path) -> list[str]:
    listing = subprocess.run(f"zstd -dc {bundle} | tar -t", shell=True, capture_output=True, check=True)
    return listing.stdout.decode().splitlines()


def _expected_config(info) -> str:  # noqa: ANN001
    if not info.is_index:
        return info.config_digest
    arch = host_platform().split("/")[1]
    child = next((c for c in info.children if c.platform and c.platform.get("architecture") == arch),
                 next(c for c in info.children if c.platform and c.platform.get("architecture") == "amd64"))
    return child.config_digest


def test_default_bundle_loads_with_plain_docker_load(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, dockerd: Dockerd, tmp_path: Path
) -> None:
    out = tmp_path / "small.tar.zst"
    _export(capsys, synth_small, out)
    members = _members(out)
    assert members[:4] == ["arcgap.yaml", "oci-layout", "index.json", "manifest.json"]
    loaded = subprocess.run(f"zstd -dc {out} | docker -H {dockerd.host} load", shell=True, capture_output=True)
    assert loaded.returncode == 0, loaded.stderr.decode()
    host = synth_small.registry.host
    for role in ROLES:
        info = synth_small[role]
        tag = f"{host}/{info.repository}:v1"
        shown = json.loads(dockerd.docker(["image", "inspect", tag]).stdout)[0]
        assert tag in shown["RepoTags"]
        assert shown["Id"] == _expected_config(info), role  # image ID = config digest
    assert arcgap(capsys, "verify", str(out)).code == 0


def test_verify_accepts_bundles_with_and_without_manifest_json(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path
) -> None:
    """A bundle rewritten without manifest.json (as arcgap 0.1 wrote it) still verifies."""
    import zstandard

    from arcgap.bundle import tarstream

    out = tmp_path / "with.tar.zst"
    _export(capsys, synth_small, out)
    raw = zstandard.ZstdDecompressor().stream_reader(out.open("rb"), read_across_frames=True).read()
    reader = tarstream.TarReader(__import__("io").BytesIO(raw))
    body = bytearray()
    while (m := reader.next_member()) is not None:
        data = b"".join(reader.iter_member(1 << 20))
        if m.name != "manifest.json":
            body += tarstream.member_header(m.name, len(data)) + data + tarstream.padding(len(data))
    body += tarstream.END_OF_ARCHIVE
    without = tmp_path / "without.tar.zst"
    without.write_bytes(zstandard.ZstdCompressor().compress(bytes(body)))
    assert "manifest.json" not in _members(without)
    for bundle in (out, without):
        res = arcgap(capsys, "verify", str(bundle))
        assert res.code == 0, res.err


def _engine_import(capsys: pytest.CaptureFixture[str], dockerd: Dockerd, monkeypatch: pytest.MonkeyPatch,
                   bundle: Path, target, repo: str, *extra: str):  # noqa: ANN001, ANN202
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    return arcgap(capsys, "import", str(bundle), "--engine", "docker", "--target-registry", target.host,
                  "--target-repository", repo, "--json", "--no-input", *extra)


def test_import_through_the_engine_keeps_image_ids_and_records_target_digests(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, dockerd: Dockerd, fresh_registry,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "small.tar.zst"
    _export(capsys, synth_small, out)
    target = fresh_registry()
    res = _engine_import(capsys, dockerd, monkeypatch, out, target, "viaengine")
    assert res.code == 0, res.err
    assert "classic image store may change digests" in res.err
    assert "only linux/" in res.err  # the index warning
    doc = json.loads(res.out)
    assert doc["engine"] == "docker"
    # the same copy as into a registry: placement's tally, every blob once into the engine, tags re-read
    assert doc["uploaded_blobs"] == doc["blobs"] - sum(len(i["platforms"]) + (len(i["platforms"]) > 1)
                                                       for i in doc["images"]) > 0
    assert doc["verified_bytes"] > 0 and doc["skipped_tags"] == 0
    assert doc["digests_changed"] == sum(i["digest"] != i["bundle_digest"] for i in doc["images"])
    assert all(i["action"] in ("pushed", "pushed (digest changed)") and i["pushed"] for i in doc["images"])
    by_target = {i["target"]: i for i in doc["images"]}
    for role in ROLES:
        info = synth_small[role]
        name = info.repository.split("/", 1)[1]
        ref = f"{target.host}/viaengine/{name}:v1"
        record = by_target[ref]
        served, _ = target.raw_get_manifest(f"viaengine/{name}", "v1")
        assert record["digest"] == "sha256:" + hashlib.sha256(served).hexdigest()  # what the target really holds
        config = json.loads(served)["config"]["digest"]
        assert config == record["image_id"] == _expected_config(info)  # image ID preserved


def test_engine_push_error_in_the_event_stream_is_a_nonzero_exit(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, dockerd: Dockerd, fresh_registry,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "one.tar.zst"
    _export(capsys, synth_small, out, ["docker-image"])
    target = fresh_registry(auth="htpasswd")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", "not-the-password")
    res = _engine_import(capsys, dockerd, monkeypatch, out, target, "denied", "--target-username", target.username)
    assert res.code == 3, res.err
    assert any(line.startswith("error: docker push ") for line in res.error_lines), res.err
    assert target.list_tags("denied/docker-image") == []


def test_engine_import_refuses_a_damaged_bundle_before_anything_is_pushed(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, dockerd: Dockerd, fresh_registry,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import zstandard

    out = tmp_path / "bad.tar.zst"
    res = arcgap(capsys, "export", "oci-image", *source_args(synth_small.registry), "--source-repository",
                 "synth", "--source-tag", "v1", "-o", str(out), "--no-cache", "--level", "1")
    assert res.code == 0, res.err
    raw = bytearray(zstandard.ZstdDecompressor().stream_reader(out.open("rb"), read_across_frames=True).read())
    raw[-3000] ^= 0x01  # inside the last blob (a layer); the tar stays well-formed
    out.write_bytes(zstandard.ZstdCompressor().compress(bytes(raw)))
    target = fresh_registry()
    res = _engine_import(capsys, dockerd, monkeypatch, out, target, "damaged")
    assert res.code == 7, res.err
    assert target.list_tags("damaged/oci-image") == []


def test_no_engine_is_exit_5_with_a_hint(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "one.tar.zst"
    _export(capsys, synth_small, out, ["docker-image"])
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    res = arcgap(capsys, "import", str(out), "--engine", "docker", "--target-registry", "127.0.0.1:1",
                 "--target-repository", "x", "--no-input")
    assert res.code == 5, res.err
    assert any(line.startswith("error: no Docker engine answers at unix://") for line in res.error_lines)
    assert any(line.startswith("hint: start the Docker engine") for line in res.error_lines)


def _registry_import(capsys: pytest.CaptureFixture[str], bundle: Path, target, repo: str):  # noqa: ANN001, ANN202
    return arcgap(capsys, "import", str(bundle), "--target-registry", target.host, "--target-plain-http",
                  "--target-repository", repo, "--json", "--no-input")


def test_engine_export_then_registry_import_keeps_image_ids(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, dockerd: Dockerd, fresh_registry,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through an htpasswd source (auth_config on pull), into the OCI bundle, verified, pushed by the registry
    engine: every image's config digest (the engine's image ID) is what the source had."""
    source = fresh_registry(auth="htpasswd")
    seed = tmp_path / "seed.tar.zst"
    _export(capsys, synth_small, seed)
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", source.password)
    res = arcgap(capsys, "import", str(seed), "--target-registry", source.host, "--target-plain-http",
                 "--target-repository", "src", "--target-username", source.username, "--no-input")
    assert res.code == 0, res.err
    monkeypatch.delenv("TARGET_DOCKER_PASSWORD")
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    monkeypatch.setenv("SOURCE_DOCKER_PASSWORD", source.password)
    out = tmp_path / "engine.tar.zst"
    names = _names(synth_small)
    res = arcgap(capsys, "export", *names, "--engine", "docker", "--source-registry", source.host,
                 "--source-repository", "src", "--source-tag", "v1", "--source-username", source.username,
                 "-o", str(out), "--json", "--no-input")
    assert res.code == 0, res.err
    assert "one platform per image" in res.err
    assert json.loads(res.out)["images"] == len(ROLES)
    assert arcgap(capsys, "verify", str(out)).code == 0
    target = fresh_registry()
    res = _registry_import(capsys, out, target, "fromengine")
    assert res.code == 0, res.err
    for role in ROLES:
        info = synth_small[role]
        name = info.repository.split("/", 1)[1]
        served, _ = target.raw_get_manifest(f"fromengine/{name}", "v1")
        assert json.loads(served)["config"]["digest"] == _expected_config(info), role
    # the engine bundle loads with plain docker load too
    loaded = subprocess.run(f"zstd -dc {out} | docker -H {dockerd.host} load", shell=True, capture_output=True)
    assert loaded.returncode == 0, loaded.stderr.decode()


def test_engine_export_pull_with_a_wrong_password_fails(
    capsys: pytest.CaptureFixture[str], dockerd: Dockerd, fresh_registry, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = fresh_registry(auth="htpasswd")
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    monkeypatch.setenv("SOURCE_DOCKER_PASSWORD", "wrong")
    res = arcgap(capsys, "export", "docker-image", "--engine", "docker", "--source-registry", source.host,
                 "--source-repository", "src", "--source-tag", "v1", "--source-username", source.username,
                 "-o", str(tmp_path / "x.tar.zst"), "--no-input")
    assert res.code in (3, 4), res.err
    assert any(line.startswith("error: docker pull ") for line in res.error_lines), res.err
    assert not list(tmp_path.glob("x.tar.zst*")) and not list(tmp_path.glob(".x.tar.zst.spool-*"))


def test_from_local_exports_an_engine_only_image(
    capsys: pytest.CaptureFixture[str], dockerd: Dockerd, fresh_registry, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        payload = b"built locally\n"
        info = tarfile.TarInfo("etc/local.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    dockerd.docker(["import", "-", "localbuild/app:dev"], input=buf.getvalue())
    image_id = json.loads(dockerd.docker(["image", "inspect", "localbuild/app:dev"]).stdout)[0]["Id"]
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    out = tmp_path / "local.tar.zst"
    res = arcgap(capsys, "export", "--engine", "docker", "--from-local", "localbuild/app:dev", "-o", str(out),
                 "--json", "--no-input")
    assert res.code == 0, res.err
    assert arcgap(capsys, "verify", str(out)).code == 0
    target = fresh_registry()
    res = _registry_import(capsys, out, target, "site")
    assert res.code == 0, res.err
    served, _ = target.raw_get_manifest("site/localbuild/app", "dev")
    assert json.loads(served)["config"]["digest"] == image_id


def test_engine_import_into_a_tls_htpasswd_registry_trusted_via_certs_d(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, dockerd: Dockerd, fresh_registry,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from devtools.dockerd import trust_ca

    out = tmp_path / "one.tar.zst"
    _export(capsys, synth_small, out, ["oci-image"])
    target = fresh_registry(tls=True, auth="htpasswd")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", target.password)
    with trust_ca(target.host, target.ca_file):
        res = _engine_import(capsys, dockerd, monkeypatch, out, target, "secure", "--target-username",
                             target.username)
    assert res.code == 0, res.err
    record = json.loads(res.out)["images"][0]
    served, _ = target.raw_get_manifest("secure/oci-image", "v1")
    assert json.loads(served)["config"]["digest"] == synth_small["oci"].config_digest == record["image_id"]


def test_engine_export_into_an_oci_layout_keeps_image_ids_and_skopeo_reads_it(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, dockerd: Dockerd, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine's export writes through the same output as the registry's: ``--format oci-layout`` works."""
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    out = tmp_path / "engine.oci"
    res = arcgap(capsys, "export", "oci-image", "--engine", "docker", *source_args(synth_small.registry),
                 "--source-repository", "synth", "--source-tag", "v1", "--format", "oci-layout", "-o", str(out),
                 "--json", "--no-input")
    assert res.code == 0, res.err
    assert json.loads(res.out)["output"] == str(out)
    index = json.loads((out / "index.json").read_bytes())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == ["oci-image:v1"]
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{out}:oci-image:v1"], capture_output=True,
                         check=True, timeout=60).stdout
    assert json.loads(raw)["config"]["digest"] == synth_small["oci"].config_digest  # image ID = config digest
    assert index["manifests"][0]["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
