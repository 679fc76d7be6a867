"""arcgap.transfer.receipt: the receipt's schema and round trip, its default name, and where it may be written."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from arcgap.bundle.format import BlobEntry
from arcgap.cli.hints import words
from arcgap.errors import BundleFormatError, ExitCode, LocalIOError
from arcgap.oci.digest import Digest
from arcgap.transfer.receipt import (
    Receipt,
    ReceiptImage,
    ReceiptReferrer,
    bundle_label,
    check_receipt_path,
    default_receipt_path,
    write_receipt,
)

MOMENT = datetime(2024, 4, 9, 10, 0, 5, tzinfo=timezone.utc)
LAYER = BlobEntry(Digest.of(b"layer"), 1234, "application/vnd.oci.image.layer.v1.tar+gzip", "layer")
MANIFEST = BlobEntry(Digest.of(b"manifest"), 500, "application/vnd.oci.image.manifest.v1+json", "manifest")


def _receipt(**changes: Any) -> Receipt:
    fields: dict[str, Any] = dict(
        bundle_name="arc-v1.29.0.tar.zst",
        bundle_identity=Digest.of(b"arcgap.yaml"),
        bundle_created="2024-04-09T09:00:00Z",
        bundle_format_version=2,
        signed_by=Digest.of(b"key"),
        signature_checked=True,
        relied_on=("arc-v1.28.0.tar.zst",),
        target_registry="10.0.0.5:5000",
        target_repository="mirror/arcdata",
        images=(ReceiptImage("10.0.0.5:5000/mirror/arcdata/arc-dns:v1", "mcr.microsoft.com/arcdata/arc-dns:v1",
                             MANIFEST.digest, MANIFEST.media_type, (("linux/amd64", MANIFEST.digest),), "pushed",
                             1, 0, 2),),
        blobs=(MANIFEST, LAYER),
        imported="2024-04-09T10:00:05Z",
    )
    fields.update(changes)
    return Receipt(**fields)


def test_round_trip_and_layout() -> None:
    r = _receipt()
    text = r.to_yaml().decode()
    assert text.startswith("# arcgap import receipt: 1 images of arc-v1.29.0.tar.zst into "
                           "10.0.0.5:5000/mirror/arcdata; 'arcgap export --since THIS-FILE' leaves out")
    doc = yaml.safe_load(text)
    assert list(doc) == ["format", "format_version", "arcgap_version", "imported", "bundle", "target", "images",
                         "blobs"]
    assert doc["images"][0]["action"] == "pushed"
    assert doc["images"][0]["blobs"] == {"uploaded": 1, "mounted": 0, "present": 2}
    assert doc["images"][0]["platforms"] == [{"platform": "linux/amd64", "digest": str(MANIFEST.digest)}]
    assert Receipt.from_yaml(r.to_yaml(), origin="r.yaml") == r
    unsigned = _receipt(signed_by=None, signature_checked=False, relied_on=())
    assert Receipt.from_yaml(unsigned.to_yaml(), origin="r.yaml") == unsigned


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        *parents, last = path.split(".")
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("format", "arcgap-bundle"), "r.yaml: not an arcgap import receipt"),
        (_set("format_version", 9), "r.yaml: receipt format version 9 is not supported"),
        (_set("blobs.1.digest", "sha256:nope"), "r.yaml: blobs[1]: invalid digest 'sha256:nope'"),
        (_set("blobs.1.kind", "rootfs"), "r.yaml: blobs[1]: invalid size or kind"),
        (_set("blobs.1.size", "12"), "r.yaml: blobs[1].size: wrong type"),
        (_set("images.0.action", "copied"), "r.yaml: images[0].action: unknown action 'copied'"),
        (_set("bundle.name", "a\nb"), "r.yaml: bundle.name: not a file name"),
        (_set("bundle.relied_on", "x"), "r.yaml: bundle.relied_on: wrong type"),
        (_set("target", None), "r.yaml: top.target: wrong type"),
    ],
)
def test_from_yaml_rejects(change: Callable[[dict[str, Any]], None], message: str) -> None:
    doc = yaml.safe_load(_receipt().to_yaml())
    change(doc)
    with pytest.raises(BundleFormatError) as info:
        Receipt.from_yaml(yaml.safe_dump(doc).encode(), origin="r.yaml")
    assert info.value.message == message


def test_from_yaml_names_the_line() -> None:
    with pytest.raises(BundleFormatError) as info:
        Receipt.from_yaml(b"format: arcgap-receipt\nimages: [a, b\n", origin="r.yaml")
    assert info.value.message == "r.yaml:3: not valid YAML"


@pytest.mark.parametrize(
    ("bundle", "label", "default"),
    [
        ("arc-v1.29.0.tar.zst", "arc-v1.29.0.tar.zst", "arcgap-receipt-arc-v1.29.0-20240409T100005Z.yaml"),
        ("/media/usb/arc.tar.zst.parts.yaml", "arc.tar.zst", "arcgap-receipt-arc-20240409T100005Z.yaml"),
        ("/media/usb/arc.tar.zst.003", "arc.tar.zst", "arcgap-receipt-arc-20240409T100005Z.yaml"),
        ("bundle", "bundle", "arcgap-receipt-bundle-20240409T100005Z.yaml"),
    ],
)
def test_labels_and_default_names(bundle: str, label: str, default: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert bundle_label(Path(bundle)) == label
    path = default_receipt_path(Path(bundle), MOMENT)
    assert path == Path(default)  # relative: the current directory, never next to the bundle


def test_default_name_never_collides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = default_receipt_path(Path("a.tar.zst"), MOMENT)
    first.write_text("x")
    second = default_receipt_path(Path("a.tar.zst"), MOMENT)
    assert second == Path("arcgap-receipt-a-20240409T100005Z-2.yaml")


def test_check_receipt_path(tmp_path: Path) -> None:
    existing = tmp_path / "r.yaml"
    existing.write_text("x")
    with pytest.raises(LocalIOError) as info:
        check_receipt_path(existing)
    assert info.value.message == f"receipt {existing} already exists"
    assert info.value.exit_code == ExitCode.LOCAL_IO
    with pytest.raises(LocalIOError) as info:
        check_receipt_path(tmp_path / "no" / "r.yaml")
    assert info.value.message == f"cannot write the receipt {tmp_path / 'no' / 'r.yaml'}: no such directory"
    check_receipt_path(tmp_path / "new.yaml")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_receipt_path_read_only_directory(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(LocalIOError, match="permission denied"):
        check_receipt_path(ro / "r.yaml")


def test_write_receipt_is_complete_or_absent(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    write_receipt(path, _receipt())
    assert Receipt.from_yaml(path.read_bytes(), origin=str(path)) == _receipt()
    assert [p.name for p in tmp_path.iterdir()] == ["r.yaml"]
    with pytest.raises(LocalIOError) as info:
        write_receipt(tmp_path / "missing-dir" / "r.yaml", _receipt())
    assert info.value.message.startswith("the import finished, but the receipt ")
    assert words(info.value.hint) == ("run the same import again with --receipt PATH in a writable directory "
                               "(nothing is sent twice)")


def test_a_receipt_never_replaces_another_file(tmp_path: Path) -> None:
    """Two imports finishing in the same second: the second default receipt takes the next number; an explicit
    path that appeared meanwhile is an error, and the file there is left as it was."""
    path = tmp_path / "arcgap-receipt-b-20261207T000000Z.yaml"
    first = write_receipt(path, _receipt(), renumber=True)
    second = write_receipt(path, _receipt(), renumber=True)
    assert (first, second) == (path, tmp_path / "arcgap-receipt-b-20261207T000000Z-2.yaml")
    assert second.read_bytes() == first.read_bytes()
    other = tmp_path / "mine.yaml"
    other.write_bytes(b"someone else's\n")
    with pytest.raises(LocalIOError, match="already exists"):
        write_receipt(other, _receipt())
    assert other.read_bytes() == b"someone else's\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name, "mine.yaml"])  # no temp


@pytest.mark.parametrize("name", ["a" * 240 + ".tar.zst", "arc\x1b]0;x\x07.tar.zst", "arc\u200b.tar.zst",
                                  "ü" * 120 + ".tar.zst"])
def test_any_valid_bundle_name_gives_a_receipt_arcgap_reads_back(tmp_path: Path, name: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Long, escaped or invisible-character names: the default receipt path fits the file system and the
    receipt written for it is one arcgap's own reader takes (issue 17)."""
    from datetime import datetime, timezone

    from arcgap.transfer.receipt import bundle_label, default_receipt_path

    monkeypatch.chdir(tmp_path)
    label = bundle_label(Path(name))
    assert label.isprintable()
    path = default_receipt_path(Path(name), datetime(2026, 12, 7, tzinfo=timezone.utc))
    assert len(path.name.encode()) <= 200
    receipt = replace(_receipt(), bundle_name=label)
    written = write_receipt(path, receipt, renumber=True)
    assert Receipt.from_yaml(written.read_bytes(), origin=str(written)).bundle_name == label


