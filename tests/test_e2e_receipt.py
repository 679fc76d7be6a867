"""End to end: the import receipt (YAML and --json), tags already in place left alone, and what each image got."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml
import zstandard

from devtools.faultproxy import FaultProxy
from devtools.registries import Registry
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, oracle_digest, target_args
from tests.test_e2e_roundtrip import ROLES, clean_env, export_small  # noqa: F401 (autouse fixture)


def member_bytes(bundle: Path, name: str) -> bytes:
    """One member of a bundle, read with zstandard and the tar layout alone (independent of arcgap's reader)."""
    raw = zstandard.ZstdDecompressor().stream_reader(bundle.open("rb")).read()
    pos = 0
    while pos + 512 <= len(raw) and raw[pos : pos + 512] != b"\0" * 512:
        size = int(raw[pos + 124 : pos + 136].rstrip(b"\0 ") or b"0", 8)
        if raw[pos : pos + 100].split(b"\0", 1)[0].decode() == name:
            return raw[pos + 512 : pos + 512 + size]
        pos += 512 + size + (-size % 512)
    raise KeyError(name)


@pytest.fixture
def small_bundle(capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path) -> Path:
    bundle = tmp_path / "small.tar.zst"
    export_small(capsys, synth_small, bundle)
    return bundle


def test_receipt_names_the_bundle_target_every_reference_and_blob(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, small_bundle: Path, fresh_registry, tmp_path: Path,
) -> None:
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(small_bundle), *target_args(target), "--target-repository", "arc", "--json")
    assert res.code == 0, res.err
    result = json.loads(res.out)
    # the default: the current directory (the bundle's medium may be read-only), named after bundle and time
    name = result["receipt_file"]
    assert re.fullmatch(r"arcgap-receipt-small-\d{8}T\d{6}Z\.yaml", name), name
    receipt_file = tmp_path / name
    assert receipt_file.read_text().startswith("# arcgap import receipt: 5 images of small.tar.zst into ")
    doc = yaml.safe_load(receipt_file.read_text())
    assert doc == result["receipt"]
    assert doc["format"] == "arcgap-receipt"
    assert doc["bundle"]["name"] == "small.tar.zst"
    toc = member_bytes(small_bundle, "arcgap.yaml")
    assert doc["bundle"]["identity"] == "sha256:" + hashlib.sha256(toc).hexdigest()
    assert doc["bundle"]["signed_by"] is None and doc["bundle"]["relied_on"] == []
    assert doc["target"] == {"registry": target.host, "repository": "arc"}
    by_target = {i["target"]: i for i in doc["images"]}
    expected_blobs: set[str] = set()
    for role in ROLES:
        info = synth_small[role]
        repo = "arc/" + info.repository.split("/", 1)[1]
        entry = by_target[f"{target.host}/{repo}:v1"]
        assert entry["digest"] == info.digest == oracle_digest(target, repo, "v1")
        assert entry["media_type"] == info.media_type
        assert entry["source"] == f"{synth_small.registry.host}/{info.repository}:v1"
        if info.children:
            assert [p["digest"] for p in entry["platforms"]] == [c.digest for c in info.children]
            assert {p["platform"] for p in entry["platforms"]} == {"linux/amd64", "linux/arm64/v8"}
        else:
            assert entry["platforms"] == [{"platform": "linux/amd64", "digest": info.digest}]
        assert entry["action"] == "pushed"  # every image has an app layer of its own to upload
        expected_blobs |= info.all_digests()
    assert {b["digest"] for b in doc["blobs"]} == expected_blobs
    assert all(b["size"] > 0 and b["media_type"] and b["kind"] for b in doc["blobs"])
    human = arcgap(capsys, "import", str(small_bundle), *target_args(target), "--target-repository", "arc", "-q")
    assert re.search(r"^receipt: arcgap-receipt-small-\d{8}T\d{6}Z(-2)?\.yaml$", human.out, re.M), human.out


