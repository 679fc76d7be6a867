"""The real tools: an image signed with cosign 3 (key pair, no transparency log) and notation (a test
certificate), an SBOM attached with ``oras attach``; arcgap exports it, imports it onto distribution (fallback
tags), onto crane's registry (no referrers API either: fallback tags) and onto distribution behind
devtools/referrersproxy (the referrers API); then ``cosign verify`` passes at each target and ``oras discover``
lists the same referrers as at the source, ``notation verify`` passes and ``arcgap preflight`` finds every
referrer at each target; ``arcgap mirror`` onto distribution and the API path, the same. Everything, arcgap and
the tools included, runs in a network namespace with loopback only: the tools try to reach public trust services
on their own.

The tools come from Debian unstable (scripts/get-supplychain-tools.sh, ``$ARCGAP_SUPPLYCHAIN_TOOLS``); the test
is skipped when they are not there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.images import Pusher, push_image
from devtools.layers import make_layer
from devtools.netns import run_in_netns
from devtools.registries import Endpoint, crane_binary

TOOLS = Path(os.environ.get("ARCGAP_SUPPLYCHAIN_TOOLS", "/tmp/supplychain-tools/bin"))
ROOT = Path(__file__).resolve().parent.parent


def _tools() -> None:
    for name in ("cosign", "notation", "oras"):
        if not os.access(TOOLS / name, os.X_OK):
            pytest.skip(f"{name} not found in {TOOLS}: run scripts/get-supplychain-tools.sh")


@pytest.fixture
def crane_in(netns: str, tmp_path: Path) -> Iterator[Endpoint]:
    crane = crane_binary()
    if crane is None:
        pytest.skip("crane not found (ARCGAP_CRANE)")
    proc = subprocess.Popen(["ip", "netns", "exec", netns, str(crane), "registry", "serve", "--address",
                             "127.0.0.1:5601"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ep = Endpoint.from_url("http://127.0.0.1:5601", netns=netns)
    try:
        for _ in range(100):
            ok = subprocess.run(["ip", "netns", "exec", netns, "curl", "-sf", "http://127.0.0.1:5601/v2/"],
                                capture_output=True).returncode == 0
            if ok:
                break
            time.sleep(0.1)
        yield ep
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cosign_notation_oras_survive_the_gap(netns: str, fresh_registry, crane_in: Endpoint,
                                              tmp_path: Path) -> None:
    _tools()
    from devtools.referrersproxy import ReferrersProxy

    src = fresh_registry(netns=netns)
    dist = fresh_registry(netns=netns)
    api_upstream = fresh_registry(netns=netns)
    proxy = run_in_netns(netns, ReferrersProxy, api_upstream.url)
    api = Endpoint.from_url(f"http://{proxy.host}", netns=netns)
    home = tmp_path / "home"
    (home / "cfg" / "notation").mkdir(parents=True)
    env = {"PATH": f"{TOOLS}:/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home / "cfg"),
           "COSIGN_PASSWORD": "", "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}

    def run(*argv: str, ok: bool = True) -> str:
        proc = subprocess.run(["ip", "netns", "exec", netns, "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                               *argv], capture_output=True, text=True, cwd=home, timeout=300)
        assert not ok or proc.returncode == 0, f"{argv[:3]}: {proc.stderr[-2000:]}"
        return proc.stdout

    def pushed() -> str:
        with Pusher(src) as p:
            return push_image(p, "sc/app", "v1", layers=[make_layer("supplychain", 4096)], flavor="oci").digest

    digest = run_in_netns(netns, pushed)
    ref = f"{src.host}/sc/app@{digest}"
    run("cosign", "generate-key-pair")
    run("cosign", "signing-config", "create", "--out", "signing.json")
    run("cosign", "sign", "--key", "cosign.key", "--signing-config", "signing.json", "--allow-http-registry",
        "--yes", ref)
    run("notation", "cert", "generate-test", "--default", "test")
    run("notation", "sign", "--insecure-registry", ref)
    (home / "sbom.spdx.json").write_text('{"spdxVersion":"SPDX-2.3"}')
    run("oras", "attach", "--plain-http", "--artifact-type", "application/spdx+json", ref, "sbom.spdx.json")
    (home / "cfg" / "notation" / "trustpolicy.json").write_text(json.dumps({"version": "1.0", "trustPolicies": [{
        "name": "test", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:test"], "trustedIdentities": ["*"]}]}))

    def discovered(host: str, repo: str) -> set[tuple[str, str]]:
        doc = json.loads(run("oras", "discover", "--plain-http", "--format", "json", f"{host}/{repo}@{digest}"))
        return {(r["digest"], r.get("artifactType", "")) for r in doc["referrers"]}

    run("notation", "verify", "--insecure-registry", ref)
    at_source = discovered(src.host, "sc/app")
    assert len(at_source) == 3  # cosign, notation, the SBOM
    bundle = tmp_path / "sc.tar.zst"
    out = json.loads(run(sys.executable, "-m", "arcgap", "export", "app", "--source-registry", src.host,
                         "--source-plain-http", "--source-repository", "sc", "--source-tag", "v1", "-o",
                         str(bundle), "--json", "-q", "--no-input"))
    assert out["referrers"]["referrers"] == 3
    kinds = out["referrers"]["per_image"]["app:v1"]
    assert kinds["application/vnd.cncf.notary.signature"] == kinds["application/spdx+json"] == 1, kinds
    for target, way in ((dist, "fallback tags"), (crane_in, "fallback tags"), (api, "referrers API")):
        res = json.loads(run(sys.executable, "-m", "arcgap", "import", str(bundle), "--target-registry",
                             target.host, "--target-plain-http", "--target-repository", "site", "--json", "-q",
                             "--no-input"))
        assert res["referrers"]["way"] == way, (target.host, res["referrers"])
        moved = f"{target.host}/site/app@{digest}"
        here = discovered(target.host, "site/app")
        if way == "fallback tags":  # the index arcgap writes lists each referrer as the source listed it
            assert here == at_source, target.host
        else:  # a registry's own API types each referrer by its manifest (cosign's source index: its config's)
            assert {d for d, _ in here} == {d for d, _ in at_source}, target.host
        assert "verified" in run("cosign", "verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true",
                                 "--allow-http-registry", moved) + "verified"
        assert "Successfully verified" in run("notation", "verify", "--insecure-registry", moved), target.host
        check = json.loads(run(sys.executable, "-m", "arcgap", "preflight", str(bundle), "--target-registry",
                               target.host, "--target-plain-http", "--target-repository", "site", "--json"))
        assert check["ok"] and check["images"][0]["referrers_checked"] == 3, check
        assert check["images"][0]["referrers_missing"] == [], check
        placed = res["referrers"]
        assert placed["by_api" if way == "referrers API" else "by_fallback"] == 3 and not placed["unplaced"], placed
    # mirror (registry to registry, no bundle) onto distribution and onto the API path, the same checks
    for target, way in ((dist, "fallback tags"), (api, "referrers API")):
        res = json.loads(run(sys.executable, "-m", "arcgap", "mirror", "app", "--source-registry", src.host,
                             "--source-plain-http", "--source-repository", "sc", "--source-tag", "v1",
                             "--target-registry", target.host, "--target-plain-http", "--target-repository",
                             "mir", "--json", "-q", "--no-input"))
        assert res["referrers"]["way"] == way, (target.host, res["referrers"])
        moved = f"{target.host}/mir/app@{digest}"
        assert {d for d, _ in discovered(target.host, "mir/app")} == {d for d, _ in at_source}, target.host
        assert "verified" in run("cosign", "verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true",
                                 "--allow-http-registry", moved) + "verified"
        assert "Successfully verified" in run("notation", "verify", "--insecure-registry", moved), target.host
    run_in_netns(netns, proxy.close)
