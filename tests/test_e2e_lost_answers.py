"""Lost answers and refused credentials: a fault proxy before a real registry.

The proxy forwards a request, lets the registry act, then drops the client's connection without the answer
(``lose_response``), on every N-th blob commit, PATCH or manifest PUT. Import and mirror must finish with
every digest identical (read back by an independent client) in 10 runs out of 10, and must never send a
state-changing request twice to the same place without asking first. A wrong password stops the run in a
handful of requests, counted in the proxy's log (and the token server's, through a second proxy).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from arcgap.commands.options import NetworkOptions
from devtools.faultproxy import Fault, FaultProxy
from devtools.registries import Registry
from devtools.synth import SMALL_SET_ROLES, SmallSet
from tests.e2e_helpers import QUICK_RETRIES, arcgap, oracle_digest, source_args
from tests.test_e2e_roundtrip import clean_env, export_small  # noqa: F401 (autouse fixture)

RUNS = 10
ALWAYS = 10**6  # a fault's ``times`` when it should fire for the whole test
BLOB_COMMIT = r"^PUT /v2/.*/blobs/uploads/"
PATCH = r"^PATCH /v2/.*/blobs/uploads/"
MANIFEST_PUT = r"^PUT /v2/.*/manifests/"
CHANGES_STATE = r"^(PUT|PATCH|DELETE) "
# Small-set blobs: configs ~520 B, app layers ~1.5 KiB, the shared base ~3.6 KiB. 1300-byte chunks give the app
# layers one PATCH each and the base two: every fifth PATCH is lost a couple of times per run, and a blob whose
# session is lost with it (distribution refuses the old location once a PATCH landed) starts over in a new one.
CHUNK = 1300
LOSSES = {
    "commit": (BLOB_COMMIT, 3),
    "patch": (PATCH, 5),
    "manifest": (MANIFEST_PUT, 3),
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, synth_small: SmallSet) -> Path:
    from tests.e2e_helpers import run

    out = tmp_path_factory.mktemp("lost") / "small.tar.zst"
    names = [synth_small[r].repository.split("/", 1)[1] for r in SMALL_SET_ROLES]
    assert run(["export", *names, *source_args(synth_small.registry), "--source-repository", "synth",
                "--source-tag", "v1", "-o", str(out), "-q"]) == 0
    return out


@pytest.fixture
def target(fresh_registry) -> Iterator[tuple[Registry, FaultProxy]]:
    registry: Registry = fresh_registry()
    proxy = FaultProxy(registry.host)
    yield registry, proxy
    proxy.stop()


def names(synth: SmallSet) -> list[str]:
    return [synth[r].repository.split("/", 1)[1] for r in SMALL_SET_ROLES]


def assert_identical(registry: Registry, synth: SmallSet, repository: str, *, oracle: bool = False) -> None:
    """Every manifest (top and children) and every blob, read back and hashed by the raw client."""
    client = registry.raw_client()
    try:
        for role in SMALL_SET_ROLES:
            info = synth[role]
            repo = f"{repository}/{info.repository.split('/', 1)[1]}"
            raw, _ = client.get_manifest(repo, "v1")
            assert "sha256:" + hashlib.sha256(raw).hexdigest() == info.digest, (repo, role)
            for image in (info, *info.children):
                raw, _ = client.get_manifest(repo, image.digest)
                assert "sha256:" + hashlib.sha256(raw).hexdigest() == image.digest, (repo, image.digest)
                for blob in image.layer_digests:
                    assert "sha256:" + hashlib.sha256(client.get_blob(repo, blob)).hexdigest() == blob
            if oracle:  # and once through skopeo, independent of both
                assert oracle_digest(registry, repo, "v1") == info.digest
    finally:
        client.close()


def run_command(capsys: pytest.CaptureFixture[str], command: str, synth: SmallSet, bundle: Path, host: str,
                repository: str, *extra: str, network: NetworkOptions = QUICK_RETRIES):
    target = ["--target-registry", host, "--target-plain-http", "--target-repository", repository]
    if command == "import":
        return arcgap(capsys, "import", str(bundle), *target, "-q", "--json", *extra, network=network)
    return arcgap(capsys, "mirror", *names(synth), *source_args(synth.registry), "--source-repository", "synth",
                  "--source-tag", "v1", *target, "-q", "--json", *extra, network=network)


def assert_nothing_blindly_repeated(proxy: FaultProxy) -> None:
    """No PUT, PATCH or DELETE went twice to the same URL (distribution's upload URLs carry the offset)."""
    proxy.wait_idle()
    lines = [r.line for r in proxy.matching(CHANGES_STATE)]
    repeated = {line for line in lines if lines.count(line) > 1}
    assert not repeated, repeated


@pytest.mark.parametrize("command", ["import", "mirror"])
def test_lost_answers_ten_runs_out_of_ten(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, bundle: Path, target: tuple[Registry, FaultProxy],
    command: str,
) -> None:
    registry, proxy = target
    network = replace(QUICK_RETRIES, upload_chunk_bytes=CHUNK)
    for run in range(RUNS):
        proxy.faults[:] = [Fault(pattern, kind="lose_response", every=every, times=ALWAYS)
                           for pattern, every in LOSSES.values()]
        proxy.requests.clear()
        proxy.seen.clear()
        repository = f"{command}{run}"
        res = run_command(capsys, command, synth_small, bundle, proxy.host, repository, "--jobs", "2",
                          network=network)
        assert res.code == 0, f"run {run + 1}: {res.err}"
        for lost, fault in zip(LOSSES, proxy.faults):
            assert fault.hits >= 1, f"run {run + 1}: no {lost} answer was lost"
        assert_identical(registry, synth_small, repository, oracle=run == RUNS - 1)
        assert_nothing_blindly_repeated(proxy)
        # each lost commit was settled by a HEAD of the blob, never by a second commit
        assert proxy.count(BLOB_COMMIT) == json.loads(res.out)["uploaded_blobs"]
        # each lost manifest PUT by a HEAD of the manifest: every one went once (children and tops by digest,
        # then the tags)
        assert proxy.count(MANIFEST_PUT) == sum(2 + len(synth_small[r].children) for r in SMALL_SET_ROLES)


# -- refused credentials ------------------------------------------------------------------------------------

MAX_REQUESTS = 12
JOBS = 4  # --jobs: the target is asked about blobs this many at a time


def token_proxy(registry: Registry) -> FaultProxy:
    """A proxy before the registry's token server; the registry's proxy points the realm at it."""
    realm = registry.token_server.realm  # type: ignore[union-attr]
    host = realm.split("://", 1)[1].split("/", 1)[0]
    return FaultProxy(host)


@pytest.mark.parametrize("command", ["import", "mirror"])
@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_a_wrong_password_stops_the_run_within_a_handful_of_requests(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, bundle: Path, fresh_registry,
    monkeypatch: pytest.MonkeyPatch, auth: str, command: str,
) -> None:
    registry: Registry = fresh_registry(auth=auth)
    proxy = FaultProxy(registry.host)
    tokens = token_proxy(registry) if auth == "token" else None
    if tokens is not None:
        proxy.rewrite[tokens.upstream] = tokens.host
    monkeypatch.setenv("TARGET_DOCKER_USERNAME", registry.username or "")
    monkeypatch.setenv("TARGET_DOCKER_PASSWORD", "not-the-password")
    try:
        res = run_command(capsys, command, synth_small, bundle, proxy.host, "arc", "--jobs", str(JOBS))
        assert res.code == 3, res.err
        assert res.error_lines[1].startswith("hint: check TARGET_DOCKER_USERNAME and TARGET_DOCKER_PASSWORD")
        proxy.wait_idle()
        sent = len(proxy.requests)
        if tokens is not None:
            tokens.wait_idle()
            assert len(tokens.requests) >= 1 and all(r.status == 401 for r in tokens.requests)
            # the first refusal stops the others: only those already on their way (one per worker) were asked
            assert len(tokens.requests) <= JOBS
            sent += len(tokens.requests)
        assert sent <= MAX_REQUESTS, [r.line[:80] for r in proxy.requests]
        refused = [r.line for r in proxy.requests if r.status == 401 and "authorization" in r.headers]
        assert len(refused) == len(set(refused)) <= JOBS  # no refused request was sent again with a new login
        assert proxy.count(CHANGES_STATE + r"|^POST ") == 0  # nothing was attempted with refused credentials
    finally:
        proxy.stop()
        if tokens is not None:
            tokens.stop()
