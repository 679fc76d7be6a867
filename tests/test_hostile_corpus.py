"""A hostile corpus (issue 10): hand-made bundles for each class of attack, run through the real CLI in a child
process under a memory cap and a time limit, and ``import`` against a real registry.

For every case: the documented exit code (the same from ``verify`` and ``import``), exactly one ``error:`` and one
``hint:`` line, no traceback, no escape or control character on the terminal, bounded memory and time, no tag
moved, nothing written outside the working directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
import zstandard

from arcgap.bundle import limits, tarstream
from arcgap.bundle.format import INDEX_NAME, LAYOUT_NAME, TOC_NAME, BlobEntry, ImageEntry, TableOfContents
from arcgap.bundle.format import PlatformEntry as Plat
from arcgap.bundle.signature import SIGNATURE_NAME, BundleSignature
from arcgap.errors import ExitCode
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from devtools.registries import Registry
from tests.test_hostile import CONFIG_TYPE, DATA, LAYER_TYPE, TOC, _manifest_bytes, _members, _tar, _zst

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "hostile_runner.py"
DOCUMENTED = {code for name, code in vars(ExitCode).items() if name.isupper()}
MAX_CASE_MIB = 256  # a plain verify of a small bundle peaks at ~50 MiB here
MAX_CASE_SECONDS = 15  # generous: the machine is shared; every case here takes well under a second alone

Members = list[tuple[str, bytes]]


# -- building blocks -------------------------------------------------------------------------------------


def _yaml(toc: TableOfContents, **top: Any) -> bytes:
    doc = toc.to_dict()
    doc.update(top)
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _with_yaml(data: bytes, members: Members | None = None) -> bytes:
    members = members if members is not None else _members(TOC, DATA)
    return _zst(_tar([(n, data if n == TOC_NAME else d) for n, d in members]))


def _bundle(toc: TableOfContents, data: dict[Digest, bytes]) -> bytes:
    return _zst(_tar(_members(toc, data)))


def _pax_block(records: bytes) -> bytes:
    import tarfile

    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = len(records)
    return info.tobuf(tarfile.USTAR_FORMAT) + records + tarstream.padding(len(records))


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def pax_flood() -> bytes:
    """Thousands of PAX headers in front of one member: a few KB compressed (the issue's 1 GiB variant)."""
    head = _pax_block(_pax_record("comment", "x" * 400)) * 5000
    members = _members(TOC, DATA)
    tar = _tar(members[:1]) [: -2 * 512]
    return _zst(tar + head + _tar(members[1:]))


def pax_records() -> bytes:
    head = _pax_block(b"".join(_pax_record(f"k{n}", "v") for n in range(2000)))
    members = _members(TOC, DATA)
    return _zst(_tar(members[:1])[: -2 * 512] + head + _tar(members[1:]))


def yaml_laughs() -> bytes:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 9)]
    return _with_yaml(TOC.to_yaml() + ("\n".join(lines) + "\n").encode())


def yaml_nodes() -> bytes:
    return _with_yaml(TOC.to_yaml() + b"x-list: [" + b"1," * (limits.MAX_YAML_NODES + 10) + b"1]\n")


def yaml_deep() -> bytes:
    return _with_yaml(TOC.to_yaml() + b"x-deep: " + b"[" * 200 + b"]" * 200 + b"\n")


def yaml_large() -> bytes:
    return _with_yaml(TOC.to_yaml() + b"#" * (limits.MAX_YAML_BYTES + 1) + b"\n")


def skipped_flood() -> bytes:
    """A long skipped_images list within the YAML limits: read quickly, shown capped."""
    entries = "".join(f"- {{name: n{n}, source: s{n}}}\n" for n in range(limits.MAX_IMAGES + 500))
    return _with_yaml(TOC.to_yaml() + b"skipped_images:\n" + entries.encode())


def absurd_size() -> bytes:
    doc = TOC.to_dict()
    doc["blobs"][2]["size"] = 10**400
    return _with_yaml(yaml.safe_dump(doc, sort_keys=False).encode())


