"""End to end: the data controller's hand-off after a real import into a registry with a login (import --handoff)
and from the receipt alone (arcgap handoff, no network): every file parses back, secrets are 0600 and the pull
secret's auth really pulls from the target; the password never reaches argv or stdout unless asked."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from arcgap.arc import handoff as render
from devtools.rawclient import RawClient
from devtools.registries import Registry
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, target_args
from tests.test_e2e_roundtrip import ROLES, clean_env, export_small  # noqa: F401 (autouse fixture)

SECRET_MODE = 0o600


@pytest.fixture
def login_target(fresh_registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    target: Registry = fresh_registry(tls=True, auth="htpasswd")
    monkeypatch.setenv("TARGET_DOCKER_USERNAME", target.username or "")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", target.password or "")
    return target


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_handoff_dir(directory: Path, target: Registry, synth: SmallSet) -> None:
    """Every file parses; values name the target; the secret pulls from it; only the secret files hold the
    password, and they are 0600."""
    assert target.password
    names = {p.name for p in directory.iterdir()}
    assert names == set(render.SECRET_FILES) | {render.CONTROL_PATCH, render.CONTROL_FRAGMENT,
                                                 render.DC_CONFIG_SCRIPT, render.EXTENSION_CONFIG,
                                                 render.EXTENSION_SCRIPT, render.NOTES}
    for name in names:
        data = (directory / name).read_text()
        assert (target.password in data or base64.b64encode(target.password.encode()).decode() in data) == (
            name == render.EXTENSION_PROTECTED), name  # the secret YAML holds it base64-encoded, twice over
        assert mode(directory / name) == (SECRET_MODE if name in render.SECRET_FILES else 0o644), name
    patch = json.loads((directory / render.CONTROL_PATCH).read_text())
    assert {p["path"]: p["value"] for p in patch["patch"]} == {
        "$.spec.docker.registry": target.host, "$.spec.docker.repository": "arc",
        "$.spec.docker.imageTag": "v1", "$.spec.docker.imagePullPolicy": "Always",
        "$.spec.credentials.dockerRegistry": "arc-private-registry"}
    fragment = json.loads((directory / render.CONTROL_FRAGMENT).read_text())
    assert fragment["spec"]["docker"]["registry"] == target.host
    config = json.loads((directory / render.EXTENSION_CONFIG).read_text())
    assert config["imageCredentials.registry"] == target.host
    assert config["imageCredentials.username"] == target.username
    assert config["systemDefaultValues.image"] == f"{target.host}/arc/arc-bootstrapper:v1"
    protected = json.loads((directory / render.EXTENSION_PROTECTED).read_text())
    assert protected == {"imageCredentials.password": target.password}
    secret = yaml.safe_load((directory / render.PULL_SECRET).read_text())
    assert secret["type"] == "kubernetes.io/dockerconfigjson" and secret["metadata"]["name"] == "arc-private-registry"
    auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
    assert list(auths) == [target.host]
    user, _, password = base64.b64decode(auths[target.host]["auth"]).decode().partition(":")
    # the decoded auth pulls from the target, as a kubelet would
    repo = "arc/" + synth["index_oci"].repository.split("/", 1)[1]
    with RawClient(target.url, ca_file=target.ca_file, username=user, password=password) as raw:
        assert raw.manifest_digest(repo, "v1") == synth["index_oci"].digest
    notes = (directory / render.NOTES).read_text()
    for role in ROLES:
        assert f"`{target.host}/arc/{synth[role].repository.split('/', 1)[1]}:v1`" in notes
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_import_with_handoff_writes_every_file(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, login_target: Registry, tmp_path: Path,
) -> None:
    bundle = tmp_path / "small.tar.zst"
    export_small(capsys, synth_small, bundle)
    os.umask(0)  # even a permissive umask never opens the secret files up
    try:
        res = arcgap(capsys, "import", str(bundle), *target_args(login_target), "--target-repository", "arc",
                     "--handoff", "handoff", "--json")
    finally:
        os.umask(0o022)
    assert res.code == 0, res.err
    assert login_target.password not in res.out + res.err
    doc = json.loads(res.out)
    handoff = doc["handoff"]
    assert handoff["directory"] == "handoff" and handoff["tag"] == "v1"
    assert handoff["deployment_profile"]["spec.docker.registry"] == login_target.host
    assert sorted(handoff["secret_files"]) == sorted(render.SECRET_FILES)
    assert doc["receipt_file"]  # the receipt came first
    # the synthetic release has no arc-bootstrapper image: said, not hidden
    assert "warning: the release has no arc-bootstrapper image" in res.err
    check_handoff_dir(tmp_path / "handoff", login_target, synth_small)

    # an existing hand-off is refused before anything is imported
    again = arcgap(capsys, "import", str(bundle), *target_args(login_target), "--target-repository", "arc",
                   "--handoff", "handoff", "--receipt", "second.yaml")
    assert again.code == 9
    assert again.error_lines[0].startswith("error: hand-off directory handoff already holds ")
    assert not Path("second.yaml").exists()


def test_handoff_from_the_receipt_alone(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, login_target: Registry, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = tmp_path / "small.tar.zst"
    export_small(capsys, synth_small, bundle)
    assert arcgap(capsys, "import", str(bundle), *target_args(login_target), "--target-repository", "arc",
                  "--receipt", "r.yaml", "-q").code == 0
    # the password from stdin (the environment's is gone); the registry and repository from the receipt; no
    # source, no target contacted (there is nothing listening on port 9 of the machine this test runs on)
    monkeypatch.delenv("TARGET_DOCKER_PASSWORD")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{login_target.password}\n"))
    res = arcgap(capsys, "handoff", "--receipt", "r.yaml", "-o", "out", "--password-stdin", "--no-input")
    assert res.code == 0, res.err
    assert login_target.password not in res.out + res.err
    assert res.out.splitlines()[0].startswith(f"hand-off for {login_target.host}/arc, release v1: out: ")
    check_handoff_dir(tmp_path / "out", login_target, synth_small)

    # --secret-stdout: the secret is standard output (for kubectl apply -f -) and no file holds the password
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", login_target.password or "")
    res = arcgap(capsys, "handoff", "--receipt", "r.yaml", "-o", "out2", "--secret-stdout",
                 "--namespace", "arc", "--secret-name", "pull-arc", "--image-pull-policy", "IfNotPresent")
    assert res.code == 0, res.err
    secret = yaml.safe_load(res.out)
    assert secret["metadata"] == {"name": "pull-arc", "namespace": "arc"}
    auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
    assert auths[login_target.host]["password"] == login_target.password
    assert not (tmp_path / "out2" / render.PULL_SECRET).exists()
    assert not (tmp_path / "out2" / render.EXTENSION_PROTECTED).exists()
    patch = json.loads((tmp_path / "out2" / render.CONTROL_PATCH).read_text())["patch"]
    assert {p["path"]: p["value"] for p in patch}["$.spec.docker.imagePullPolicy"] == "IfNotPresent"

    # the cluster reaches the registry by another name: --target-registry wins over the receipt
    res = arcgap(capsys, "handoff", "--receipt", "r.yaml", "-o", "out3", "--target-registry", "127.0.0.1:9",
                 "--no-secret", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["bootstrapper_image"] == "127.0.0.1:9/arc/arc-bootstrapper:v1"
    assert doc["secret_files"] == [] and doc["username"] == login_target.username  # named, never asked for
    assert json.loads((tmp_path / "out3" / render.EXTENSION_CONFIG).read_text())["imageCredentials.username"] == (
        login_target.username)
    assert all(ref.startswith("127.0.0.1:9/arc/") for ref in doc["images"]) and len(doc["images"]) == len(ROLES)

    # an existing hand-off is refused, --force replaces it
    assert arcgap(capsys, "handoff", "--receipt", "r.yaml", "-o", "out3", "--no-secret").code == 9
    assert arcgap(capsys, "handoff", "--receipt", "r.yaml", "-o", "out3", "--no-secret", "--force").code == 0


def test_password_is_never_an_option(capsys: pytest.CaptureFixture[str]) -> None:
    for option in ("--password", "--target-password"):
        res = arcgap(capsys, "handoff", "--release", "v1", option, "x")
        assert res.code == 2 and f"No such option: {option}" in res.err


def test_username_without_password_and_without_terminal_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TARGET_DOCKER_USERNAME", "ops")
    res = arcgap(capsys, "handoff", "--release", "v1.43.0_2026-01-13", "--target-registry", "r.local:5000",
                 "--target-repository", "arcdata", "--no-input")
    assert res.code == 2
    assert res.error_lines == ["error: TARGET_DOCKER_PASSWORD is not set for user 'ops'",
                               "hint: set TARGET_DOCKER_PASSWORD, pipe it with --password-stdin, or run on a "
                               "terminal"]
    assert not Path("arc-handoff-v1.43.0_2026-01-13").exists()


def test_handoff_needs_the_registry_engine_and_dry_run_writes_none(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, tmp_path: Path,
) -> None:
    res = arcgap(capsys, "import", "missing.tar.zst", "--engine", "docker", "--handoff", "h")
    assert res.code == 2
    assert res.error_lines[0] == "error: --handoff needs the default engine (--engine docker writes no receipt)"
    bundle = tmp_path / "small.tar.zst"
    export_small(capsys, synth_small, bundle)
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(bundle), *target_args(target), "--target-repository", "arc",
                 "--handoff", "h", "--dry-run", "--json")
    assert res.code == 0, res.err
    assert "handoff" not in json.loads(res.out) and not (tmp_path / "h").exists()
