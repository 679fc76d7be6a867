"""Bundles whose JSON a Go reader would read otherwise than arcgap: refused by ``verify`` and ``import`` alike,
before any upload (one ``error:`` + one ``hint:``, exit 8), and JSON floods in the layout members refused within
the memory bound (peak RSS of the child process, measured by tests/hostile_runner.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from arcgap.bundle.format import INDEX_NAME, LAYOUT_NAME, BlobEntry
from arcgap.bundle.format import PlatformEntry as Plat
from arcgap.bundle.limits import MAX_LAYOUT_MEMBER_BYTES
from arcgap.errors import ExitCode
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import OCI_MANIFEST
from devtools.registries import Registry
from tests.test_hostile import DATA, TOC, _manifest_bytes, _members, _tar, _zst
from tests.test_hostile_corpus import _check, _run

MAX_PEAK_MIB = 128  # issue 17 item 4: any input within the limits


def _with_manifest(raw: bytes) -> bytes:
    """The hand-built bundle with its one manifest replaced by ``raw`` (digest and sizes follow)."""
    digest = Digest.of(raw)
    image = replace(TOC.images[0], digest=digest, size=len(raw), platforms=(Plat("linux/amd64", digest,
                                                                                 OCI_MANIFEST),))
    toc = replace(TOC, images=(image,), blobs=(BlobEntry(digest, len(raw), OCI_MANIFEST, "manifest"),
                                               *TOC.blobs[1:]))
    return _zst(_tar(_members(toc, {**DATA, digest: raw})))


GOOD = _manifest_bytes(DATA[TOC.blobs[1].digest], [DATA[TOC.blobs[2].digest]])


def _edited(old: bytes, new: bytes) -> bytes:
    assert old in GOOD
    return _with_manifest(GOOD.replace(old, new, 1))


CASES = {  # name: (bundle, the end of the error line)
    "layers-and-Layers": (_edited(b'  "layers": [', b'  "Layers": [],\n  "layers": ['),
                          "key 'Layers' is read as 'layers' by Go readers (case-insensitive)"),
    "layers-and-layer-long-s": (_edited(b'  "layers": [', '  "layer\u017f": [],\n  "layers": ['.encode()),
                                "key 'layer\\u017f' is read as 'layers' by Go readers (case-insensitive)"),
    "MediaType": (_edited(b'  "mediaType"', b'  "MediaType": "x",\n  "mediaType"'), "key 'MediaType' is read as"),
    "duplicate-layers": (_edited(b'  "layers": [', b'  "layers": [],\n  "layers": ['), "duplicate key 'layers'"),
    "bom": (_with_manifest(b"\xef\xbb\xbf" + GOOD), "starts with a UTF-8 byte order mark"),
    "utf16": (_with_manifest(json.dumps(json.loads(GOOD)).encode("utf-16")), "is UTF-16 or UTF-32, not UTF-8"),
    "schema-2.0": (_edited(b'"schemaVersion": 2', b'"schemaVersion": 2.0'), "schemaVersion is '2.0', not the"),
    "nan": (_edited(b'"schemaVersion": 2,', b'"schemaVersion": 2, "x": NaN,'), "NaN is not JSON"),
    "lone-surrogate": (_edited(b'"schemaVersion": 2,', b'"schemaVersion": 2, "x": "\\ud800",'), "lone UTF-16"),
}


def test_json_go_would_read_otherwise_is_refused_by_verify_and_import_before_any_upload(
    fresh_registry, tmp_path: Path,
) -> None:
    target: Registry = fresh_registry()
    work = tmp_path / "work"
    work.mkdir()
    argv: list[list[str]] = []
    paths = []
    for name, (data, _) in CASES.items():
        path = tmp_path / f"{name}.tar.zst"
        path.write_bytes(data)
        paths.append(path)
        argv.append(["verify", str(path)])
        argv.append(["import", str(path), "--target-registry", target.host, "--target-plain-http",
                     "--target-repository", "arc/json", "--no-input"])
    results = _run(argv, tmp_path, work)
    for n, (name, (_, tail)) in enumerate(CASES.items()):
        lines = _check(results[2 * n], ExitCode.BUNDLE_FORMAT, f"verify {name}")
        assert lines[0].startswith(f"error: {paths[n]}: arc-dns:v1: malformed manifest: "), (name, lines)
        assert tail in lines[0], (name, lines)
        assert _check(results[2 * n + 1], ExitCode.BUNDLE_FORMAT, f"import {name}") == lines, name
    client = target.raw_client()
    try:  # no tag moved, no blob uploaded: the registry holds no repository at all
        assert client.catalog() == []
    finally:
        client.close()
    assert not [p for p in target.root_dir.rglob("data") if p.is_file()]  # no blob in the registry's storage


def _flood(size: int) -> bytes:
    body = b"{}," * ((size - 2) // 3)
    return b"[" + body[:-1] + b"]"


@pytest.mark.parametrize("member", [INDEX_NAME, LAYOUT_NAME])
def test_a_json_flood_in_a_layout_member_is_refused_within_the_memory_bound(member: str, tmp_path: Path) -> None:
    """16 MiB of ``[{},{},…]`` (the member limit) in index.json took verify to 453 MiB; oci-layout is now
    limited to 4 KiB, index.json is counted before it is parsed."""
    flood = _flood(MAX_LAYOUT_MEMBER_BYTES - 1024)
    members = [(n, flood if n == member else d) for n, d in _members(TOC, DATA)]
    path = tmp_path / "flood.tar.zst"
    path.write_bytes(_zst(_tar(members)))
    work = tmp_path / "work"
    work.mkdir()
    good = tmp_path / "good.tar.zst"
    good.write_bytes(_zst(_tar(_members(TOC, DATA))))
    results = _run([["verify", str(path)], ["verify", str(good)]], tmp_path, work)
    lines = _check(results[0], ExitCode.BUNDLE_FORMAT, "flood")
    assert lines[0].startswith(f"error: {path}: "), lines
    assert ("index.json refused: more than 50000 objects and arrays" if member == INDEX_NAME
            else "member oci-layout is implausibly large") in lines[0], lines
    _check(results[1], 0, "good")
    assert results[0]["rss_mib"] < MAX_PEAK_MIB, results[0]["rss_mib"]


def test_a_config_go_would_read_otherwise_is_refused_by_verify_and_import(fresh_registry, tmp_path: Path) -> None:
    config = b'{"architecture":"amd64","os":"linux","Architecture":"arm64"}'
    layer = DATA[TOC.blobs[2].digest]
    raw = _manifest_bytes(config, [layer])
    digest, config_digest = Digest.of(raw), Digest.of(config)
    image = replace(TOC.images[0], digest=digest, size=len(raw), platforms=(Plat("linux/amd64", digest,
                                                                                 OCI_MANIFEST),))
    toc = replace(TOC, images=(image,), blobs=(BlobEntry(digest, len(raw), OCI_MANIFEST, "manifest"),
                                               replace(TOC.blobs[1], digest=config_digest, size=len(config)),
                                               TOC.blobs[2]))
    path = tmp_path / "config.tar.zst"
    path.write_bytes(_zst(_tar(_members(toc, {digest: raw, config_digest: config, TOC.blobs[2].digest: layer}))))
    target: Registry = fresh_registry()
    work = tmp_path / "work"
    work.mkdir()
    verify, imported = _run([["verify", str(path)],
                             ["import", str(path), "--target-registry", target.host, "--target-plain-http",
                              "--target-repository", "arc/json", "--no-input"]], tmp_path, work)
    lines = _check(verify, ExitCode.BUNDLE_FORMAT, "verify config")
    assert lines[0] == (f"error: {path}: config {config_digest.short} refused: key 'Architecture' is read as "
                        "'architecture' by Go readers (case-insensitive)"), lines
    assert _check(imported, ExitCode.BUNDLE_FORMAT, "import config") == lines
    client = target.raw_client()
    try:
        assert client.catalog() == []  # the config is the first blob after the manifests: nothing was sent
    finally:
        client.close()