def big_manifest_label() -> bytes:
    """arcgap.yaml labels a blob of 5 MiB a manifest: refused from arcgap.yaml alone, the blob never read."""
    layer = b"\0" * (5 * 1024 * 1024)
    digest = Digest.of(layer)
    image = replace(TOC.images[0], digest=digest, size=len(layer),
                    platforms=(Plat("linux/amd64", digest, OCI_MANIFEST),))
    toc = replace(TOC, images=(image,), blobs=(BlobEntry(digest, len(layer), OCI_MANIFEST, "manifest"),))
    return _bundle(toc, {digest: layer})


def too_many_images() -> bytes:
    doc = TOC.to_dict()
    doc["images"] = [json.loads(json.dumps(dict(doc["images"][0], tag=f"t{n}")))  # no shared objects: no anchors
                     for n in range(limits.MAX_IMAGES + 1)]
    return _with_yaml(yaml.safe_dump(doc, sort_keys=False).encode())


def _index_of(children: list[tuple[bytes, str]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": mt, "digest": str(Digest.of(raw)), "size": len(raw),
         "platform": {"os": "linux", "architecture": "amd64"}} for raw, mt in children]}).encode()


def nested_index(*, child_present: bool = False) -> bytes:
    """An index whose child is an index naming a manifest that is absent (the old graph check: one level)."""
    image = DATA[TOC.images[0].digest]
    inner = _index_of([(image, OCI_MANIFEST)])
    outer = _index_of([(inner, OCI_INDEX)])
    top = Digest.of(outer)
    blobs = [(outer, OCI_INDEX, "index"), (inner, OCI_INDEX, "index")]
    if child_present:
        blobs.append((image, OCI_MANIFEST, "manifest"))
    blobs += [(DATA[b.digest], b.media_type, b.kind) for b in TOC.blobs[1:]]
    entry = ImageEntry("arc-dns", "v1", "src.example/arcdata/arc-dns:v1", top, OCI_INDEX, len(outer),
                       (Plat("linux/amd64", Digest.of(inner), OCI_INDEX),))
    toc = replace(TOC, images=(entry,), blobs=tuple(BlobEntry(Digest.of(d), len(d), mt, k) for d, mt, k in blobs))
    return _bundle(toc, {Digest.of(d): d for d, _, _ in blobs})


def media_type_lie() -> bytes:
    """The manifest's bytes say Docker v2; arcgap.yaml says OCI (the registry would store it as Docker's)."""
    config, layer = DATA[TOC.blobs[1].digest], DATA[TOC.blobs[2].digest]
    doc = json.loads(_manifest_bytes(config, [layer]))
    doc["mediaType"] = DOCKER_MANIFEST
    raw = json.dumps(doc).encode()
    digest = Digest.of(raw)
    image = replace(TOC.images[0], digest=digest, size=len(raw), platforms=(Plat("linux/amd64", digest,
                                                                                 OCI_MANIFEST),))
    toc = replace(TOC, images=(image,), blobs=(BlobEntry(digest, len(raw), OCI_MANIFEST, "manifest"),
                                               *TOC.blobs[1:]))
    return _bundle(toc, {**DATA, digest: raw})


def config_as_layer_kind() -> bytes:
    """A config listed with kind 'layer' and a layer listed as 'config': kinds against content."""
    blobs = (TOC.blobs[0], replace(TOC.blobs[1], kind="layer"), replace(TOC.blobs[2], kind="config"))
    return _bundle(replace(TOC, blobs=blobs), DATA)


def orphan_manifest() -> bytes:
    extra = _manifest_bytes(b"{}", [])
    d = Digest.of(extra)
    toc = replace(TOC, blobs=(TOC.blobs[0], BlobEntry(d, len(extra), OCI_MANIFEST, "manifest"), *TOC.blobs[1:]))
    return _bundle(toc, {**DATA, d: extra})


def graph_defect_then_truncated() -> bytes:
    """Two defects: a layer the manifest does not list, and the stream cut short after it. verify and import
    must give the same answer (they check the graph at the same point)."""
    stray = b"stray layer"
    d = Digest.of(stray)
    toc = replace(TOC, blobs=(*TOC.blobs[:2], BlobEntry(d, len(stray), LAYER_TYPE, "layer")))
    tar = _tar(_members(toc, {**DATA, d: stray}))
    return _zst(tar[: len(tar) - 2048])


