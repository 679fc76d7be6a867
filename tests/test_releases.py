"""Releases at the source, against a real registry holding a synthetic Arc-like repository with two releases:
``arcgap releases``, ``export --release latest``, the missing-image check before any download (and
``--skip-missing``), and ``arcgap manifests new``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from arcgap.arc.imagelist import load_image_list, parse_image_list
from arcgap.arc.listgen import render_image_list
from arcgap.bundle.reader import open_bundle
from arcgap.commands.releases import default_list_path
from devtools.faultproxy import Fault, FaultProxy
from devtools.pki import CA
from devtools.registries import Registry, start_registry
from devtools.synth import ARC_IMAGES, generate_release
from tests.conftest import require_tools
from tests.e2e_helpers import arcgap, isolate_env, source_args

pytestmark = pytest.mark.services

OLD = "v1.29.0_2024-04-09"  # has a shipped list
NEW = "v1.30.0_2024-05-14"  # newer than every shipped list
DEV = "v1.31.0_2024-06-01_master_51c82cae7"  # a dev build: never "latest"
MISSING = ("arc-dns", "arc-kafka")  # not published at NEW
EXTRA = "arc-new-thing"  # only at NEW


@pytest.fixture(scope="module")
def arc_source(tmp_path_factory: pytest.TempPathFactory, test_ca: CA) -> Iterator[Registry]:
    require_tools()
    with start_registry(tmp_path_factory.mktemp("arc-source"), ca=test_ca) as reg:
        sizes = {"base_layer_bytes": 2048, "app_layer_bytes": 512}
        generate_release(reg, tag=OLD, **sizes)
        at_new = [n for n in ARC_IMAGES if n not in MISSING] + [EXTRA]
        generate_release(reg, tag=NEW, names=at_new, seed=1, **sizes)
        generate_release(reg, tag=DEV, names=["arc-controller"], seed=2, **sizes)
        yield reg


@pytest.fixture(scope="module")
def no_catalog(arc_source: Registry) -> Iterator[FaultProxy]:
    """arc_source behind a proxy that refuses ``_catalog`` (404), as registries without a catalog do: the
    shipped lists are the image sets there."""
    proxy = FaultProxy(arc_source.host, faults=[Fault(r"^GET /v2/_catalog", status=404, times=10**9)])
    yield proxy
    proxy.stop()


def proxied(proxy: FaultProxy) -> list[str]:
    return ["--source-registry", proxy.host, "--source-plain-http"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


def test_releases_newest_first_with_shipped_lists_marked(
    capsys: pytest.CaptureFixture[str], arc_source: Registry
) -> None:
    res = arcgap(capsys, "releases", *source_args(arc_source), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["command"] == "releases"
    assert doc["image"] == "arc-controller" and doc["repository"] == "arcdata"
    assert doc["latest"] == NEW
    assert doc["releases"] == [{"tag": NEW, "shipped": False}, {"tag": OLD, "shipped": True}]
    assert doc["other_tags"] == [DEV]
    human = arcgap(capsys, "releases", *source_args(arc_source), "--all")
    assert human.code == 0, human.err
    assert f"newest {NEW}" in human.out and "(shipped list)" in human.out and DEV in human.out


def test_releases_of_an_unknown_repository_is_not_found(
    capsys: pytest.CaptureFixture[str], arc_source: Registry
) -> None:
    res = arcgap(capsys, "releases", *source_args(arc_source), "--source-repository", "nothing-here")
    assert res.code == 4
    assert res.error_lines[0] == f"error: {arc_source.host}/nothing-here/arc-controller not found: cannot list " \
                                 "its release tags"


def test_latest_names_every_missing_image_before_downloading(
    capsys: pytest.CaptureFixture[str], arc_source: Registry, no_catalog: FaultProxy, tmp_path: Path
) -> None:
    out = tmp_path / "latest.tar.zst"
    res = arcgap(capsys, "export", "--release", "latest", *proxied(no_catalog), "-o", str(out), "-q")
    assert res.code == 4, res.err
    # no shipped list for NEW: the newest shipped list, with the usual warning
    assert f"warning: no shipped image list for {NEW}; using the list of {OLD}" in res.err
    error, hint = res.error_lines
    assert error.startswith("error: 2 of 22 images are not at the source: ")
    for name in MISSING:
        assert f"{no_catalog.host}/arcdata/{name}:{NEW}" in error
    assert "--skip-missing" in hint
    assert not out.exists()


def test_skip_missing_exports_the_rest_and_records_the_gap(
    capsys: pytest.CaptureFixture[str], no_catalog: FaultProxy, tmp_path: Path
) -> None:
    out = tmp_path / "skip.tar.zst"
    res = arcgap(capsys, "export", "--release", "latest", *proxied(no_catalog), "-o", str(out),
                 "--skip-missing", "--json", "-q")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["images"] == 20
    expected = [{"name": n, "source": f"{no_catalog.host}/arcdata/{n}:{NEW}"} for n in MISSING]
    assert doc["skipped_images"] == expected
    assert doc["installer"] is None
    assert all(ref.endswith(f":{NEW}") for ref in doc["image_digests"])
    for name in MISSING:
        assert f"warning: skipping {no_catalog.host}/arcdata/{name}:{NEW}" in res.err
    with open_bundle(out) as reader:
        assert reader.toc.extra["skipped_images"] == expected
        assert {i.name for i in reader.toc.images} == set(ARC_IMAGES) - set(MISSING)
    assert arcgap(capsys, "verify", str(out), "-q").code == 0
    res = arcgap(capsys, "inspect", str(out), "--json")
    assert json.loads(res.out)["skipped_images"] == expected
    res = arcgap(capsys, "inspect", str(out))
    assert ("left out at export (not at the source, --skip-missing): 2 images: "
            + ", ".join(s["source"] for s in expected)) in res.out.splitlines()


def test_a_shipped_release_exports_without_skipping(
    capsys: pytest.CaptureFixture[str], arc_source: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "old.tar.zst"
    res = arcgap(capsys, "export", "--release", OLD, *source_args(arc_source), "-o", str(out), "--json", "-q")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["images"] == 22 and doc["skipped_images"] == []
    with open_bundle(out) as reader:
        assert "skipped_images" not in reader.toc.extra
    assert json.loads(arcgap(capsys, "inspect", str(out), "--json").out)["skipped_images"] == []


@pytest.mark.parametrize("catalog", [True, False], ids=["catalog", "no-catalog"])
def test_each_tag_is_asked_once_from_discovery_to_resolve(
    capsys: pytest.CaptureFixture[str], arc_source: Registry, tmp_path: Path, catalog: bool
) -> None:
    """One GET per image's tag, however many steps want it: the release's discovery in the catalog (where there
    is one), the check that names every missing image before any download and the resolve share its answer
    (:meth:`RegistryClient.check_manifest`). It used to be a HEAD each for the first two and then a GET: two
    round trips more before the first layer."""
    faults = [] if catalog else [Fault(r"^GET /v2/_catalog", status=404, times=10**9)]
    proxy = FaultProxy(arc_source.host, faults=faults)
    try:
        res = arcgap(capsys, "export", "--release", OLD, *proxied(proxy), "-o", str(tmp_path / "one.tar.zst"), "-q")
        assert res.code == 0, res.err
        proxy.wait_idle()
        by_tag = [r.line.split()[:2] for r in proxy.requests if r.line.split()[1].endswith(f"/manifests/{OLD}")]
    finally:
        proxy.stop()
    assert {method for method, _ in by_tag} == {"GET"}
    asked = sorted(path for _, path in by_tag)
    assert asked == sorted(set(asked))  # each once
    # the 22 exported; with a catalog also arc-new-thing, which is not at this release (404)
    assert len(asked) == 22 + catalog


def test_skip_missing_when_nothing_is_there_still_fails(
    capsys: pytest.CaptureFixture[str], arc_source: Registry, tmp_path: Path
) -> None:
    res = arcgap(capsys, "export", "--release", OLD, "--source-tag", "v9.9.9_2099-01-01", *source_args(arc_source),
                 "-o", str(tmp_path / "none.tar.zst"), "--skip-missing", "-q")
    assert res.code == 4
    assert res.error_lines[0].startswith("error: 22 of 22 images are not at the source")
    assert "--skip-missing" not in res.error_lines[1]


def test_latest_refuses_a_second_way_to_choose_the_tag(capsys: pytest.CaptureFixture[str]) -> None:
    res = arcgap(capsys, "export", "--release", "latest", "--source-tag", OLD)
    assert res.code == 2
    assert res.error_lines[0].startswith("error: --release latest chooses the list and the tag")


def test_manifests_new_keeps_what_the_source_has(
    capsys: pytest.CaptureFixture[str], arc_source: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "lists" / f"{NEW}.yaml"
    res = arcgap(capsys, "manifests", "new", NEW, "--from", OLD, "--add", EXTRA, "--add", "arc-nope",
                 *source_args(arc_source), "-o", str(out), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["command"] == "manifests new"
    assert doc["missing"] == [*MISSING, "arc-nope"]
    assert doc["added"] == [EXTRA]
    assert doc["previous"] == f"release {OLD}"
    assert "warning: arc-nope has no tag" in res.err
    written = load_image_list(out)
    assert written.release == NEW and written.registry == arc_source.host and written.repository == "arcdata"
    names = [e.name for e in written.images]
    assert names == [n for n in ARC_IMAGES if n not in MISSING] + [EXTRA] == doc["images"]
    text = out.read_text()
    assert text.startswith(f"# arcgap image list — Azure Arc data services {NEW}\n")
    # the new list drives an export of exactly what is there
    bundle = tmp_path / "new.tar.zst"
    res = arcgap(capsys, "export", "--images", str(out), *source_args(arc_source), "-o", str(bundle), "--json", "-q")
    assert res.code == 0, res.err
    assert json.loads(res.out)["images"] == 21
    # an existing file is kept unless --force
    again = arcgap(capsys, "manifests", "new", NEW, *source_args(arc_source), "-o", str(out))
    assert again.code == 9 and again.error_lines[0] == f"error: {out} already exists"


def test_manifests_new_for_a_tag_nobody_has(capsys: pytest.CaptureFixture[str], arc_source: Registry) -> None:
    res = arcgap(capsys, "manifests", "new", "v9.9.9_2099-01-01", *source_args(arc_source), "-o", "x.yaml")
    assert res.code == 4
    assert "has the tag v9.9.9_2099-01-01" in res.error_lines[0]
    assert not Path("x.yaml").exists()


def test_render_keeps_long_forms_and_references() -> None:
    source = parse_image_list(
        "format: arcgap-images/v1\nimages:\n  - arc-a\n  - name: arc-b\n    tag: v1\n"
        "  - docker.io/library/busybox:1.36\n  - name: quay.io/x/y\n    tag: '2024-04-09'\n",
        origin="t",
    )
    text = render_image_list(source.images, tag=NEW, registry="mcr.microsoft.com", repository="arcdata",
                             origin="t")
    again = parse_image_list(text, origin="again")
    assert again.images == source.images
    assert again.release == NEW and again.registry == "mcr.microsoft.com"


def test_default_list_path(tmp_path: Path) -> None:
    assert default_list_path(NEW, tmp_path) == tmp_path / f"{NEW}.yaml"
    (tmp_path / "manifests").mkdir()
    assert default_list_path(NEW, tmp_path) == tmp_path / "manifests" / f"{NEW}.yaml"


def test_a_kept_answer_serves_the_resolve_only_and_once(arc_source: Registry) -> None:
    """check_manifest's answer is taken by the next get_manifest(..., reuse=True) alone: every other read
    asks the registry what the tag points at now."""
    from arcgap.registry.client import RegistryClient
    from arcgap.registry.transport import TLSOptions

    proxy = FaultProxy(arc_source.host)
    repo, tag = "arcdata/arc-controller", OLD
    try:
        with RegistryClient(proxy.host, tls=TLSOptions(plain_http=True)) as client:
            def gets() -> int:
                proxy.wait_idle()
                return len([r for r in proxy.requests if r.line.split()[:2] == ["GET", f"/v2/{repo}/manifests/{tag}"]])

            assert client.check_manifest(repo, tag)
            assert gets() == 1
            fresh = client.get_manifest(repo, tag)  # not the resolve: asked again
            assert gets() == 2
            kept = client.get_manifest(repo, tag, reuse=True)  # the resolve: the check's answer
            assert gets() == 2 and kept.raw == fresh.raw
            client.get_manifest(repo, tag, reuse=True)  # once only
            assert gets() == 3
            assert not client.check_manifest(repo, "v0.0.0_2000-01-01")  # not found: False, nothing kept
    finally:
        proxy.stop()
