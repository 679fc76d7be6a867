"""The OCI layout sink alone: what a failed or interrupted write leaves behind (never a layout that looks
complete), and what a complete one holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from arcgap.bundle.format import BlobEntry, ImageEntry, PlatformEntry, TableOfContents
from arcgap.errors import IntegrityError, LocalIOError
from arcgap.oci.digest import Digest, Verifier, verified_chunks
from arcgap.oci.mediatypes import OCI_MANIFEST
from arcgap.transfer.ocilayout import LayoutSink
from arcgap.transfer.source import Contents

CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER = b"layer bytes " * 1000
RAW = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                             "digest": str(Digest.of(CONFIG)), "size": len(CONFIG)},
                  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                              "digest": str(Digest.of(LAYER)), "size": len(LAYER)}]}, indent=3).encode()
BLOBS = ((RAW, OCI_MANIFEST, "manifest"), (CONFIG, "application/vnd.oci.image.config.v1+json", "config"),
         (LAYER, "application/vnd.oci.image.layer.v1.tar", "layer"))
MANIFEST = TableOfContents(
    source_registry="src.example:5000", source_repository="arcdata",
    images=(ImageEntry(name="arc-controller", tag="v1", source="src.example:5000/arcdata/arc-controller:v1",
                       digest=Digest.of(RAW), media_type=OCI_MANIFEST, size=len(RAW),
                       platforms=(PlatformEntry("linux/amd64", Digest.of(RAW), OCI_MANIFEST),)),),
    blobs=tuple(BlobEntry(Digest.of(raw), len(raw), mt, kind) for raw, mt, kind in BLOBS),
    created="2024-04-09T10:00:00Z",
)
CONTENTS = Contents(MANIFEST, (), {Digest.of(RAW): RAW})


def stream(damaged: bytes | None = None) -> Iterator[tuple[BlobEntry, Iterator[bytes]]]:
    """Every blob through the verifying reader; ``damaged`` replaces the layer's bytes (same size)."""
    for (raw, _, kind), entry in zip(BLOBS, MANIFEST.blobs):
        data = damaged if damaged is not None and kind == "layer" else raw
        chunks = (data[i:i + 4096] for i in range(0, len(data), 4096))
        yield entry, verified_chunks(chunks, Verifier(entry.digest, entry.size, what=f"blob {entry.digest}"))


def test_a_complete_layout_names_the_image_and_holds_every_blob_under_its_digest(tmp_path: Path) -> None:
    out = tmp_path / "layout"
    LayoutSink(out, MANIFEST).write(CONTENTS, stream())
    assert json.loads((out / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((out / "index.json").read_bytes())
    assert [(m["digest"], m["annotations"]["org.opencontainers.image.ref.name"]) for m in index["manifests"]] \
        == [(str(Digest.of(RAW)), "arc-controller:v1")]
    for raw, _, _ in BLOBS:
        assert (out / "blobs" / "sha256" / Digest.of(raw).hex).read_bytes() == raw
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        [Digest.of(raw).hex for raw, _, _ in BLOBS] + ["index.json", "oci-layout"])


def test_a_damaged_blob_leaves_no_index_and_no_file_under_its_name(tmp_path: Path) -> None:
    out = tmp_path / "layout"
    with pytest.raises(IntegrityError):
        LayoutSink(out, MANIFEST).write(CONTENTS, stream(damaged=b"X" * len(LAYER)))
    assert not (out / "index.json").exists() and not (out / "oci-layout").exists()
    assert not (out / "blobs" / "sha256" / Digest.of(LAYER).hex).exists()
    assert not list(out.rglob("*.partial"))


def test_an_interrupted_overwrite_removes_the_old_index_first(tmp_path: Path) -> None:
    out = tmp_path / "layout"
    LayoutSink(out, MANIFEST).write(CONTENTS, stream())
    with pytest.raises(LocalIOError, match="already holds an OCI layout"):
        LayoutSink(out, MANIFEST).write(CONTENTS, stream())
    assert (out / "index.json").is_file()
    with pytest.raises(IntegrityError):
        LayoutSink(out, MANIFEST, overwrite=True).write(CONTENTS, stream(damaged=b"X" * len(LAYER)))
    assert not (out / "index.json").exists()  # half-replaced: no longer looks complete


def test_a_directory_holding_something_else_is_never_written_into(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(LocalIOError, match="holds no OCI layout"):
        LayoutSink(out, MANIFEST, overwrite=True).write(CONTENTS, stream())
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_an_unknown_output_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.e2e_helpers import arcgap

    res = arcgap(capsys, "export", "x", "--format", "tarball", "--no-input")
    assert res.code == 2
    assert res.error_lines == ["error: unknown output format 'tarball'",
                               "hint: the formats: bundle (the default) or oci-layout"]