def empty_bundle() -> bytes:
    doc = TOC.to_dict()
    doc["images"], doc["blobs"] = [], []
    return _zst(_tar([(TOC_NAME, yaml.safe_dump(doc, sort_keys=False).encode()),
                      (LAYOUT_NAME, TOC.oci_layout()), (INDEX_NAME, b'{"schemaVersion":2,"manifests":[]}')]))


def terminal_escapes_in_an_error() -> bytes:
    """A newer-format bundle whose arcgap_version tries to forge lines and clear the screen."""
    doc = TOC.to_dict()
    doc["format_version"] = 99
    doc["arcgap_version"] = "9\nerror: forged\x1b[2J\x1b]0;pwned\x07\r\u202e"
    return _with_yaml(yaml.safe_dump(doc, sort_keys=False).encode())


def terminal_escapes_in_inspect() -> bytes:
    doc = TOC.to_dict()
    doc["created"] = "2024\x1b[2J\x1b[H\rforged"
    doc["source"]["repository"] = "arcdata\nhint: forged\u202e"
    doc["skipped_images"] = [{"name": "x\x1b]0;t\x07", "source": "y\r\nerror: z"}]
    return _with_yaml(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode())


def window_frame(window_log: int) -> bytes:
    """The good bundle compressed with a long window (no content size, so the window is what the header says)."""
    params = zstandard.ZstdCompressionParameters(window_log=window_log, enable_ldm=True, write_checksum=True,
                                                 compression_level=3, write_content_size=False)
    out = bytearray()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(_Sink(out), closefd=False) as w:
        w.write(_tar(_members(TOC, DATA)))
    return bytes(out)


class _Sink:
    def __init__(self, out: bytearray) -> None:
        self.out = out

    def write(self, data: bytes) -> int:
        self.out += data
        return len(data)


def skippable_first() -> bytes:
    return struct.pack("<II", 0x184D2A50, 8) + b"metadata" + _zst(_tar(_members(TOC, DATA)))


def forged_signature(fingerprint: Digest) -> bytes:
    """Format version 3, a signature that names the right key and covers the right bytes but is not its."""
    toc = replace(TOC, format_version=3)
    layout = {LAYOUT_NAME: toc.oci_layout(), INDEX_NAME: toc.oci_index()}
    toc = toc.with_members(layout)
    data = toc.to_yaml()
    sig = BundleSignature(fingerprint, Digest.of(data), hashlib.sha512(data).digest()).to_bytes()
    members = [(TOC_NAME, data), (SIGNATURE_NAME, sig), *layout.items()]
    return _zst(_tar(members + [(b.member, DATA[b.digest]) for b in toc.blobs]))


def long_name() -> bytes:
    """A valid name of 250 characters: under a target repository it grows past what registries accept."""
    name = "a" * 250
    image = replace(TOC.images[0], name=name)
    return _bundle(replace(TOC, images=(image,)), DATA)


def sidecar_with_aliases(bundle: Path) -> Path:
    sidecar = bundle.with_name(bundle.name + ".parts.yaml")
    sidecar.write_text("format: &f arcgap-parts\nformat_version: 1\nx: *f\n")
    return sidecar


# -- the cases ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    code: int  # from verify and from import
    error: str  # the start of the error line, after "error: <bundle>"
    import_code: int | None = None  # when import differs on purpose (the target adds a constraint)


CASES = [
    Case("pax-flood", pax_flood, 8, ": bundle tar: more than 2 PAX headers"),
    Case("pax-records", pax_records, 8, ": bundle tar: more than 32 PAX records"),
    Case("yaml-aliases", yaml_laughs, 8, ":arcgap.yaml:"),
    Case("yaml-nodes", yaml_nodes, 8, ":arcgap.yaml:"),
    Case("yaml-deep", yaml_deep, 8, ":arcgap.yaml:"),
    Case("yaml-large", yaml_large, 8, ": arcgap.yaml is implausibly large"),
    Case("absurd-size", absurd_size, 8, ":arcgap.yaml: blobs[2].size: a number of 1329 bits is out of range"),
    Case("manifest-label-on-a-big-blob", big_manifest_label, 8, ":arcgap.yaml: blobs[0]: manifest"),
    Case("too-many-images", too_many_images, 8, f":arcgap.yaml: more than {limits.MAX_IMAGES} images"),
    Case("nested-index", nested_index, 8, ": arc-dns:v1: index child"),
    Case("nested-index-complete", lambda: nested_index(child_present=True), 8, ": arc-dns:v1: index child"),
    Case("media-type-lie", media_type_lie, 8, ": arc-dns:v1: manifest"),
    Case("kinds-swapped", config_as_layer_kind, 8, ": blob"),
    Case("orphan-manifest", orphan_manifest, 8, ": manifest"),
    Case("graph-defect-and-truncation", graph_defect_then_truncated, 8, ": arc-dns:v1: blob"),
    Case("empty", empty_bundle, 8, ":arcgap.yaml: the bundle holds no images"),
    Case("escapes-in-an-error", terminal_escapes_in_an_error, 8, "=bundle format version 99 is newer"),
    Case("long-window", lambda: window_frame(28), 8, ": a zstd frame asks for a 256 MiB decoding window"),
    Case("long-name", long_name, 0, "", import_code=2),
]


