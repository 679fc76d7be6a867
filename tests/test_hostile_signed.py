"""What a signature covers: every member a reader acts on, not only arcgap.yaml (issue 10, item 1).

A signed bundle (format version 3) records the size and sha256 of oci-layout, index.json and manifest.json in
the signed arcgap.yaml; any change to them, an added member or a removed one is refused with exit 11 by
``verify --verify-key`` and ``import --verify-key`` before a single connection to the target. A signed bundle of
format version 2 (written before members were recorded) stays readable: its layout must be what arcgap.yaml
derives, and its manifest.json must name the images arcgap.yaml names.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
import zstandard

from arcgap.bundle import tarstream
from arcgap.bundle.signing import load_signer
from devtools.registries import Registry
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, isolate_env, run, source_args, target_args
from tests.test_e2e_errors import no_tags
from tests.test_e2e_roundtrip import ROLES, clean_env  # noqa: F401 (autouse fixture)

Members = list[tuple[str, bytes]]


def read_members(bundle: Path) -> Members:
    """Every member of a bundle, read with zstandard and the tar layout alone (independent of arcgap's reader)."""
    raw = zstandard.ZstdDecompressor().stream_reader(bundle.open("rb")).read()
    out, pos = [], 0
    while pos + 512 <= len(raw) and raw[pos : pos + 512] != b"\0" * 512:
        size = int(raw[pos + 124 : pos + 136].rstrip(b"\0 ") or b"0", 8)
        name = raw[pos : pos + 100].split(b"\0", 1)[0].decode()
        out.append((name, raw[pos + 512 : pos + 512 + size]))
        pos += 512 + size + (-size % 512)
    return out


def write_members(path: Path, members: Members) -> None:
    tar = b"".join(tarstream.member_header(n, len(d)) + d + tarstream.padding(len(d)) for n, d in members)
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(tar + tarstream.END_OF_ARCHIVE))


def _replace(name: str, change: Callable[[bytes], bytes]) -> Callable[[Members], Members]:
    return lambda members: [(n, change(d) if n == name else d) for n, d in members]


def _repo_tags(data: bytes) -> bytes:
    """Another tag for the first image, same length: only the digest can tell."""
    doc = json.loads(data)
    tag = doc[0]["RepoTags"][0]
    doc[0]["RepoTags"] = [tag[:-1] + ("9" if tag[-1] != "9" else "8")]
    out = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
    assert len(out) == len(data) and out != data
    return out