def test_second_import_puts_no_tag_and_says_skipped(
    capsys: pytest.CaptureFixture[str], small_bundle: Path, fresh_registry, tmp_path: Path,
) -> None:
    target: Registry = fresh_registry()
    first = arcgap(capsys, "import", str(small_bundle), *target_args(target), "--target-repository", "arc", "-q")
    assert first.code == 0, first.err
    proxy = FaultProxy(target.host)
    try:
        res = arcgap(capsys, "import", str(small_bundle), "--target-registry", proxy.host, "--target-plain-http",
                     "--target-repository", "arc", "--receipt", str(tmp_path / "again.yaml"), "--json")
        assert res.code == 0, res.err
        assert proxy.count(r"^PUT /v2/.*/manifests/") == 0  # neither tags nor manifests by digest
        assert proxy.count(r"^(PUT|POST|PATCH) /v2/.*/blobs/") == 0
        assert proxy.count(r"^HEAD /v2/.*/manifests/v1") >= 2 * len(ROLES)  # looked before, checked after
        result = json.loads(res.out)
        assert result["skipped_tags"] == len(ROLES) and result["uploaded_blobs"] == 0
        assert [i["action"] for i in result["images"]] == ["skipped"] * len(ROLES)
        assert [i["pushed"] for i in result["images"]] == [False] * len(ROLES)
        receipt = yaml.safe_load((tmp_path / "again.yaml").read_text())
        assert [i["action"] for i in receipt["images"]] == ["skipped"] * len(ROLES)
        assert len(receipt["blobs"]) == len(yaml.safe_load(Path(result["receipt_file"]).read_text())["blobs"])

        # an existing receipt is refused before anything is read or sent
        before = len(proxy.matching(r"."))
        again = arcgap(capsys, "import", str(small_bundle), "--target-registry", proxy.host, "--target-plain-http",
                       "--target-repository", "arc", "--receipt", str(tmp_path / "again.yaml"))
        assert again.code == 9
        assert again.error_lines == [f"error: receipt {tmp_path / 'again.yaml'} already exists",
                                     "hint: choose another --receipt path or remove it"]
        assert len(proxy.matching(r".")) == before
    finally:
        proxy.stop()


def test_retagging_with_nothing_to_upload_is_mounted(
    capsys: pytest.CaptureFixture[str], small_bundle: Path, fresh_registry, tmp_path: Path,
) -> None:
    target: Registry = fresh_registry()
    assert arcgap(capsys, "import", str(small_bundle), *target_args(target), "--target-repository", "arc",
                  "-q").code == 0
    res = arcgap(capsys, "import", str(small_bundle), *target_args(target), "--target-repository", "arc",
                 "--target-tag", "v1-again", "--json", "--receipt", str(tmp_path / "r.yaml"))
    assert res.code == 0, res.err
    result = json.loads(res.out)
    assert result["uploaded_blobs"] == 0 and result["skipped_tags"] == 0
    assert [i["action"] for i in result["images"]] == ["mounted"] * len(ROLES)
    assert all(i["blobs"]["uploaded"] == 0 and i["blobs"]["present"] > 0 for i in result["images"])


def test_no_receipt_for_a_dry_run_or_a_failed_import(
    capsys: pytest.CaptureFixture[str], small_bundle: Path, fresh_registry, tmp_path: Path,
) -> None:
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(small_bundle), *target_args(target), "--target-repository", "arc",
                 "--dry-run", "--json")
    assert res.code == 0, res.err
    result = json.loads(res.out)
    assert "receipt_file" not in result
    assert {i["action"] for i in result["images"]} == {"pushed"} and not any(i["pushed"] for i in result["images"])
    cut = tmp_path / "cut.tar.zst"
    cut.write_bytes(small_bundle.read_bytes()[:-2000])
    assert arcgap(capsys, "import", str(cut), *target_args(target), "--target-repository", "arc").code == 7
    assert not list(tmp_path.glob("arcgap-receipt-*"))


def test_receipt_in_a_missing_directory_is_refused_before_the_import(
    capsys: pytest.CaptureFixture[str], small_bundle: Path, fresh_registry, tmp_path: Path,
) -> None:
    target: Registry = fresh_registry()
    where = tmp_path / "no-such-dir" / "r.yaml"
    res = arcgap(capsys, "import", str(small_bundle), *target_args(target), "--target-repository", "arc",
                 "--receipt", str(where))
    assert res.code == 9
    assert res.error_lines == [f"error: cannot write the receipt {where}: no such directory",
                               "hint: check --receipt"]
    assert target.raw_client().catalog() == []