SBOM = ReceiptReferrer(MANIFEST.digest, Digest.of(b"sbom"), "application/vnd.oci.image.manifest.v1+json",
                       "application/spdx+json")
LEGACY = ReceiptReferrer(MANIFEST.digest, Digest.of(b"sig"), "application/vnd.oci.image.manifest.v1+json", "",
                         str(MANIFEST.digest).replace(":", "-") + ".sig")


def _with_referrers() -> Receipt:
    r = _receipt()
    return replace(r, images=(replace(r.images[0], referrers=(SBOM, LEGACY)),))


def test_referrers_round_trip_and_are_optional() -> None:
    r = _with_referrers()
    doc = yaml.safe_load(r.to_yaml())
    assert doc["images"][0]["referrers"][1] == {"subject": str(MANIFEST.digest), "digest": str(LEGACY.digest),
                                                "media_type": LEGACY.media_type, "artifact_type": "",
                                                "tag": LEGACY.tag}
    assert "tag" not in doc["images"][0]["referrers"][0]
    assert Receipt.from_yaml(r.to_yaml(), origin="r.yaml") == r
    assert "referrers" not in yaml.safe_load(_receipt().to_yaml())["images"][0]  # none placed: none written


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("images.0.referrers", "x"), "r.yaml: images[0].referrers: not a list of at most 10000 entries"),
        (_set("images.0.referrers.0.subject", "sha256:nope"), "r.yaml: images[0].referrers[0]: invalid digest "
                                                              "'sha256:nope'"),
        (_set("images.0.referrers.1.tag", "../../v2"), "r.yaml: images[0].referrers[1].tag: not a cosign tag "
                                                       "sha256-<hex>.sig/.att/.sbom"),
        (_set("images.0.referrers.0.media_type", 5), "r.yaml: images[0].referrers[0].media_type: wrong type"),
    ],
)
def test_from_yaml_rejects_bad_referrers(change: Callable[[dict[str, Any]], None], message: str) -> None:
    doc = yaml.safe_load(_with_referrers().to_yaml())
    change(doc)
    with pytest.raises(BundleFormatError) as info:
        Receipt.from_yaml(yaml.safe_dump(doc).encode(), origin="r.yaml")
    assert info.value.message == message
