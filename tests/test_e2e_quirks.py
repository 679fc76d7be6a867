"""What other registries do, reproduced by :mod:`devtools.quirkproxy` in front of a real distribution registry.

MCR's CDN redirects, ECR's repositories that are not created on push, hosted registries' path-depth limits,
manifest answers without ``Docker-Content-Digest``, relative and absolute upload ``Location`` headers, paged tags
lists, tokens that expire mid-run, and per-repository token scopes across 20+ repositories.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arcgap.commands.options import NetworkOptions
from arcgap.registry.client import RegistryClient
from arcgap.registry.transport import TLSOptions
from devtools.quirkproxy import QuirkProxy
from devtools.registries import Registry
from devtools.synth import SmallSet, generate_release_infos, push_small_set
from tests.e2e_helpers import arcgap, isolate_env, oracle_digest, source_args, target_args
from tests.test_e2e_roundtrip import ROLES, export_small

WRITES = r"^(PUT|PATCH|POST|DELETE) "
BLOB_WRITES = r"^(PATCH /v2/.*/blobs/uploads/|PUT /v2/.*/blobs/uploads/)"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


def proxy_for(registry: Registry, **quirks: object) -> QuirkProxy:
    return QuirkProxy(registry.host, upstream_scheme=registry.scheme, ca_file=registry.ca_file, **quirks)  # type: ignore[arg-type]


@pytest.fixture
def proxies() -> Iterator[list[QuirkProxy]]:
    started: list[QuirkProxy] = []
    yield started
    for proxy in started:
        proxy.stop()


def names(synth: SmallSet) -> list[str]:
    return [synth[r].repository.split("/", 1)[1] for r in ROLES]


def at_proxy(proxy: QuirkProxy, side: str) -> list[str]:
    return [f"--{side}-registry", proxy.host, f"--{side}-plain-http"]


def assert_small_set_at(target: Registry, synth: SmallSet, repository: str, tag: str = "v1") -> None:
    for role in ROLES:
        info = synth[role]
        repo = f"{repository}/{info.repository.split('/', 1)[1]}"
        assert oracle_digest(target, repo, tag) == info.digest, role
        for child in info.children:
            assert oracle_digest(target, repo, child.digest) == child.digest, role


# -- MCR: blobs from a CDN on another origin ------------------------------------------------------------------


def test_export_follows_cdn_redirects_and_never_sends_the_token_there(
    capsys: pytest.CaptureFixture[str], synth_small_token: SmallSet, fresh_registry, proxies: list[QuirkProxy],
    tmp_path: Path,
) -> None:
    proxy = proxy_for(synth_small_token.registry, cdn_redirect=True)
    proxies.append(proxy)
    bundle = tmp_path / "cdn.tar.zst"
    res = arcgap(capsys, "export", *names(synth_small_token), *at_proxy(proxy, "source"),
                 "--source-repository", "synth", "--source-tag", "v1", "-o", str(bundle))
    assert res.code == 0, res.err
    blob_gets = proxy.matching(r"^GET /v2/.*/blobs/sha256:")
    assert blob_gets and all(r.status == 307 for r in blob_gets if "authorization" in r.headers)
    assert all(r.headers.get("authorization", "").startswith("Bearer ") for r in blob_gets if r.status == 307)
    served = [r for r in proxy.cdn.requests if r.status in (200, 206)]
    assert len(served) == len({r.line.split("/")[-1] for r in blob_gets if r.status == 307})
    assert all("authorization" not in r.headers for r in proxy.cdn.requests)
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(bundle), *target_args(target), "--target-repository", "arc")
    assert res.code == 0, res.err
    assert_small_set_at(target, synth_small_token, "arc")


def test_mirror_follows_cdn_redirects_and_never_sends_the_password_there(
    capsys: pytest.CaptureFixture[str], tls_registry: Registry, fresh_registry, proxies: list[QuirkProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    synth = push_small_set(tls_registry, prefix="cdn")
    proxy = proxy_for(tls_registry, cdn_redirect=True)
    proxies.append(proxy)
    monkeypatch.setenv("SOURCE_DOCKER_USERNAME", tls_registry.username or "")
    monkeypatch.setenv("SOURCE_DOCKER_PASSWORD", tls_registry.password or "")
    target: Registry = fresh_registry()
    res = arcgap(capsys, "mirror", *names(synth), *at_proxy(proxy, "source"), "--source-repository", "cdn",
                 "--source-tag", "v1", *target_args(target), "--target-repository", "arc")
    assert res.code == 0, res.err
    assert any(r.headers.get("authorization", "").startswith("Basic ") for r in proxy.matching(r"/blobs/sha256:"))
    assert [r for r in proxy.cdn.requests if r.status == 200]
    for seen in proxy.cdn.requests:
        assert "authorization" not in seen.headers
        assert not any((tls_registry.password or "?") in v for v in seen.headers.values())
    assert_small_set_at(target, synth, "arc")


# -- ECR: repositories are not created on push; hosted registries: path depth ---------------------------------


def test_import_into_a_registry_that_creates_no_repositories_names_them_before_any_blob(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, proxies: list[QuirkProxy],
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "ecr.tar.zst"
    export_small(capsys, synth_small, bundle)
    target: Registry = fresh_registry()
    wanted = [f"arc/{n}" for n in names(synth_small)]
    proxy = proxy_for(target, existing_repositories={wanted[0], wanted[2]})
    proxies.append(proxy)
    res = arcgap(capsys, "import", str(bundle), *at_proxy(proxy, "target"), "--target-repository", "arc")
    assert res.code == 4, res.err
    error, hint = res.error_lines
    missing = [w for i, w in enumerate(wanted) if i not in (0, 2)]
    assert "does not create repositories on push" in error and all(m in error for m in missing)
    assert "aws ecr create-repository --repository-name NAME" in hint and "--target-repository" in hint
    assert "no blob was sent" in hint
    assert proxy.count(BLOB_WRITES) == 0 and proxy.count(r"^PUT /v2/.*/manifests/") == 0
    assert target.raw_client().catalog() == []
    # The operator creates them: the same command now goes through.
    proxy.existing_repositories = set(wanted)
    deletes = proxy.count(r"^DELETE ")  # the sessions the refused run had opened, cancelled
    res = arcgap(capsys, "import", str(bundle), *at_proxy(proxy, "target"), "--target-repository", "arc")
    assert res.code == 0, res.err
    assert_small_set_at(target, synth_small, "arc")
    assert proxy.count(r"^DELETE ") == deletes  # every probe's session served an upload


def test_mirror_into_a_registry_that_creates_no_repositories_stops_before_any_blob(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, proxies: list[QuirkProxy],
) -> None:
    target: Registry = fresh_registry()
    proxy = proxy_for(target, existing_repositories=set())
    proxies.append(proxy)
    res = arcgap(capsys, "mirror", *names(synth_small), *source_args(synth_small.registry),
                 "--source-repository", "synth", "--source-tag", "v1", *at_proxy(proxy, "target"),
                 "--target-repository", "arc")
    assert res.code == 4, res.err
    assert "does not create repositories on push" in res.error_lines[0]
    assert proxy.count(r"^POST ") == 1  # the first repository alone is asked first
    assert proxy.count(BLOB_WRITES) == 0 and target.raw_client().catalog() == []


@pytest.mark.parametrize("command", ["import", "mirror"])
def test_a_path_too_deep_for_the_registry_is_one_error_before_any_blob(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, proxies: list[QuirkProxy],
    tmp_path: Path, command: str,
) -> None:
    target: Registry = fresh_registry()
    proxy = proxy_for(target, max_path_depth=2)
    proxies.append(proxy)
    if command == "import":
        bundle = tmp_path / "deep.tar.zst"
        export_small(capsys, synth_small, bundle)
        argv = ["import", str(bundle)]
    else:
        argv = ["mirror", *names(synth_small), *source_args(synth_small.registry), "--source-repository", "synth",
                "--source-tag", "v1"]
    res = arcgap(capsys, *argv, *at_proxy(proxy, "target"), "--target-repository", "mirror/arcdata")
    assert res.code == 6, res.err
    error, hint = res.error_lines
    assert "refuses the repository name mirror/arcdata/" in error and "NAME_INVALID" in error
    assert "shorter --target-repository" in hint
    assert proxy.count(BLOB_WRITES) == 0 and target.raw_client().catalog() == []
    res = arcgap(capsys, *argv, *at_proxy(proxy, "target"), "--target-repository", "arcdata")
    assert res.code == 0, res.err
    assert_small_set_at(target, synth_small, "arcdata")


# -- manifests without Docker-Content-Digest; upload Locations ------------------------------------------------


def test_no_docker_content_digest_on_manifest_answers(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, proxies: list[QuirkProxy],
    tmp_path: Path,
) -> None:
    source = proxy_for(synth_small.registry, strip_manifest_digest=True)
    target: Registry = fresh_registry()
    to = proxy_for(target, strip_manifest_digest=True)
    proxies += [source, to]
    info = synth_small["docker"]
    head = httpx.head(f"http://{source.host}/v2/{info.repository}/manifests/v1",
                      headers={"Accept": info.media_type})
    assert head.status_code == 200 and "docker-content-digest" not in head.headers  # the quirk is on
    bundle = tmp_path / "nodcd.tar.zst"
    res = arcgap(capsys, "export", *names(synth_small), *at_proxy(source, "source"), "--source-repository",
                 "synth", "--source-tag", "v1", "-o", str(bundle))
    assert res.code == 0, res.err
    res = arcgap(capsys, "import", str(bundle), *at_proxy(to, "target"), "--target-repository", "imp")
    assert res.code == 0, res.err
    assert_small_set_at(target, synth_small, "imp")
    res = arcgap(capsys, "import", str(bundle), *at_proxy(to, "target"), "--target-repository", "imp", "--json")
    assert res.code == 0, res.err  # tags compared by the digest of the bytes: all already in place
    assert {i["action"] for i in json.loads(res.out)["images"]} == {"skipped"}
    res = arcgap(capsys, "mirror", *names(synth_small), *at_proxy(source, "source"), "--source-repository",
                 "synth", "--source-tag", "v1", *at_proxy(to, "target"), "--target-repository", "mir")
    assert res.code == 0, res.err
    assert_small_set_at(target, synth_small, "mir")


@pytest.mark.parametrize("style", ["relative", "path-relative", "absolute"])
def test_upload_locations_relative_and_absolute(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, proxies: list[QuirkProxy],
    tmp_path: Path, style: str,
) -> None:
    bundle = tmp_path / "loc.tar.zst"
    export_small(capsys, synth_small, bundle)
    target: Registry = fresh_registry()
    proxy = proxy_for(target, location=style)
    proxies.append(proxy)
    res = arcgap(capsys, "import", str(bundle), *at_proxy(proxy, "target"), "--target-repository", "arc",
                 network=NetworkOptions(upload_chunk_bytes=256))  # several PATCHes per layer: Locations chain
    assert res.code == 0, res.err
    assert_small_set_at(target, synth_small, "arc")
    assert proxy.count(r"^PATCH /v2/arc/.*/blobs/uploads/") >= 2
    assert all(r.status < 300 for r in proxy.matching(WRITES))


# -- tags lists in pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("absolute", [False, True])
def test_tags_lists_in_pages_behind_link_headers(
    fresh_registry, proxies: list[QuirkProxy], absolute: bool
) -> None:
    target: Registry = fresh_registry()
    synth = push_small_set(target, prefix="pg")
    info = synth["docker"]
    raw = target.raw_client()
    tags = [f"t{i:02d}" for i in range(11)]
    for tag in tags:
        resp = raw.request("PUT", f"/v2/{info.repository}/manifests/{tag}", content=info.manifest,
                           headers={"Content-Type": info.media_type})
        assert resp.status_code == 201
    proxy = proxy_for(target, tag_page_size=3, absolute_links=absolute)
    proxies.append(proxy)
    with RegistryClient(proxy.host, tls=TLSOptions(plain_http=True)) as client:
        assert sorted(client.list_tags(info.repository)) == sorted([*tags, "v1"])
    assert proxy.count(r"^GET /v2/pg/docker-image/tags/list") == 4  # 12 tags, 3 a page


# -- tokens: expiry mid-run, per-repository scopes ------------------------------------------------------------


def _token_target(fresh_registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    target: Registry = fresh_registry(tls=True, auth="token")
    monkeypatch.setenv("TARGET_DOCKER_USERNAME", target.username or "")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", target.password or "")
    return target


def test_a_token_that_expires_mid_run_is_renewed_once_and_no_write_repeats(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, proxies: list[QuirkProxy],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The token server says 300 s, the registry stops taking each token after 3 s; the first manifest PUT is held
    for 4 s, so every token the run holds expires under it."""
    bundle = tmp_path / "exp.tar.zst"
    export_small(capsys, synth_small, bundle)
    target = _token_target(fresh_registry, monkeypatch)
    server = target.token_server
    assert server is not None
    server.set_policy(dataclasses.replace(server.policy, usable_s=3, expires_in_s=300))  # type: ignore[union-attr]
    proxy = proxy_for(target, hold=(r"^PUT /v2/.*/manifests/", 4.0))
    proxies.append(proxy)
    res = arcgap(capsys, "import", str(bundle), *at_proxy(proxy, "target"), "--target-repository", "arc")
    assert res.code == 0, res.err
    tokens = server.log  # before skopeo asks the same server
    assert_small_set_at(target, synth_small, "arc")
    refused = [r for r in proxy.matching(r" /v2/.+") if r.status == 401]
    assert refused, "no token expired under the run: the test proves nothing"
    writes = proxy.matching(r"^PUT /v2/.*/manifests/")
    done = [r.line for r in writes if r.status == 201]
    assert len(done) == len(set(done))  # each manifest written once: only refused (401) writes were sent again
    assert {r.line for r in writes} == set(done)
    assert len(writes) - len(done) == sum(1 for r in writes if r.status == 401)
    # one token per repository scope, and at most one renewal per refusal (never a storm of token requests)
    assert len(tokens) <= len({e.scopes for e in tokens}) + len(refused), collections.Counter(e.scopes for e in tokens)