def _run(cases: list[list[str]], tmp: Path, cwd: Path) -> list[dict[str, Any]]:
    spec, out = tmp / "cases.json", tmp / "results.json"
    spec.write_text(json.dumps([{"argv": argv} for argv in cases]))
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "HOME": str(cwd / "home"), "XDG_CACHE_HOME": str(cwd / "cache"),
           "DOCKER_CONFIG": str(cwd / "docker"), "REGISTRY_AUTH_FILE": str(cwd / "auth.json"),
           "PYTHONPATH": str(ROOT)}
    for key in list(env):
        if key.startswith(("SOURCE_DOCKER_", "TARGET_DOCKER_")) or key == "ARCGAP_DEBUG":
            del env[key]
    subprocess.run([sys.executable, str(RUNNER), str(spec), str(out)], cwd=cwd, env=env, check=True,
                   timeout=60 + 20 * len(cases))
    return json.loads(out.read_text())


def _check(result: dict[str, Any], code: int, what: str) -> list[str]:
    err, out = result["err"], result["out"]
    assert result["code"] == code, (what, result)
    assert result["code"] in DOCUMENTED, what
    assert "Traceback" not in err + out, what
    assert result["rss_mib"] < MAX_CASE_MIB, (what, result["rss_mib"])
    assert result["seconds"] < MAX_CASE_SECONDS, (what, result["seconds"])
    for text in (err, out):  # nothing that moves the cursor, clears the screen or rewrites a line
        assert not any(ch in text for ch in "\x1b\r\x07\u202e\u2028"), (what, text)
    lines = [line for line in err.splitlines() if line.startswith(("error: ", "hint: "))]
    if code:
        assert [line.split(":")[0] for line in lines] == ["error", "hint"], (what, err)
    else:
        assert lines == [], (what, err)
    return lines


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")}


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    inputs, work = tmp_path / "in", tmp_path / "work"
    inputs.mkdir()
    work.mkdir()
    paths = []
    for case in CASES:
        path = inputs / f"{case.name}.tar.zst"
        path.write_bytes(case.build())
        paths.append(path)
    return inputs, work, paths


def test_every_case_is_refused_the_same_way_by_verify_and_import(
    corpus: tuple[Path, Path, list[Path]], fresh_registry, tmp_path: Path,
) -> None:
    inputs, work, paths = corpus
    target: Registry = fresh_registry()
    before_inputs, before_top = _tree(inputs), sorted(p.name for p in tmp_path.iterdir())
    argv: list[list[str]] = []
    for path in paths:
        argv.append(["verify", str(path)])
        argv.append(["import", str(path), "--target-registry", target.host, "--target-plain-http",
                     "--target-repository", "arc/" + "r" * 10, "--no-input"])
    argv.append(["inspect", str(inputs / "yaml-aliases.tar.zst")])
    results = _run(argv, tmp_path, work)
    for n, case in enumerate(CASES):
        verify, imported = results[2 * n], results[2 * n + 1]
        lines = _check(verify, case.code, f"verify {case.name}")
        if case.code:  # "=": a message that does not name the file
            expected = case.error[1:] if case.error.startswith("=") else f"{paths[n]}{case.error}"
            assert lines[0].startswith(f"error: {expected}"), (case.name, lines)
        import_lines = _check(imported, case.import_code if case.import_code is not None else case.code,
                              f"import {case.name}")
        if case.import_code is None and case.code:
            assert import_lines == lines, case.name  # same defect, same words, same exit code
    assert results[-1]["code"] == 8
    long_name = results[2 * [c.name for c in CASES].index("long-name") + 1]
    assert "from the bundle" in long_name["err"] and "--target-repository" in long_name["err"]
    client = target.raw_client()
    try:  # nothing refused left a tag (or anything else) at the target
        assert client.catalog() == []
    finally:
        client.close()
    assert _tree(inputs) == before_inputs  # nothing written next to the bundles
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({*before_top, "cases.json", "results.json"})


