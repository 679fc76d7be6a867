"""End to end: differential bundles (export --since a bundle, its sidecar or a receipt) on a two-release set.

Release v2 keeps v1's base layers and changes every app layer (and adds an image); the differential bundle
carries only what changed, and importing it needs v1 at the target (checked before anything is sent).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

from devtools.images import ImageInfo
from devtools.registries import Registry
from devtools.synth import generate_release_infos
from tests.e2e_helpers import arcgap, oracle_digest, source_args, target_args
from tests.test_e2e_errors import _rewrite_manifest, no_tags
from tests.test_e2e_receipt import member_bytes
from tests.test_e2e_roundtrip import clean_env  # noqa: F401 (autouse fixture)

V1_NAMES = ["arc-controller", "arc-dns", "arc-kafka", "arc-monitor-grafana"]
V2_NAMES = [*V1_NAMES, "arc-sqlmi"]  # a new image: its base layers exist at the target, in other repositories
KIB = 1024


def data_digests(info: ImageInfo) -> set[str]:
    """Configs and layers of an image (of every platform of an index)."""
    out = set(info.layer_digests) | ({info.config_digest} if info.config_digest else set())
    for child in info.children:
        out |= data_digests(child)
    return out


def manifest_digests(info: ImageInfo) -> set[str]:
    return {info.digest, *(c.digest for c in info.children)}


@pytest.fixture(scope="module")
def releases(plain_registry: Registry) -> tuple[dict[str, ImageInfo], dict[str, ImageInfo]]:
    common = dict(repository="rel", base_layer_bytes=24 * KIB, app_layer_bytes=8 * KIB, base_seed=0)
    v1 = generate_release_infos(plain_registry, tag="v1", names=V1_NAMES, seed=0, **common)  # type: ignore[arg-type]
    v2 = generate_release_infos(plain_registry, tag="v2", names=V2_NAMES, seed=1, **common)  # type: ignore[arg-type]
    return v1, v2


def export(capsys: pytest.CaptureFixture[str], registry: Registry, tag: str, out: Path, *extra: str) -> dict:
    names = V1_NAMES if tag == "v1" else V2_NAMES
    res = arcgap(capsys, "export", *names, *source_args(registry), "--source-repository", "rel", "--source-tag", tag,
                 "-o", str(out), "--json", "-q", *extra)
    assert res.code == 0, res.err
    return json.loads(res.out)


def toc(bundle: Path) -> dict:
    return yaml.safe_load(member_bytes(bundle, "arcgap.yaml"))


def test_differential_bundle_carries_only_what_changed_and_imports_onto_its_base(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, releases, fresh_registry, tmp_path: Path,
) -> None:
    v1, v2 = releases
    v1_bundle, full, diff = tmp_path / "arc-v1.tar.zst", tmp_path / "arc-v2-full.tar.zst", tmp_path / "arc-v2.tar.zst"
    export(capsys, plain_registry, "v1", v1_bundle)
    full_result = export(capsys, plain_registry, "v2", full)
    result = export(capsys, plain_registry, "v2", diff, "--since", str(v1_bundle))

    shared = set().union(*map(data_digests, v1.values())) & set().union(*map(data_digests, v2.values()))
    assert shared, "the two releases must share their base layers"
    doc = toc(diff)
    assert doc["format_version"] == 2
    [base] = doc["relies_on"]
    assert base["bundle"] == "arc-v1.tar.zst" and base["via"] == "bundle"
    assert base["identity"] == "sha256:" + hashlib.sha256(member_bytes(v1_bundle, "arcgap.yaml")).hexdigest()
    assert {b["digest"] for b in base["blobs"]} == shared
    assert {b["digest"] for b in doc["blobs"]} == {b["digest"] for b in toc(full)["blobs"]} - shared
    # every manifest is in the bundle: tags need them
    assert set().union(*map(manifest_digests, v2.values())) <= {b["digest"] for b in doc["blobs"]}
    assert result["relied_on_blobs"] == len(shared) and result["relies_on"] == ["arc-v1.tar.zst"]
    assert result["bundle_bytes"] < full_result["bundle_bytes"]
    assert result["content_bytes"] + result["relied_on_bytes"] == full_result["content_bytes"]

    verify = arcgap(capsys, "verify", str(diff))
    assert verify.code == 0, verify.err
    relied_kib = f"{result['relied_on_bytes'] / 1024:.1f} KiB"
    assert (f"differential: relies on {len(shared)} blobs ({relied_kib}) from arc-v1.tar.zst, counted as present "
            "at the target; import checks they are there before it sends anything") in verify.out.splitlines()
    inspect = arcgap(capsys, "inspect", str(diff))
    assert f"relies on {len(shared)} blobs ({relied_kib}) from arc-v1.tar.zst (" in inspect.out

    target: Registry = fresh_registry()
    first = arcgap(capsys, "import", str(v1_bundle), *target_args(target), "--target-repository", "arc", "-q")
    assert first.code == 0, first.err
    res = arcgap(capsys, "import", str(diff), *target_args(target), "--target-repository", "arc", "--json", "-q",
                 "--receipt", str(tmp_path / "r2.yaml"))
    assert res.code == 0, res.err
    imported = json.loads(res.out)
    for name, info in v2.items():
        assert oracle_digest(target, f"arc/{name}", "v2") == info.digest
        for child in info.children:
            assert oracle_digest(target, f"arc/{name}", child.digest) == child.digest
    # the new image's base layers came from the other repositories by mount, not from the bundle
    sqlmi_shared = data_digests(v2["arc-sqlmi"]) & shared
    assert imported["mounted_blobs"] >= len(sqlmi_shared) > 0
    assert imported["relied_on_blobs"] == len(shared)
    receipt = yaml.safe_load((tmp_path / "r2.yaml").read_text())
    assert receipt["bundle"]["relied_on"] == ["arc-v1.tar.zst"]
    assert {b["digest"] for b in receipt["blobs"]} == set().union(
        *(data_digests(i) | manifest_digests(i) for i in v2.values()))
    sqlmi = next(i for i in receipt["images"] if i["target"].endswith("/arc/arc-sqlmi:v2"))
    assert sqlmi["blobs"]["mounted"] == len(sqlmi_shared)


def test_since_a_receipt_or_a_sidecar_leaves_out_the_same_blobs(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, releases, fresh_registry, tmp_path: Path,
) -> None:
    v1_bundle = tmp_path / "arc-v1.tar.zst"
    export(capsys, plain_registry, "v1", v1_bundle)
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(v1_bundle), *target_args(target), "--target-repository", "arc", "-q",
                 "--receipt", str(tmp_path / "r1.yaml"))
    assert res.code == 0, res.err
    by_bundle, by_receipt, by_sidecar = (tmp_path / f"{n}.tar.zst" for n in ("b", "r", "s"))
    export(capsys, plain_registry, "v2", by_bundle, "--since", str(v1_bundle))
    export(capsys, plain_registry, "v2", by_receipt, "--since", str(tmp_path / "r1.yaml"))
    export(capsys, plain_registry, "v2", by_sidecar, "--since", str(tmp_path / "arc-v1.tar.zst.parts.yaml"))
    docs = [toc(b) for b in (by_bundle, by_receipt, by_sidecar)]
    assert docs[0]["blobs"] == docs[1]["blobs"] == docs[2]["blobs"]
    bases = [d["relies_on"][0] for d in docs]
    assert [b["via"] for b in bases] == ["bundle", "receipt", "sidecar"]
    assert {b["bundle"] for b in bases} == {"arc-v1.tar.zst"}
    assert len({b["identity"] for b in bases}) == 1  # the receipt names the bundle it imported
    assert bases[0]["blobs"] == bases[1]["blobs"] == bases[2]["blobs"]


def test_differential_bundle_onto_a_target_without_its_base_moves_nothing(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, releases, fresh_registry, tmp_path: Path,
) -> None:
    v1, v2 = releases
    v1_bundle, diff = tmp_path / "arcdata-v1.28.tar.zst", tmp_path / "arcdata-v1.29.tar.zst"
    export(capsys, plain_registry, "v1", v1_bundle)
    export(capsys, plain_registry, "v2", diff, "--since", str(v1_bundle))
    shared = len(toc(diff)["relies_on"][0]["blobs"])
    target: Registry = fresh_registry()
    for extra in ((), ("--dry-run",)):
        res = arcgap(capsys, "import", str(diff), *target_args(target), "--target-repository", "arc", *extra)
        assert res.code == 4, res.err
        error, hint = res.error_lines
        # asking stops at the first lacking blob: a count of those known, and one missing digest named
        assert re.fullmatch(r"error: the bundle relies on blobs from arcdata-v1\.28\.tar\.zst that the target lacks: "
                            rf"(at least )?\d+ of {shared} blobs missing( \(stopped after asking about \d+\))?, "
                            r"(the first|blob) sha256:[0-9a-f]{64}", error), error
        assert error.rsplit(" ", 1)[1] in {b["digest"] for b in toc(diff)["relies_on"][0]["blobs"]}
        assert [hint] == [
            f"hint: import arcdata-v1.28.tar.zst into {target.host}/arc first, or export a full bundle "
            "(without --since); nothing was changed",
        ]
        assert target.raw_client().catalog() == []  # not one blob was sent
    assert not list(tmp_path.glob("arcgap-receipt-*"))
    # the base in another repository of the same registry does not count either
    assert arcgap(capsys, "import", str(v1_bundle), *target_args(target), "--target-repository", "elsewhere",
                  "-q").code == 0
    res = arcgap(capsys, "import", str(diff), *target_args(target), "--target-repository", "arc")
    assert res.code == 4 and "that the target lacks" in res.error_lines[0]
    assert not any(repo.startswith("arc/") for repo in target.raw_client().catalog())


def test_a_chain_of_differential_bundles(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, releases, fresh_registry, tmp_path: Path,
) -> None:
    """v2 since v1, then v2 again since that differential bundle: it relies on everything and carries only
    manifests; importing it moves no tag."""
    v1_bundle, diff, again = tmp_path / "v1.tar.zst", tmp_path / "v2.tar.zst", tmp_path / "v2-again.tar.zst"
    export(capsys, plain_registry, "v1", v1_bundle)
    export(capsys, plain_registry, "v2", diff, "--since", str(v1_bundle))
    result = export(capsys, plain_registry, "v2", again, "--since", str(diff))
    doc = toc(again)
    assert {b["kind"] for b in doc["blobs"]} <= {"manifest", "index"}
    assert result["relied_on_blobs"] == len(toc(diff)["blobs"]) - len(doc["blobs"]) + len(
        toc(diff)["relies_on"][0]["blobs"])
    target: Registry = fresh_registry()
    for bundle in (v1_bundle, diff):
        assert arcgap(capsys, "import", str(bundle), *target_args(target), "--target-repository", "arc",
                      "-q").code == 0
    res = arcgap(capsys, "import", str(again), *target_args(target), "--target-repository", "arc", "--json", "-q")
    assert res.code == 0, res.err
    imported = json.loads(res.out)
    assert {i["action"] for i in imported["images"]} == {"skipped"}
    assert imported["uploaded_blobs"] == 0


def test_a_differential_bundle_stripped_of_relies_on_is_refused(
    capsys: pytest.CaptureFixture[str], plain_registry: Registry, releases, fresh_registry, tmp_path: Path,
) -> None:
    v1_bundle, diff, stripped = tmp_path / "v1.tar.zst", tmp_path / "v2.tar.zst", tmp_path / "stripped.tar.zst"
    export(capsys, plain_registry, "v1", v1_bundle)
    export(capsys, plain_registry, "v2", diff, "--since", str(v1_bundle))
    _rewrite_manifest(diff, stripped, {"relies_on": []})
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(stripped), *target_args(target), "--target-repository", "arc")
    assert res.code == 8, res.err
    assert res.error_lines[0].startswith(f"error: {stripped}: ") and "is referenced but not in the bundle" in res.err
    assert no_tags(target)
    assert arcgap(capsys, "verify", str(stripped)).code == 8