def _index_annotation(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["manifests"][0]["annotations"]["io.arcgap.source"] = "evil.example/x:y"
    return json.dumps(doc, indent=2).encode() + b"\n"


def _drop(name: str) -> Callable[[Members], Members]:
    return lambda members: [(n, d) for n, d in members if n != name]


def _insert_after(anchor: str, name: str, data: bytes) -> Callable[[Members], Members]:
    def change(members: Members) -> Members:
        out: Members = []
        for n, d in members:
            out.append((n, d))
            if n == anchor:
                out.append((name, data))
        return out
    return change


CHANGES = [
    pytest.param(_replace("manifest.json", _repo_tags),
                 "member manifest.json differs from the sha256 arcgap.yaml records", id="manifest-json-repotags"),
    pytest.param(_replace("index.json", _index_annotation),
                 "member index.json is", id="index-json-annotation"),
    pytest.param(_replace("oci-layout", lambda d: d.replace(b"1.0.0", b"9.9.9")),
                 "member oci-layout differs from the sha256 arcgap.yaml records", id="oci-layout"),
    pytest.param(_drop("manifest.json"), "member manifest.json that arcgap.yaml records is missing",
                 id="manifest-json-removed"),
    pytest.param(_insert_after("index.json", "manifest.json.bak", b"[]\n"),
                 "unexpected member 'manifest.json.bak'", id="unrecorded-member"),
]


def _listening() -> socket.socket:
    """A port that accepts connections but is no registry: any connection arcgap makes shows up here."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


def _connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, synth_small: SmallSet) -> tuple[Path, Path, Path]:
    """One signed export for the module: (bundle, public key, private key)."""
    from arcgap.bundle.signing import generate_key

    base = tmp_path_factory.mktemp("signed")
    keys = generate_key(base / "release", passphrase=None)
    bundle = base / "signed.tar.zst"
    names = [synth_small[r].repository.split("/", 1)[1] for r in ROLES]
    with pytest.MonkeyPatch.context() as mp:
        isolate_env(mp, base)
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        code = run(["export", *names, *source_args(synth_small.registry), "--source-repository", "synth",
                    "--source-tag", "v1", "-o", str(bundle), "--sign", str(keys.private), "-q"])
    assert code == 0
    return bundle, keys.public, keys.private


def test_a_signed_bundle_records_its_other_members(signed: tuple[Path, Path, Path]) -> None:
    bundle, _, _ = signed
    members = dict(read_members(bundle))
    doc = yaml.safe_load(members["arcgap.yaml"])
    assert doc["format_version"] == 3
    import hashlib

    assert doc["members"] == [{"name": name, "size": len(members[name]),
                               "digest": "sha256:" + hashlib.sha256(members[name]).hexdigest()}
                              for name in ("oci-layout", "index.json", "manifest.json")]


@pytest.mark.parametrize(("change", "message"), CHANGES)
def test_a_changed_member_is_refused_by_verify_and_import_before_any_connection(
    capsys: pytest.CaptureFixture[str], signed: tuple[Path, Path, Path], tmp_path: Path,
    change: Callable[[Members], Members], message: str,
) -> None:
    bundle, public, _ = signed
    edited = tmp_path / "edited.tar.zst"
    write_members(edited, change(read_members(bundle)))
    verify = arcgap(capsys, "verify", str(edited), "--verify-key", str(public))
    assert verify.code == 11, verify.err
    assert verify.error_lines[0].startswith(f"error: {edited}: {message}")
    assert verify.error_lines[0].endswith(": the bundle was changed after it was signed")
    assert verify.error_lines[1] == "hint: copy the bundle again from the original; do not import this one"
    assert "Traceback" not in verify.err
    target = _listening()
    try:
        port = target.getsockname()[1]
        res = arcgap(capsys, "import", str(edited), "--target-registry", f"127.0.0.1:{port}", "--target-plain-http",
                     "--target-repository", "arc", "--verify-key", str(public), "--no-input")
        assert res.code == 11, res.err
        assert res.error_lines == verify.error_lines
        assert _connections(target) == 0  # refused before any connection to the registry
    finally:
        target.close()
    plain = arcgap(capsys, "verify", str(edited))  # without the key: still refused, as damage (or a bad member)
    assert plain.code in (7, 8), plain.err


def test_a_changed_member_moves_no_tag_at_a_real_registry(
    capsys: pytest.CaptureFixture[str], signed: tuple[Path, Path, Path], fresh_registry, tmp_path: Path,
) -> None:
    bundle, public, _ = signed
    edited = tmp_path / "edited.tar.zst"
    write_members(edited, _replace("manifest.json", _repo_tags)(read_members(bundle)))
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(edited), *target_args(target), "--target-repository", "arc",
                 "--verify-key", str(public))
    assert res.code == 11
    assert no_tags(target) and target.raw_client().catalog() == []


def _as_version_2(members: Members, private: Path) -> Members:
    """The same bundle as a signed format version 2 writes it: no members in arcgap.yaml, signed again."""
    from arcgap.bundle.format import TableOfContents
    from arcgap.bundle.signature import SIGNATURE_NAME

    toc = TableOfContents.from_yaml(dict(members)["arcgap.yaml"])
    from dataclasses import replace

    old = replace(toc, members=(), format_version=2)
    data = old.to_yaml()
    signature = load_signer(private, passphrase=None).sign(data).to_bytes()
    return [(n, data if n == "arcgap.yaml" else signature if n == SIGNATURE_NAME else d) for n, d in members]


def test_a_signed_version_2_bundle_stays_readable_and_its_manifest_json_is_checked(
    capsys: pytest.CaptureFixture[str], signed: tuple[Path, Path, Path], tmp_path: Path,
) -> None:
    bundle, public, private = signed
    old = _as_version_2(read_members(bundle), private)
    good = tmp_path / "v2.tar.zst"
    write_members(good, old)
    # Its signature leaves oci-layout, index.json and manifest.json outside: refused unless accepted on purpose.
    for command in ("verify", "import"):
        res = arcgap(capsys, command, str(good), "--verify-key", str(public), "--target-registry", "127.0.0.1:9",
                     "--target-repository", "a") if command == "import" else \
            arcgap(capsys, command, str(good), "--verify-key", str(public))
        assert res.code == 11, res.err
        assert res.error_lines == [
            f"error: {good}: the signature covers arcgap.yaml only: this bundle's format (version 2) leaves "
            "oci-layout, index.json and manifest.json outside it",
            "hint: re-export the bundle with this arcgap (its signature covers every member), or pass "
            "--accept-partial-signature to accept it as it is"]
    res = arcgap(capsys, "verify", str(good), "--verify-key", str(public), "--accept-partial-signature")
    assert res.code == 0, res.err
    edited = tmp_path / "v2-edited.tar.zst"
    write_members(edited, _replace("manifest.json", _repo_tags)(old))
    assert arcgap(capsys, "verify", str(edited)).code == 0  # without a key nothing says what it should be
    res = arcgap(capsys, "verify", str(edited), "--verify-key", str(public))
    assert res.code == 11 and "covers arcgap.yaml only" in res.error_lines[0]
    res = arcgap(capsys, "verify", str(edited), "--verify-key", str(public), "--accept-partial-signature")
    assert res.code == 11
    assert res.error_lines[0].startswith(f"error: {edited}: member manifest.json: RepoTags of ")
    index = tmp_path / "v2-index.tar.zst"
    write_members(index, _replace("index.json", _index_annotation)(old))
    res = arcgap(capsys, "verify", str(index), "--verify-key", str(public), "--accept-partial-signature")
    assert res.code == 11
    assert res.error_lines[0] == (f"error: {index}: member index.json is not what the signed arcgap.yaml "
                                  "describes: the bundle was changed after it was signed")
