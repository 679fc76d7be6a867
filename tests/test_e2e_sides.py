"""A registry's error reaches the user worded for the side whose registry failed, even when source and target
are one registry; an answer that breaks the protocol is a registry error (exit 6), never a usage error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.faultproxy import Fault, FaultProxy
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, isolate_env, source_args


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


@pytest.fixture
def proxy(synth_small: SmallSet) -> Iterator[FaultProxy]:
    front = FaultProxy(synth_small.registry.host)
    yield front
    front.stop()


def test_malformed_content_digest_header_is_a_registry_error(
    capsys: pytest.CaptureFixture[str], proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.faults.append(Fault(r"^(HEAD|GET) /v2/synth/docker-image/manifests/v1", kind="headers", times=100,
                              response_headers={"docker-content-digest": "sha256:not-a-digest"}))
    res = arcgap(capsys, "export", "docker-image", "--source-registry", proxy.host, "--source-plain-http",
                 "--source-repository", "synth", "--source-tag", "v1", "-o", str(tmp_path / "m.tar.zst"))
    assert res.code == 6, res.err
    assert res.error_lines == [
        f"error: fetching manifest {proxy.host}/synth/docker-image:v1: {proxy.host} answered with a malformed "
        "Docker-Content-Digest header 'sha256:not-a-digest'",
        f"hint: {proxy.host} answers outside the OCI distribution spec; report it to its operator",
    ]


def _mirror_within_one_registry(capsys: pytest.CaptureFixture[str], proxy: FaultProxy, target_repository: str):
    return arcgap(capsys, "mirror", "docker-image", "--source-registry", proxy.host, "--source-plain-http",
                  "--source-repository", "synth", "--source-tag", "v1", "--target-registry", proxy.host,
                  "--target-plain-http", "--target-repository", target_repository, "-q")


def test_one_registry_both_sides_the_target_refuses(capsys: pytest.CaptureFixture[str], proxy: FaultProxy) -> None:
    proxy.faults.append(Fault(r"^(POST|HEAD) /v2/sides-denied/", status=403, times=1000))
    res = _mirror_within_one_registry(capsys, proxy, "sides-denied")
    assert res.code == 3, res.err
    assert res.error_lines[0].startswith("error: ") and "403" in res.error_lines[0]
    assert res.error_lines[1] == "hint: the target user lacks permission on this repository"


def test_one_registry_both_sides_the_source_refuses(capsys: pytest.CaptureFixture[str], proxy: FaultProxy) -> None:
    proxy.faults.append(Fault(r"^GET /v2/synth/docker-image/manifests/", status=403, times=1000))
    res = _mirror_within_one_registry(capsys, proxy, "sides-never-written")
    assert res.code == 3, res.err
    assert res.error_lines[1] == "hint: the source user lacks permission on this repository"
    assert not proxy.count(r"/v2/sides-never-written/")  # the target was never asked anything


def test_one_registry_both_sides_the_target_says_unauthorized(
    capsys: pytest.CaptureFixture[str], proxy: FaultProxy
) -> None:
    proxy.faults.append(Fault(r"^(POST|HEAD) /v2/sides-401/", status=401, times=1000))
    res = _mirror_within_one_registry(capsys, proxy, "sides-401")
    assert res.code == 3, res.err
    assert res.error_lines[1] == "hint: check TARGET_DOCKER_USERNAME and TARGET_DOCKER_PASSWORD"


def test_the_token_server_refuses_the_source_user(
    capsys: pytest.CaptureFixture[str], synth_small_token: SmallSet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The refusal comes from the token server (the authenticator, not a registry answer): still the source's."""
    registry = synth_small_token.registry
    monkeypatch.setenv("SOURCE_DOCKER_USERNAME", registry.username or "")
    monkeypatch.setenv("SOURCE_DOCKER_PASSWORD", "not-the-token-password")
    res = arcgap(capsys, "export", "docker-image", *source_args(registry), "--source-repository", "synth",
                 "--source-tag", "v1", "-o", str(tmp_path / "t.tar.zst"))
    assert res.code == 3, res.err
    assert res.error_lines == [
        f"error: {registry.host}: the token server refused user {registry.username!r} (401)",
        f"hint: check SOURCE_DOCKER_USERNAME and SOURCE_DOCKER_PASSWORD (or your docker login for {registry.host})",
    ]
    assert "not-the-token-password" not in res.err + res.out
