"""End to end: export from a real registry, import into another, compare digests with skopeo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devtools.registries import Registry
from devtools.synth import SMALL_SET_ROLES, SmallSet
from tests.e2e_helpers import arcgap, isolate_env, oracle_digest, source_args, target_args

ROLES = SMALL_SET_ROLES


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


def export_small(capsys: pytest.CaptureFixture[str], synth: SmallSet, out: Path, *extra: str) -> None:
    names = [synth[r].repository.split("/", 1)[1] for r in ROLES]
    res = arcgap(capsys, "export", *names, *source_args(synth.registry), "--source-repository", "synth",
                 "--source-tag", "v1", "-o", str(out), *extra)
    assert res.code == 0, res.err


def test_round_trip_plain_to_tls_htpasswd_keeps_every_digest(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = tmp_path / "small.tar.zst"
    export_small(capsys, synth_small, bundle)
    target: Registry = fresh_registry(tls=True, auth="htpasswd")
    monkeypatch.setenv("TARGET_DOCKER_USERNAME", target.username or "")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", target.password or "")
    res = arcgap(capsys, "import", str(bundle), *target_args(target), "--target-repository", "mirror/arcdata",
                 "--json")
    assert res.code == 0, res.err
    result = json.loads(res.out)
    assert len(result["images"]) == len(ROLES)
    for role in ROLES:
        info = synth_small[role]
        name = info.repository.split("/", 1)[1]
        repo = f"mirror/arcdata/{name}"
        # Digest equality checked by an independent client, for the index and each child.
        assert oracle_digest(target, repo, "v1") == info.digest
        for child in info.children:
            assert oracle_digest(target, repo, child.digest) == child.digest
        body, media_type = target.raw_get_manifest(repo, "v1")
        assert body == info.manifest and media_type == info.media_type
    # the shared base layer was sent once and mounted into the other repositories
    assert result["mounted_blobs"] >= 1
    assert result["uploaded_bytes"] < sum(1 for _ in ROLES) * 10_000


def test_round_trip_token_auth_source_and_target_with_target_tag(
    capsys: pytest.CaptureFixture[str], synth_small_token: SmallSet, fresh_registry, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = synth_small_token.registry
    bundle = tmp_path / "tok.tar.zst"
    export_small(capsys, synth_small_token, bundle)  # anonymous pull through the token server
    target: Registry = fresh_registry(tls=True, auth="token")
    monkeypatch.setenv("TARGET_DOCKER_USERNAME", target.username or "")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", target.password or "")
    res = arcgap(capsys, "import", str(bundle), *target_args(target), "--target-repository", "arc",
                 "--target-tag", "2024-04", "--json")
    assert res.code == 0, res.err
    served = target.token_server.requests_served  # type: ignore[attr-defined]
    # one token per repository (pull,push) plus one per mount pair: the cache prevents one per request
    mounts = json.loads(res.out)["mounted_blobs"]
    assert served <= len(ROLES) + mounts, f"token cache ineffective: {served} token requests"
    for role in ROLES:
        info = synth_small_token[role]
        repo = "arc/" + info.repository.split("/", 1)[1]
        assert oracle_digest(target, repo, "2024-04") == info.digest
        assert target.list_tags(repo) == ["2024-04"]  # the source tag was not pushed instead
    assert src.host != target.host


def test_export_is_deterministic_and_inspect_verify_agree(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path
) -> None:
    a, b = tmp_path / "a.tar.zst", tmp_path / "b.tar.zst"
    export_small(capsys, synth_small, a)
    export_small(capsys, synth_small, b, "--jobs", "1")
    assert a.read_bytes() == b.read_bytes()
    res = arcgap(capsys, "inspect", str(a), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    by_name = {i["name"]: i for i in doc["images"]}
    assert by_name["multiarch"]["digest"] == synth_small["index_docker"].digest
    assert {p["platform"] for p in by_name["multiarch"]["platforms"]} == {"linux/amd64", "linux/arm64/v8"}
    assert by_name["indented"]["digest"] == synth_small["indented"].digest
    res = arcgap(capsys, "verify", str(a), "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["images"] == len(ROLES)


def test_dry_run_changes_nothing(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, tmp_path: Path
) -> None:
    bundle = tmp_path / "d.tar.zst"
    export_small(capsys, synth_small, bundle)
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(bundle), *target_args(target), "--target-repository", "arc", "--dry-run",
                 "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["dry_run"] is True
    assert target.raw_client().catalog() == []


def test_platform_filter_warns_and_keeps_one_child(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path
) -> None:
    out = tmp_path / "p.tar.zst"
    res = arcgap(capsys, "export", "multiarch", *source_args(synth_small.registry), "--source-repository", "synth",
                 "--source-tag", "v1", "-o", str(out), "--platform", "linux/amd64")
    assert res.code == 0, res.err
    assert "changes" in res.err or "not the source's index digest" in res.err
    doc = json.loads(arcgap(capsys, "inspect", str(out), "--json").out)
    amd64 = [c for c in synth_small["index_docker"].children if c.platform and c.platform["architecture"] == "amd64"]
    assert doc["images"][0]["digest"] == amd64[0].digest


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_import_inside_network_namespace_cannot_reach_source(
    synth_small: SmallSet, fresh_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A true air gap: the importer runs in a namespace where only the target registry exists."""
    import subprocess
    import sys

    bundle = tmp_path / "gap.tar.zst"
    export_small(capsys, synth_small, bundle)
    target: Registry = fresh_registry(netns=True)
    assert target.netns is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCE_DOCKER_", "TARGET_DOCKER_"))}
    env.update(TARGET_DOCKER_REGISTRY=target.host, TARGET_DOCKER_REPOSITORY="arcdata")
    probe = subprocess.run(
        ["ip", "netns", "exec", target.netns, sys.executable, "-c",
         f"import httpx; httpx.get('http://{synth_small.registry.host}/v2/', timeout=2)"],
        capture_output=True, env=env,
    )
    assert probe.returncode != 0, "the source registry must be unreachable from inside the namespace"
    proc = subprocess.run(
        ["ip", "netns", "exec", target.netns, sys.executable, "-m", "arcgap", "import", str(bundle),
         "--target-plain-http"], capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for role in ROLES:
        info = synth_small[role]
        assert oracle_digest(target, "arcdata/" + info.repository.split("/", 1)[1], "v1") == info.digest


def test_export_with_credentials_never_writes_them_into_the_bundle(
    capsys: pytest.CaptureFixture[str], tls_registry: Registry, fresh_registry, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Source behind TLS + Basic auth; credentials from the seed's variables (password via --password-stdin)."""
    import io
    import sys

    import zstandard

    from devtools.synth import push_small_set

    pushed = push_small_set(tls_registry, prefix="cred")
    monkeypatch.setenv("SOURCE_DOCKER_USERNAME", tls_registry.username or "")
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{tls_registry.password}\n"))
    out = tmp_path / "cred.tar.zst"
    res = arcgap(capsys, "export", "docker-image", "multiarch", *source_args(tls_registry), "--source-repository",
                 "cred", "--source-tag", "v1", "--password-stdin", "-o", str(out))
    assert res.code == 0, res.err
    raw = zstandard.ZstdDecompressor().stream_reader(out.open("rb")).read()
    assert (tls_registry.password or "x").encode() not in raw
    assert (tls_registry.password or "x") not in res.err + res.out
    doc = json.loads(arcgap(capsys, "inspect", str(out), "--json").out)
    assert [i["digest"] for i in doc["images"]] == [pushed["docker"].digest, pushed["index_docker"].digest]


def test_wrong_source_password_stops_without_a_retry_storm(
    capsys: pytest.CaptureFixture[str], tls_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DOCKER_USERNAME", tls_registry.username or "")
    monkeypatch.setenv("SOURCE_DOCKER_PASSWORD", "not-the-password")
    def refused() -> int:
        return tls_registry.log_file.read_text().count("invalid authorization credential")

    before = refused()
    res = arcgap(capsys, "export", "docker-image", *source_args(tls_registry), "--source-repository", "cred",
                 "--source-tag", "v1", "-o", str(tmp_path / "w.tar.zst"))
    assert res.code == 3, res.err
    assert res.error_lines[1] == "hint: check SOURCE_DOCKER_USERNAME and SOURCE_DOCKER_PASSWORD"
    assert refused() - before <= 2  # the first refusal plus one re-authentication, then stop
