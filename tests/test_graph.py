"""arcgap.bundle.graph: a bundle's manifests and blobs form one graph; a differential bundle's relied-on blobs count."""

from __future__ import annotations

from dataclasses import replace

import pytest

from arcgap.bundle.format import BaseBundle, BlobEntry
from arcgap.bundle.graph import build_graph
from arcgap.errors import BundleFormatError
from arcgap.oci.digest import Digest
from tests.test_bundle_rw import CONTENT

MANIFESTS = {d: data for d, data in CONTENT.data.items()
             if any(b.digest == d and b.kind == "manifest" for b in CONTENT.manifest.blobs)}
EMPTY = Digest.of(b"")  # the reader tests' empty member: a layer no manifest uses
BUNDLE = replace(CONTENT.manifest, blobs=tuple(b for b in CONTENT.manifest.blobs if b.digest != EMPTY))
BASE_LAYER = CONTENT.manifest.blobs[3]  # shared by both images


def test_a_blob_no_manifest_uses_is_refused() -> None:
    """Nothing rides along unaccounted for: every config and layer is one an image uses, as its kind says."""
    with pytest.raises(BundleFormatError) as info:
        build_graph(CONTENT.manifest, MANIFESTS, origin="b")
    assert info.value.message == f"b: blob {EMPTY.short} is listed as a layer but used as nothing"
    config = next(b for b in BUNDLE.blobs if b.kind == "config")
    relabelled = replace(BUNDLE, blobs=tuple(replace(b, kind="layer") if b == config else b for b in BUNDLE.blobs))
    with pytest.raises(BundleFormatError) as info:
        build_graph(relabelled, MANIFESTS, origin="b")
    assert info.value.message == f"b: blob {config.digest.short} is listed as a layer but used as config"


def test_full_bundle_graph() -> None:
    graphs = build_graph(BUNDLE, MANIFESTS, origin="b")
    assert [g.entry.name for g in graphs] == ["arc-controller", "sub/arc-dns"]
    assert all(BASE_LAYER.digest in g.blobs and not g.relied for g in graphs)


def test_relied_on_blobs_count_as_present_elsewhere() -> None:
    base = BaseBundle("v1.tar.zst", Digest.of(b"v1"), "bundle", "", (BASE_LAYER,))
    diff = replace(BUNDLE, format_version=2, relies_on=(base,),
                   blobs=tuple(b for b in BUNDLE.blobs if b != BASE_LAYER))
    graphs = build_graph(diff, MANIFESTS, origin="b")
    assert all(g.relied == frozenset({BASE_LAYER.digest}) and BASE_LAYER.digest in g.blobs for g in graphs)


def test_a_blob_neither_in_the_bundle_nor_relied_on_is_missing() -> None:
    incomplete = replace(BUNDLE, blobs=tuple(b for b in BUNDLE.blobs if b != BASE_LAYER))
    with pytest.raises(BundleFormatError) as info:
        build_graph(incomplete, MANIFESTS, origin="b")
    assert info.value.message == (f"b: arc-controller:v1.29.0_2024-04-09: blob {BASE_LAYER.digest} "
                                  "is referenced but not in the bundle")
    assert info.value.hint == "the bundle is incomplete; export it again"


def test_a_relied_on_blob_of_the_wrong_size_is_refused() -> None:
    wrong = BlobEntry(BASE_LAYER.digest, BASE_LAYER.size + 1, BASE_LAYER.media_type, "layer")
    base = BaseBundle("v1.tar.zst", Digest.of(b"v1"), "bundle", "", (wrong,))
    diff = replace(BUNDLE, format_version=2, relies_on=(base,),
                   blobs=tuple(b for b in BUNDLE.blobs if b != BASE_LAYER))
    with pytest.raises(BundleFormatError, match="size differs from its manifest"):
        build_graph(diff, MANIFESTS, origin="b")