def test_valid_frames_and_escaped_output_are_read(tmp_path: Path) -> None:
    """A skippable frame in front and a 128 MiB window are valid zstd: read, not called damaged or not zstd;
    bundle text with escape sequences is shown escaped by inspect and verify, and stays valid JSON."""
    work = tmp_path / "work"
    work.mkdir()
    cases = {"skippable": skippable_first(), "window-27": window_frame(27), "escapes": terminal_escapes_in_inspect(),
             "skipped-flood": skipped_flood()}
    argv = []
    for name, data in cases.items():
        path = tmp_path / f"{name}.tar.zst"
        path.write_bytes(data)
        argv += [["verify", str(path)], ["inspect", str(path)], ["inspect", str(path), "--json"]]
    results = _run(argv, tmp_path, work)
    for n, result in enumerate(results):
        _check(result, 0, argv[n][0] + " " + argv[n][1])
    escapes = results[7]["out"]
    assert "2024\\x1b[2J\\x1b[H\\x0dforged" in escapes and "arcdata\\x0ahint: forged\\u202e" in escapes
    doc = json.loads(results[8]["out"])
    assert doc["created"] == "2024\x1b[2J\x1b[H\rforged"  # JSON carries the exact text, escaped by JSON itself
    flood = json.loads(results[11]["out"])
    assert len(flood["skipped_images"]) == limits.MAX_IMAGES


def test_a_forged_signature_with_the_right_fingerprint_is_called_forged(tmp_path: Path) -> None:
    from arcgap.bundle.signing import generate_key

    keys = generate_key(tmp_path / "k", passphrase=None)
    path = tmp_path / "forged.tar.zst"
    path.write_bytes(forged_signature(keys.fingerprint))
    work = tmp_path / "work"
    work.mkdir()
    res = _run([["verify", str(path), "--verify-key", str(keys.public)], ["verify", str(path)]], tmp_path, work)
    lines = _check(res[0], 11, "forged")
    assert lines == [f"error: {path}: the signature is not valid for {keys.public} ({keys.fingerprint}): it names "
                     "that key but was not made with it (forged or damaged)",
                     "hint: do not import this bundle; ask the exporting side for a new copy signed with the key"]
    _check(res[1], 0, "forged, no key")  # without --verify-key a signature is shown, not checked


def test_a_sidecar_with_aliases_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.tar.zst"
    path.write_bytes(_zst(_tar(_members(TOC, DATA))))
    sidecar = sidecar_with_aliases(path)
    work = tmp_path / "work"
    work.mkdir()
    res = _run([["verify", str(sidecar)]], tmp_path, work)
    lines = _check(res[0], 8, "sidecar")
    assert lines[0] == f"error: {sidecar}:1: refused: YAML anchors are not allowed"


def test_the_window_limit_is_the_decompressor_s() -> None:
    assert limits.MAX_WINDOW_BYTES == 1 << 27
    assert len(window_frame(27)) < 4096 and CONFIG_TYPE and Plat


def test_within_the_yaml_limits_memory_and_time_stay_bounded(tmp_path: Path) -> None:
    """The most YAML arcgap.yaml may hold (nodes just under the cap) is read whole: within the memory cap and the
    time limit of every case, and accepted (an unknown key is kept, not walked)."""
    work = tmp_path / "work"
    work.mkdir()
    path = tmp_path / "nodes.tar.zst"
    path.write_bytes(_with_yaml(TOC.to_yaml() + b"x-list: [" + b"1," * (limits.MAX_YAML_NODES - 1000) + b"1]\n"))
    (result,) = _run([["verify", str(path)]], tmp_path, work)
    _check(result, 0, "nodes at the limit")
    assert result["rss_mib"] < 160, result["rss_mib"]  # ~90 MiB measured
