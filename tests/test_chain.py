"""Upgrade chains in one bundle, against real registries: a site at R0 and a source with R1 < R2 < R3 whose
images share their base layers. One export carries R1..R3 (``--from-release R0``, or repeated ``--release``),
blobs once; ``inspect`` lists the releases; import pushes every release's tags, oldest release first; a receipt
from the site (``--since``) and split parts combine with it; ``arcgap releases`` prints the chain."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from arcgap.bundle.reader import open_bundle
from devtools.faultproxy import FaultProxy
from devtools.pki import CA
from devtools.registries import Registry, start_registry
from devtools.synth import generate_release
from tests.conftest import RegistryFactory, require_tools
from tests.e2e_helpers import arcgap, isolate_env, oracle_digest, source_args, target_args

pytestmark = pytest.mark.services

R0, R1, R2, R3 = "v1.37.0_2025-03-11", "v1.38.0_2025-04-08", "v1.39.0_2025-05-13", "v1.40.0_2025-08-12"
NAMES = ["arc-controller", "arc-bootstrapper", "arc-sqlmi", "arc-monitor-fluentbit"]
# one big base layer shared by every image of every release; small app layers of each release's own
SIZES = {"base_layer_bytes": 192 * 1024, "app_layer_bytes": 2048, "multiarch_names": ("arc-controller",),
         "compressible": 0.0, "base_seed": 7}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, test_ca: CA) -> Iterator[Registry]:
    require_tools()
    with start_registry(tmp_path_factory.mktemp("chain-source")) as reg:
        for n, tag in enumerate((R0, R1, R2, R3)):
            generate_release(reg, tag=tag, names=NAMES, seed=10 + n, **SIZES)
        generate_release(reg, tag="v1.41.0_2025-09-09_master_abc123", names=["arc-controller"], seed=99,
                         **SIZES)  # a dev build: never part of a chain
        yield reg


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


def export(capsys: pytest.CaptureFixture[str], source: Registry, out: Path, *args: str) -> dict:
    res = arcgap(capsys, "export", *source_args(source), "-o", str(out), "--json", "-q", *args)
    assert res.code == 0, res.err
    return json.loads(res.out)


def test_releases_prints_the_chain(capsys: pytest.CaptureFixture[str], source: Registry) -> None:
    res = arcgap(capsys, "releases", *source_args(source), "--from-release", R0, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["chain"] == [R1, R2, R3]
    res = arcgap(capsys, "releases", *source_args(source), "--from-release", R0, "--to-release", R2)
    assert res.code == 0, res.err
    assert f"{R0} (the site's) → {R1} → {R2}" in res.out
    res = arcgap(capsys, "releases", *source_args(source), "--from-release", R3, "--to-release", R1)
    assert res.code == 2 and "is not older than" in res.error_lines[0]


def test_one_bundle_carries_the_chain_for_far_less_than_three(
    capsys: pytest.CaptureFixture[str], source: Registry, tmp_path: Path, fresh_registry: RegistryFactory
) -> None:
    chain = export(capsys, source, tmp_path / "chain.tar.zst", "--from-release", R0)
    assert chain["images"] == 3 * len(NAMES)
    assert [r["tag"] for r in chain["chain"]["releases"]] == [R1, R2, R3]
    separate = [export(capsys, source, tmp_path / f"{tag}.tar.zst", "--release", tag) for tag in (R1, R2, R3)]
    # the summary's count of one bundle per release is what three real bundles carry
    three_content = sum(s["content_bytes"] for s in separate)  # configs and layers, plus a few manifests
    assert 0.9 * three_content < chain["chain"]["separate_bytes"] <= three_content
    three = sum(s["bundle_bytes"] for s in separate)
    assert chain["bundle_bytes"] < 0.5 * three, (chain["bundle_bytes"], three)
    assert chain["chain"]["saved_bytes"] > 0.5 * chain["chain"]["separate_bytes"]

    res = arcgap(capsys, "inspect", str(tmp_path / "chain.tar.zst"), "--json")
    doc = json.loads(res.out)
    assert doc["format_version"] == 4
    assert doc["releases"] == [{"tag": t, "images": len(NAMES)} for t in (R1, R2, R3)]
    human = arcgap(capsys, "inspect", str(tmp_path / "chain.tar.zst")).out
    assert f"3 releases, imported oldest first: {R1} (4 images), {R2} (4 images), {R3} (4 images)" in human

    target = fresh_registry()
    proxy = FaultProxy(target.host)
    try:
        res = arcgap(capsys, "import", str(tmp_path / "chain.tar.zst"), "--target-registry", proxy.host,
                     "--target-plain-http", "--target-repository", "site/arcdata", "-q")
        assert res.code == 0, res.err
        proxy.wait_idle()
        tag_puts = [m.group(1) for p in proxy.matching(r"^PUT /v2/site/arcdata/[^ ]+/manifests/v")
                    if (m := re.search(r"/manifests/(v[^ ?]+)", p.line))]
    finally:
        proxy.stop()
    assert len(tag_puts) == 3 * len(NAMES)
    assert tag_puts == sorted(tag_puts, key=[R1, R2, R3].index)  # every R1 tag before any R2 tag, then R3
    for tag in (R1, R2, R3):
        for name in NAMES:
            assert oracle_digest(target, f"site/arcdata/{name}", tag) == oracle_digest(source, f"arcdata/{name}", tag)


def test_an_explicit_set_of_releases(capsys: pytest.CaptureFixture[str], source: Registry, tmp_path: Path) -> None:
    doc = export(capsys, source, tmp_path / "two.tar.zst", "--release", R3, "--release", R1)
    assert [r["tag"] for r in doc["chain"]["releases"]] == [R1, R3]
    with open_bundle(tmp_path / "two.tar.zst") as reader:
        assert reader.toc.releases == (R1, R3)
        assert [i.tag for i in reader.toc.images] == [R1] * len(NAMES) + [R3] * len(NAMES)


def test_a_chain_refuses_one_target_tag(capsys: pytest.CaptureFixture[str], source: Registry, tmp_path: Path,
                                        fresh_registry: RegistryFactory) -> None:
    export(capsys, source, tmp_path / "c.tar.zst", "--from-release", R1)
    res = arcgap(capsys, "import", str(tmp_path / "c.tar.zst"), *target_args(fresh_registry()),
                 "--target-repository", "arcdata", "--target-tag", "v1", "--no-input")
    assert res.code == 2
    assert res.error_lines[0].startswith("error: the bundle carries 2 releases")
    res = arcgap(capsys, "export", *source_args(source), "--from-release", R1, "--source-tag", R2, "--no-input")
    assert res.code == 2


def test_chain_since_the_sites_receipt_in_parts(
    capsys: pytest.CaptureFixture[str], source: Registry, tmp_path: Path, fresh_registry: RegistryFactory
) -> None:
    target = fresh_registry()
    export(capsys, source, tmp_path / "site.tar.zst", "--release", R0)
    receipt = tmp_path / "site-receipt.yaml"
    res = arcgap(capsys, "import", str(tmp_path / "site.tar.zst"), *target_args(target),
                 "--target-repository", "arcdata", "--receipt", str(receipt), "-q")
    assert res.code == 0, res.err

    full = export(capsys, source, tmp_path / "full.tar.zst", "--from-release", R0)
    out = tmp_path / "upgrade.tar.zst"
    doc = export(capsys, source, out, "--from-release", R0, "--since", str(receipt), "--split-size", "8KiB")
    assert doc["relied_on_bytes"] > 0 and doc["relies_on"]
    assert len(doc["parts"]) > 1
    assert doc["content_bytes"] < full["content_bytes"] - 150 * 1024  # the shared base stays at the site
    assert [r["tag"] for r in doc["chain"]["releases"]] == [R1, R2, R3]
    res = arcgap(capsys, "import", doc["parts"][0], *target_args(target), "--target-repository", "arcdata", "-q")
    assert res.code == 0, res.err
    for tag in (R0, R1, R2, R3):
        for name in NAMES:
            assert oracle_digest(target, f"arcdata/{name}", tag) == oracle_digest(source, f"arcdata/{name}", tag)
