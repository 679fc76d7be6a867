"""End to end: export carries an image's OCI referrers (fallback tag, cosign tag, a signature on an SBOM) from a
real distribution registry into the bundle; verify checks them; --no-referrers and --referrers-type narrow it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from arcgap.oci.digest import Digest
from arcgap.registry.referrers import fallback_tag
from devtools.images import Pusher, push_artifact, push_image
from devtools.layers import make_layer
from devtools.registries import Endpoint, Registry
from tests.e2e_helpers import arcgap, source_args
from tests.test_e2e_receipt import member_bytes
from tests.test_e2e_roundtrip import clean_env  # noqa: F401 (autouse fixture)
from tests.test_referrers_discovery import OCI_INDEX, OCI_MANIFEST, _index_of

SPDX = "application/spdx+json"
SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"


@pytest.fixture(scope="module")
def signed(plain_registry: Registry) -> dict[str, str]:
    repo = "refe2e/app"
    with Pusher(plain_registry) as p:
        img = push_image(p, repo, "v1", layers=[make_layer("refe2e:img", 2048)], flavor="oci")
        subj = (img.digest, len(img.manifest), img.media_type)
        sbom, sbom_raw = push_artifact(p, repo, subj, SPDX, b'{"spdxVersion":"SPDX-2.3"}')
        sig, sig_raw = push_artifact(p, repo, (sbom, len(sbom_raw), OCI_MANIFEST), SIG, b"signature")
        p.push_manifest(repo, fallback_tag(Digest.parse(img.digest)), _index_of([(sbom, sbom_raw, SPDX)]), OCI_INDEX)
        p.push_manifest(repo, fallback_tag(Digest.parse(sbom)), _index_of([(sig, sig_raw, SIG)]), OCI_INDEX)
        legacy, legacy_raw = push_artifact(p, repo, None, "application/vnd.dev.cosign.simplesigning.v1+json", b"o")
        p.push_manifest(repo, fallback_tag(Digest.parse(img.digest)) + ".sig", legacy_raw, OCI_MANIFEST)
    return {"image": img.digest, "sbom": sbom, "sig": sig, "legacy": legacy}


def _export(capsys: pytest.CaptureFixture[str], reg: Registry, out: Path, *extra: str) -> dict:
    res = arcgap(capsys, "export", "app", *source_args(reg), "--source-repository", "refe2e", "--source-tag", "v1",
                 "-o", str(out), "--json", "-q", *extra)
    assert res.code == 0, res.err
    return json.loads(res.out)


def test_export_carries_referrers_and_verify_checks_them(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, signed: dict[str, str], tmp_path: Path,
) -> None:
    out = tmp_path / "b.tar.zst"
    result = _export(capsys, plain_registry, out)
    assert result["referrers"]["referrers"] == 3
    assert result["referrers"]["found_by"] == {"fallback": 2, "tag": 1}
    doc = yaml.safe_load(member_bytes(out, "arcgap.yaml"))
    assert doc["format_version"] == 5
    got = {(r["digest"], r["subject"], r["found_by"], r.get("tag")) for r in doc["referrers"]}
    tag = fallback_tag(Digest.parse(signed["image"])) + ".sig"
    assert got == {(signed["sbom"], signed["image"], "fallback", None),
                   (signed["sig"], signed["sbom"], "fallback", None),
                   (signed["legacy"], signed["image"], "tag", tag)}
    kinds = [b["kind"] for b in doc["blobs"]]
    assert kinds.index("config") > max(i for i, b in enumerate(doc["blobs"]) if b["digest"] == signed["sig"])
    for name in ("sbom", "sig", "legacy"):  # the referrers' bytes are in the bundle, byte for byte
        assert Digest.of(member_bytes(out, f"blobs/sha256/{signed[name].split(':')[1]}")) == Digest.parse(signed[name])
    res = arcgap(capsys, "verify", str(out))
    assert res.code == 0, res.err


def test_no_referrers_and_a_type_filter(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, signed: dict[str, str], tmp_path: Path,
) -> None:
    none = _export(capsys, plain_registry, tmp_path / "n.tar.zst", "--no-referrers")
    assert "referrers" not in none
    doc = yaml.safe_load(member_bytes(tmp_path / "n.tar.zst", "arcgap.yaml"))
    assert doc["format_version"] == 1 and "referrers" not in doc
    only = _export(capsys, plain_registry, tmp_path / "s.tar.zst", "--referrers-type", SPDX)
    assert only["referrers"]["per_image"] == {"app:v1": {SPDX: 1, "tag:sig": 1}}  # the SBOM's signature not asked


def test_a_bundle_whose_referrer_names_another_subject_is_refused(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, signed: dict[str, str], tmp_path: Path,
) -> None:
    from arcgap.bundle.format import TableOfContents
    from arcgap.errors import BundleFormatError

    out = tmp_path / "b.tar.zst"
    _export(capsys, plain_registry, out)
    doc = yaml.safe_load(member_bytes(out, "arcgap.yaml"))
    for r in doc["referrers"]:
        if r["digest"] == signed["sig"]:
            r["subject"] = signed["image"]
    with pytest.raises(BundleFormatError):  # the signature's subject is the SBOM, listed as the image: refused
        from arcgap.bundle.graph import build_graph
        toc = TableOfContents.from_yaml(yaml.safe_dump(doc).encode())
        manifests = {b.digest: member_bytes(out, b.member) for b in toc.blobs if b.kind in ("index", "manifest")}
        build_graph(toc, manifests, origin="arcgap.yaml")


def test_import_onto_distribution_keeps_referrers_findable_by_fallback_tags(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, signed: dict[str, str], fresh_registry,
    tmp_path: Path,
) -> None:
    from arcgap.registry.client import RegistryClient
    from arcgap.registry.transport import TLSOptions
    from arcgap.transfer.referrers import discover
    from tests.e2e_helpers import target_args

    out = tmp_path / "b.tar.zst"
    _export(capsys, plain_registry, out)
    target: Registry = fresh_registry()
    # someone else's referrer already sits in the fallback index at the target: it must stay
    with Pusher(target) as p:
        other, other_raw = push_artifact(p, "site/app", (signed["image"], 1, OCI_MANIFEST), "x/other", b"theirs")
        p.push_manifest("site/app", fallback_tag(Digest.parse(signed["image"])),
                        _index_of([(other, other_raw, "x/other")]), OCI_INDEX)
    res = arcgap(capsys, "import", str(out), *target_args(target), "--target-repository", "site", "--json", "-q",
                 "--receipt", str(tmp_path / "r.yaml"))
    assert res.code == 0, res.err
    placed = json.loads(res.out)["referrers"]
    assert placed["target_api"] is False and placed["way"] == "fallback tags"
    assert (placed["by_api"], placed["by_fallback"], placed["by_tag"]) == (0, 2, 1)
    assert yaml.safe_load((tmp_path / "r.yaml").read_text())["referrers"] == placed
    found = discover(RegistryClient(target.host, tls=TLSOptions(plain_http=True)), "site/app",
                     [Digest.parse(signed["image"])])
    got = {(str(r.manifest.digest), str(r.subject), r.found_by) for r in found.referrers}
    assert got == {(signed["sbom"], signed["image"], "fallback"), (signed["sig"], signed["sbom"], "fallback"),
                   (signed["legacy"], signed["image"], "tag"), (other, signed["image"], "fallback")}
    again = arcgap(capsys, "import", str(out), *target_args(target), "--target-repository", "site", "--json", "-q")
    assert again.code == 0, again.err
    assert json.loads(again.out)["referrers"]["by_fallback"] == 2  # found there: nothing written twice
    assert len(discover(RegistryClient(target.host, tls=TLSOptions(plain_http=True)), "site/app",
                        [Digest.parse(signed["image"])]).referrers) == 4


@pytest.fixture
def api_target(fresh_registry):  # a distribution registry behind a proxy that adds the referrers API
    from devtools.referrersproxy import ReferrersProxy

    reg: Registry = fresh_registry()
    proxy = ReferrersProxy(reg.url)
    try:
        yield Endpoint.from_url(f"http://{proxy.host}"), proxy
    finally:
        proxy.close()


def _at(reg: Endpoint, repo: str, digest: str) -> set[tuple[str, str, str]]:
    from arcgap.registry.client import RegistryClient
    from arcgap.registry.transport import TLSOptions
    from arcgap.transfer.referrers import discover

    found = discover(RegistryClient(reg.host, tls=TLSOptions(plain_http=True)), repo, [Digest.parse(digest)])
    return {(str(r.manifest.digest), str(r.subject), r.found_by) for r in found.referrers}


def test_mirror_and_import_onto_a_registry_with_the_referrers_api(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, signed: dict[str, str], api_target,
    tmp_path: Path,
) -> None:
    from tests.e2e_helpers import target_args

    target, proxy = api_target
    res = arcgap(capsys, "mirror", "app", *source_args(plain_registry), "--source-repository", "refe2e",
                 "--source-tag", "v1", *target_args(target), "--target-repository", "mir", "--json", "-q")
    assert res.code == 0, res.err
    placed = json.loads(res.out)["referrers"]
    assert (placed["target_api"], placed["by_api"], placed["by_fallback"], placed["by_tag"]) == (True, 2, 0, 1)
    want = {(signed["sbom"], signed["image"], "api"), (signed["sig"], signed["sbom"], "api"),
            (signed["legacy"], signed["image"], "tag")}
    assert _at(target, "mir/app", signed["image"]) == want
    assert not any(r.endswith(fallback_tag(Digest.parse(signed["image"]))) for r in proxy.requests
                   if r.startswith("PUT")), "no fallback tag is written where the API answers"
    out = tmp_path / "b.tar.zst"
    _export(capsys, plain_registry, out)
    res = arcgap(capsys, "import", str(out), *target_args(target), "--target-repository", "imp", "--json", "-q")
    assert res.code == 0, res.err
    assert json.loads(res.out)["referrers"]["by_api"] == 2
    assert _at(target, "imp/app", signed["image"]) == want


def test_inspect_lists_the_referrers(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, signed: dict[str, str], tmp_path: Path,
) -> None:
    out = tmp_path / "b.tar.zst"
    _export(capsys, plain_registry, out)
    res = arcgap(capsys, "inspect", str(out), "--json")
    assert res.code == 0, res.err
    assert {r["digest"] for r in json.loads(res.out)["referrers"]} == {signed["sbom"], signed["sig"], signed["legacy"]}
    human = arcgap(capsys, "inspect", str(out))
    assert f"referrer {signed['sig']}  {SIG}  of {signed['sbom']}  (by fallback)" in human.out


def test_preflight_lists_the_referrers_missing_at_the_target(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, signed: dict[str, str], fresh_registry,
    tmp_path: Path,
) -> None:
    from tests.e2e_helpers import target_args

    full, bare = tmp_path / "b.tar.zst", tmp_path / "n.tar.zst"
    _export(capsys, plain_registry, full)
    _export(capsys, plain_registry, bare, "--no-referrers")
    target: Registry = fresh_registry()
    where = (*target_args(target), "--target-repository", "site")
    assert arcgap(capsys, "import", str(bare), *where, "-q").code == 0
    res = arcgap(capsys, "preflight", str(full), *where, "--json")
    assert res.code == 4, res.err  # as a missing platform: the image is there, incomplete
    (image,) = json.loads(res.out)["images"]
    assert image["status"] == "incomplete" and image["referrers_checked"] == 3
    got = {(r["kind"], r["digest"], r["subject"]) for r in image["referrers_missing"]}
    assert got == {(SPDX, signed["sbom"], signed["image"]), (SIG, signed["sig"], signed["sbom"]),
                   ("tag:sig", signed["legacy"], signed["image"])}
    text = arcgap(capsys, "preflight", str(full), *where)
    assert text.code == 4
    assert f"  referrer {signed['sbom']} ({SPDX}) of {Digest.parse(signed['image']).short} is missing" in text.out
    assert arcgap(capsys, "import", str(full), *where, "-q").code == 0
    res = arcgap(capsys, "preflight", str(full), *where, "--json")
    assert res.code == 0, res.err
    (image,) = json.loads(res.out)["images"]
    assert image["status"] == "ok" and image["referrers_missing"] == []


def test_since_a_receipt_carries_a_new_signature_of_an_unchanged_image(
    capsys: pytest.CaptureFixture[str], fresh_registry, tmp_path: Path,
) -> None:
    from arcgap.registry.client import RegistryClient
    from arcgap.registry.transport import TLSOptions
    from arcgap.transfer.referrers import discover
    from tests.e2e_helpers import target_args

    src: Registry = fresh_registry()
    repo = "refe2e/app"
    with Pusher(src) as p:
        img = push_image(p, repo, "v1", layers=[make_layer("refsince:img", 4096)], flavor="oci")
        subj = (img.digest, len(img.manifest), img.media_type)
        sbom, sbom_raw = push_artifact(p, repo, subj, SPDX, b'{"spdxVersion":"SPDX-2.3"}')
        p.push_manifest(repo, fallback_tag(Digest.parse(img.digest)), _index_of([(sbom, sbom_raw, SPDX)]), OCI_INDEX)
    target: Registry = fresh_registry()
    where = (*target_args(target), "--target-repository", "site")
    first, receipt = tmp_path / "a.tar.zst", tmp_path / "r.yaml"
    _export(capsys, src, first)
    assert arcgap(capsys, "import", str(first), *where, "-q", "--receipt", str(receipt)).code == 0
    # since the receipt: the image is unchanged, but it gained a signature
    with Pusher(src) as p:
        sig, sig_raw = push_artifact(p, repo, subj, SIG, b"a signature made after the first bundle")
        p.push_manifest(repo, fallback_tag(Digest.parse(img.digest)),
                        _index_of([(sbom, sbom_raw, SPDX), (sig, sig_raw, SIG)]), OCI_INDEX)
    diff = tmp_path / "d.tar.zst"
    result = _export(capsys, src, diff, "--since", str(receipt))
    assert result["referrers"]["referrers"] == 2
    doc = yaml.safe_load(member_bytes(diff, "arcgap.yaml"))
    assert {r["digest"] for r in doc["referrers"]} == {sbom, sig}
    carried = {b["digest"] for b in doc["blobs"]}
    sig_layer = json.loads(sig_raw)["layers"][0]["digest"]
    assert sig in carried and sig_layer in carried  # the new referrer and its blob travel
    assert json.loads(img.manifest)["layers"][0]["digest"] not in carried  # the unchanged image's layer does not
    assert doc["relies_on"], doc.get("relies_on")
    # an upgrade chain's base is a bundle (or its sidecar): the same content travels
    chained = tmp_path / "c.tar.zst"
    _export(capsys, src, chained, "--since", str(first))
    chain_doc = yaml.safe_load(member_bytes(chained, "arcgap.yaml"))
    assert {b["digest"] for b in chain_doc["blobs"]} == carried
    assert {r["digest"] for r in chain_doc["referrers"]} == {sbom, sig}
    res = arcgap(capsys, "import", str(diff), *where, "--json", "-q")
    assert res.code == 0, res.err
    found = discover(RegistryClient(target.host, tls=TLSOptions(plain_http=True)), "site/app",
                     [Digest.parse(img.digest)])
    assert {str(r.manifest.digest) for r in found.referrers} == {sbom, sig}


def test_the_handoff_tells_the_referrers(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, signed: dict[str, str], fresh_registry,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.e2e_helpers import target_args

    monkeypatch.chdir(tmp_path)
    bundle = tmp_path / "b.tar.zst"
    _export(capsys, plain_registry, bundle)
    target: Registry = fresh_registry()
    where = (*target_args(target), "--target-repository", "site")
    res = arcgap(capsys, "import", str(bundle), *where, "--handoff", "h1", "--json", "-q")
    assert res.code == 0, res.err
    assert json.loads(res.out)["handoff"]["referrers"] == {"referrers": 3, "kinds": {}, "way": "fallback tags"}
    notes = (tmp_path / "h1" / "NEXT-STEPS.md").read_text()
    assert "3 referrers travel with the release; the registry has no referrers API" in notes
    res = arcgap(capsys, "handoff", "--bundle", str(bundle), "--target-registry", target.host, "--target-repository",
                 "site", "-o", "h2", "--no-secret", "--json", "-y")
    assert res.code == 0, res.err
    assert json.loads(res.out)["referrers"] == {"referrers": 3, "kinds": {SPDX: 1, SIG: 1, "tag:sig": 1},
                                                "way": None}
    assert f"3 referrers travel with the release (1 {SPDX}" in (tmp_path / "h2" / "NEXT-STEPS.md").read_text()


def test_a_receipt_records_the_referrers_so_preflight_and_handoff_know_them(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, signed: dict[str, str], fresh_registry,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.e2e_helpers import target_args

    monkeypatch.chdir(tmp_path)
    bundle, receipt = tmp_path / "b.tar.zst", tmp_path / "r.yaml"
    _export(capsys, plain_registry, bundle)
    target: Registry = fresh_registry()
    where = (*target_args(target), "--target-repository", "site")
    assert arcgap(capsys, "import", str(bundle), *where, "-q", "--receipt", str(receipt)).code == 0
    (image,) = yaml.safe_load(receipt.read_bytes())["images"]
    tag = fallback_tag(Digest.parse(signed["image"])) + ".sig"
    assert {(r["digest"], r["subject"], r.get("tag")) for r in image["referrers"]} == {
        (signed["sbom"], signed["image"], None), (signed["sig"], signed["sbom"], None),
        (signed["legacy"], signed["image"], tag)}
    from devtools.faultproxy import FaultProxy

    proxy = FaultProxy(target.host)  # counts: the referrers API is probed once a run, not once a subject
    try:
        res = arcgap(capsys, "preflight", str(receipt), "--target-registry", proxy.host, "--target-plain-http",
                     "--target-repository", "site", "--json")
        proxy.wait_idle()
        assert proxy.count(r"^GET /v2/\S+/referrers/") == 1  # two subjects: the image and the SBOM
    finally:
        proxy.stop()
    assert res.code == 0, res.err
    (checked,) = json.loads(res.out)["images"]
    assert checked["status"] == "ok" and checked["referrers_checked"] == 3
    res = arcgap(capsys, "handoff", "--receipt", str(receipt), "--target-registry", target.host,
                 "--target-repository", "site", "-o", "h", "--no-secret", "--json", "-y")
    assert res.code == 0, res.err
    assert json.loads(res.out)["referrers"]["kinds"] == {SPDX: 1, SIG: 1, "tag:sig": 1}
    # The SBOM drops out of the image's fallback tag index at the target: preflight with the receipt says so.
    with Pusher(target) as p:
        p.push_manifest("site/app", fallback_tag(Digest.parse(signed["image"])), _index_of([]), OCI_INDEX)
    res = arcgap(capsys, "preflight", str(receipt), *where, "--json")
    assert res.code == 4, res.err
    (checked,) = json.loads(res.out)["images"]
    assert [(r["digest"], r["subject"]) for r in checked["referrers_missing"]] == [(signed["sbom"], signed["image"])]
    # A receipt of an older arcgap (no referrers recorded) still reads, and checks the images only.
    doc = yaml.safe_load(receipt.read_bytes())
    del doc["images"][0]["referrers"]
    older = tmp_path / "older.yaml"
    older.write_text(yaml.safe_dump(doc))
    res = arcgap(capsys, "preflight", str(older), *where, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["images"][0]["referrers_checked"] == 0