def test_short_tokens_are_renewed_before_they_expire(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, proxies: list[QuirkProxy],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tokens honestly good for 2 s: the client fetches a new one before sending a stale one, so the registry
    refuses only the request held in flight longer than its token lives (and that one is sent once more)."""
    bundle = tmp_path / "short.tar.zst"
    export_small(capsys, synth_small, bundle)
    target = _token_target(fresh_registry, monkeypatch)
    server = target.token_server
    assert server is not None
    server.set_policy(dataclasses.replace(server.policy, usable_s=2))  # type: ignore[union-attr]
    proxy = proxy_for(target, hold=(r"^PUT /v2/.*/manifests/", 3.0))
    proxies.append(proxy)
    res = arcgap(capsys, "import", str(bundle), *at_proxy(proxy, "target"), "--target-repository", "arc")
    assert res.code == 0, res.err
    assert_small_set_at(target, synth_small, "arc")
    refused = [r.line for r in proxy.matching(r" /v2/.+") if r.status == 401]
    assert len(refused) <= 1 and all(line.startswith("PUT ") and "/manifests/" in line for line in refused)


def test_twenty_four_repositories_with_per_repository_scopes(
    capsys: pytest.CaptureFixture[str], token_registry: Registry, fresh_registry, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token server that grants only the scope asked: import and mirror of 24 images into 24 repositories each
    ask for about one token per repository (and one per cross-repository mount), never one per request."""
    image_names = [f"img-{i:02d}" for i in range(24)]
    infos = generate_release_infos(token_registry, repository="many", tag="v1", names=image_names,
                                   base_layer_bytes=8192, app_layer_bytes=2048, multiarch_names=())
    source_server = token_registry.token_server
    assert source_server is not None
    bundle = tmp_path / "many.tar.zst"
    before = source_server.requests_served
    res = arcgap(capsys, "export", *image_names, *source_args(token_registry), "--source-repository", "many",
                 "--source-tag", "v1", "-o", str(bundle))
    assert res.code == 0, res.err
    assert source_server.requests_served - before <= len(image_names) + 2  # one pull token per repository

    target = _token_target(fresh_registry, monkeypatch)
    server = target.token_server
    assert server is not None
    res = arcgap(capsys, "import", str(bundle), *target_args(target), "--target-repository", "imp")
    assert res.code == 0, res.err
    imported = server.log  # before skopeo asks the same server
    for name, info in infos.items():
        assert oracle_digest(target, f"imp/{name}", "v1") == info.digest
    # one pull,push token per repository, one per mount of the shared base into another, and the ping's
    assert len(imported) <= 2 * len(image_names) + 2, collections.Counter(e.scopes for e in imported)
    for entry in imported:
        assert entry.status == 200
        repos = {a.name for a in entry.granted}
        assert len(repos) <= 2 and all(r.startswith("imp/") for r in repos)

    monkeypatch.setenv("SOURCE_DOCKER_USERNAME", token_registry.username or "")
    monkeypatch.setenv("SOURCE_DOCKER_PASSWORD", token_registry.password or "")
    before, source_before = len(server.log), source_server.requests_served
    res = arcgap(capsys, "mirror", *image_names, *source_args(token_registry), "--source-repository", "many",
                 "--source-tag", "v1", *target_args(target), "--target-repository", "mir")
    assert res.code == 0, res.err
    mirrored = server.log[before:]
    assert len(mirrored) <= 2 * len(image_names) + 2, collections.Counter(e.scopes for e in mirrored)
    assert source_server.requests_served - source_before <= len(image_names) + 2
    for name, info in infos.items():
        assert oracle_digest(target, f"mir/{name}", "v1") == info.digest
