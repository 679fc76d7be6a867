"""arcgap.transfer.since: what the far side holds, read from an earlier bundle, its sidecar, a part, or a receipt."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from arcgap.bundle.format import BaseBundle, BlobEntry
from arcgap.bundle.reader import BundleReader
from arcgap.bundle.writer import BundleWriter
from arcgap.cli.hints import words
from arcgap.errors import BundleFormatError, LocalIOError
from arcgap.oci.digest import Digest
from arcgap.transfer.receipt import Receipt
from arcgap.transfer.since import load_base, load_bases
from tests.test_bundle_rw import CONTENT, Content, _write
from tests.test_receipt import _receipt

LAYERS = [b for b in CONTENT.manifest.blobs if b.kind in ("config", "layer")]


def test_from_a_bundle_reads_only_its_table_of_contents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "arc-v1.28.tar.zst"
    _write(path)

    def no_blobs(self: BundleReader) -> None:
        raise AssertionError("--since must not read the base's blobs")

    monkeypatch.setattr(BundleReader, "blobs", no_blobs)
    base = load_base(path)
    assert base.name == "arc-v1.28.tar.zst" and base.via == "bundle"
    assert base.identity == Digest.of(CONTENT.manifest.to_yaml())
    assert base.created == CONTENT.manifest.created
    assert list(base.blobs) == LAYERS  # configs and layers; manifests are always sent again


def test_from_its_sidecar_and_from_a_part(tmp_path: Path) -> None:
    path = tmp_path / "arc.tar.zst"
    with BundleWriter(path, split_bytes=1500) as writer:
        for name, data in CONTENT.members():
            writer.add_bytes(name, data)
        writer.commit()
    sidecar = tmp_path / "arc.tar.zst.parts.yaml"
    assert sidecar.exists() and (tmp_path / "arc.tar.zst.002").exists()
    by_sidecar = load_base(sidecar)
    assert (by_sidecar.name, by_sidecar.via) == ("arc.tar.zst", "sidecar")
    assert by_sidecar.identity == Digest.of(CONTENT.manifest.to_yaml())
    assert list(by_sidecar.blobs) == LAYERS
    by_part = load_base(tmp_path / "arc.tar.zst.001")
    assert (by_part.name, by_part.via, by_part.blobs) == ("arc.tar.zst", "bundle", by_sidecar.blobs)


def test_from_a_receipt(tmp_path: Path) -> None:
    path = tmp_path / "arcgap-receipt-arc.yaml"
    receipt = _receipt()
    path.write_bytes(receipt.to_yaml())
    base = load_base(path)
    assert base == BaseBundle("arc-v1.29.0.tar.zst", receipt.bundle_identity, "receipt",
                              receipt.bundle_created, tuple(b for b in receipt.blobs if b.kind == "layer"))


def test_a_differential_base_also_counts_what_it_relied_on(tmp_path: Path) -> None:
    older = BlobEntry(Digest.of(b"older layer"), 10, "application/vnd.oci.image.layer.v1.tar+gzip", "layer")
    grand = BaseBundle("v0.tar.zst", Digest.of(b"v0"), "bundle", "", (older,))
    manifest = replace(CONTENT.manifest, format_version=2, relies_on=(grand,))
    path = tmp_path / "v1.tar.zst"
    _write(path, Content(manifest, CONTENT.data))
    assert list(load_base(path).blobs) == [*LAYERS, older]


def test_the_same_base_twice_counts_once(tmp_path: Path) -> None:
    path = tmp_path / "v1.tar.zst"
    _write(path)
    assert len(load_bases([path, path])) == 1


def test_not_a_base(tmp_path: Path) -> None:
    junk = tmp_path / "notes.yaml"
    junk.write_text("hello: world\n")
    with pytest.raises(BundleFormatError) as info:
        load_base(junk)
    assert words(info.value.message) == f"--since {junk}: not a bundle, sidecar or receipt"
    assert words(info.value.hint) == ("--since takes an earlier bundle (.tar.zst, a part, or NAME.parts.yaml) "
                               "or an import receipt")
    with pytest.raises(LocalIOError) as missing:
        load_base(tmp_path / "nope.tar.zst")
    assert words(missing.value.message) == f"--since {tmp_path / 'nope.tar.zst'}: no such file"
    with pytest.raises(LocalIOError, match="is a directory"):
        load_base(tmp_path)


def test_a_damaged_receipt_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    text = _receipt().to_yaml().decode().replace("format_version: 1\n", "format_version: [1\n")
    path.write_text(text)
    with pytest.raises(BundleFormatError) as info:
        load_base(path)
    assert info.value.message.startswith(f"{path}:")
    assert words(info.value.message).endswith(": not valid YAML (given to --since: a bundle, sidecar or receipt)")
    good = tmp_path / "good.yaml"
    good.write_bytes(_receipt().to_yaml().replace(b"kind: layer", b"kind: rootfs"))
    with pytest.raises(BundleFormatError) as info:
        load_base(good)
    assert info.value.message == f"{good}: blobs[1]: invalid size or kind"
    assert Receipt.from_yaml(_receipt().to_yaml(), origin="x") == _receipt()


def test_a_receipt_whose_created_a_bundle_cannot_hold_is_refused() -> None:
    """export --since such a receipt wrote a bundle that arcgap's own verify then refused (issue 17)."""
    from dataclasses import replace as _replace

    import test_receipt

    from arcgap.bundle import limits
    from arcgap.errors import BundleFormatError
    from arcgap.transfer.since import base_from_receipt

    receipt = test_receipt._receipt()
    assert base_from_receipt(receipt).created == receipt.bundle_created
    with pytest.raises(BundleFormatError, match="bundle.created is 5000 characters long"):
        base_from_receipt(_replace(receipt, bundle_created="x" * 5000))
    assert limits.MAX_TEXT < 5000
