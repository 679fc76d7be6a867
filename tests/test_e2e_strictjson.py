"""A source registry serving a manifest that Go would read otherwise (``"Layers"`` beside ``"layers"``): export
refuses it as a registry answer (exit 6, one ``error:`` + one ``hint:``) and writes no bundle."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from devtools.images import Pusher, push_image
from tests.e2e_helpers import arcgap, source_args


def test_export_refuses_a_manifest_go_reads_with_other_layers(
    capsys: pytest.CaptureFixture[str], fresh_registry, tmp_path: Path,
) -> None:
    source = fresh_registry()
    with Pusher(source) as pusher:
        image = push_image(pusher, "synth/folded", "v1",
                           layers=[gzip.compress(b"one layer", mtime=0)], flavor="oci", indent=2)
        body = image.manifest.replace(b'  "layers": [', b'  "Layers": [],\n  "layers": [', 1)
        assert body != image.manifest
        pusher.push_manifest("synth/folded", "v1", body, image.media_type)
    out = tmp_path / "x.tar.zst"
    res = arcgap(capsys, "export", "folded", *source_args(source), "--source-repository", "synth",
                 "--source-tag", "v1", "-o", str(out))
    assert res.code == 6, res
    assert len(res.error_lines) == 2, res.error_lines
    error, hint = res.error_lines
    assert error == (f"error: {source.host}/synth/folded:v1: malformed manifest: key 'Layers' is read as 'layers' "
                     "by Go readers (case-insensitive)")
    assert hint.startswith("hint: Go, Python and JavaScript readers would read this manifest differently")
    assert not out.exists() and not Path(str(out) + ".partial").exists()
