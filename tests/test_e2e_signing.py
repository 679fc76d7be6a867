"""End to end: keygen, export --sign, and --verify-key refusing unsigned, foreign or edited bundles before any push."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
import zstandard
from cryptography.hazmat.primitives import serialization

from arcgap.bundle import tarstream
from devtools.registries import Registry
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, oracle_digest, target_args
from tests.test_e2e_errors import blob_offsets, no_tags
from tests.test_e2e_receipt import member_bytes
from tests.test_e2e_roundtrip import ROLES, clean_env, export_small  # noqa: F401 (autouse fixture)


@pytest.fixture
def keys(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> tuple[Path, Path, str]:
    res = arcgap(capsys, "keygen", "--output", str(tmp_path / "keys" / "release"), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    return Path(doc["private_key"]), Path(doc["public_key"]), doc["fingerprint"]


@pytest.fixture
def signed_bundle(capsys: pytest.CaptureFixture[str], synth_small: SmallSet, keys, tmp_path: Path) -> Path:
    bundle = tmp_path / "signed.tar.zst"
    export_small(capsys, synth_small, bundle, "--sign", str(keys[0]))
    return bundle


def test_keygen_writes_a_pem_pair(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    res = arcgap(capsys, "keygen", "--output", str(tmp_path / "k"))
    assert res.code == 0, res.err
    private, public = tmp_path / "k.key", tmp_path / "k.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert serialization.load_pem_public_key(public.read_bytes()).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw) == key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    lines = res.out.splitlines()
    assert lines[0] == (f"wrote {private} (private: keep it on the connected side) and {public} "
                        "(public: give it to the importing side)")
    assert lines[1].startswith("fingerprint sha256:")
    again = arcgap(capsys, "keygen", "--output", str(tmp_path / "k"))
    assert again.code == 9
    assert again.error_lines == [f"error: {private} already exists",
                                 "hint: choose another --output; arcgap never overwrites a key"]


def test_signed_bundle_imports_with_the_key_and_never_carries_it(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, signed_bundle: Path, keys, fresh_registry,
    tmp_path: Path,
) -> None:
    private, public, fingerprint = keys
    names = [name for name, _, _ in blob_offsets(signed_bundle)]
    assert names[:4] == ["arcgap.yaml", "arcgap.yaml.sig", "oci-layout", "index.json"]
    sig = json.loads(member_bytes(signed_bundle, "arcgap.yaml.sig"))
    assert sig["algorithm"] == "ed25519" and sig["key_fingerprint"] == fingerprint
    assert yaml.safe_load(member_bytes(signed_bundle, "arcgap.yaml"))["format_version"] == 3
    # no trace of the private key: not its PEM, not its 32 raw bytes
    raw = zstandard.ZstdDecompressor().stream_reader(signed_bundle.open("rb")).read()
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    secret = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                               serialization.NoEncryption())
    assert secret not in raw and private.read_bytes() not in raw and b"PRIVATE KEY" not in raw
    assert secret not in signed_bundle.read_bytes()

    inspect = arcgap(capsys, "inspect", str(signed_bundle))
    assert f"signed by {fingerprint}" in inspect.out.splitlines()
    assert json.loads(arcgap(capsys, "inspect", str(signed_bundle), "--json").out)["signed_by"] == fingerprint
    verify = arcgap(capsys, "verify", str(signed_bundle), "--verify-key", str(public))
    assert verify.code == 0, verify.err
    assert f"signed by {fingerprint} (checked with --verify-key)" in verify.out.splitlines()

    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(signed_bundle), *target_args(target), "--target-repository", "arc",
                 "--verify-key", str(public), "--json", "-q")
    assert res.code == 0, res.err
    receipt = json.loads(res.out)["receipt"]
    assert receipt["bundle"]["signed_by"] == fingerprint and receipt["bundle"]["signature_checked"] is True
    for role in ROLES:
        info = synth_small[role]
        assert oracle_digest(target, "arc/" + info.repository.split("/", 1)[1], "v1") == info.digest


def test_signed_bundle_imports_without_a_key_too(
    capsys: pytest.CaptureFixture[str], signed_bundle: Path, keys, fresh_registry,
) -> None:
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(signed_bundle), *target_args(target), "--target-repository", "arc", "--json",
                 "-q")
    assert res.code == 0, res.err
    receipt = json.loads(res.out)["receipt"]
    assert receipt["bundle"]["signed_by"] == keys[2] and receipt["bundle"]["signature_checked"] is False


def test_unsigned_bundle_with_a_verify_key_is_refused_before_any_push(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, keys, fresh_registry, tmp_path: Path,
) -> None:
    bundle = tmp_path / "plain.tar.zst"
    export_small(capsys, synth_small, bundle)
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(bundle), *target_args(target), "--target-repository", "arc",
                 "--verify-key", str(keys[1]))
    assert res.code == 11
    assert res.error_lines == [
        f"error: {bundle} is not signed; --verify-key {keys[1]} requires a signature",
        "hint: ask for a bundle exported with 'arcgap export --sign KEY'",
    ]
    assert target.raw_client().catalog() == []
    verify = arcgap(capsys, "verify", str(bundle), "--verify-key", str(keys[1]))
    assert verify.code == 11 and verify.error_lines[0] == res.error_lines[0]


def test_bundle_signed_by_another_key_is_refused(
    capsys: pytest.CaptureFixture[str], signed_bundle: Path, keys, fresh_registry, tmp_path: Path,
) -> None:
    other = arcgap(capsys, "keygen", "--output", str(tmp_path / "other"), "--json")
    other_doc = json.loads(other.out)
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(signed_bundle), *target_args(target), "--target-repository", "arc",
                 "--verify-key", other_doc["public_key"])
    assert res.code == 11
    assert res.error_lines == [
        f"error: {signed_bundle} is signed by another key ({keys[2]}), not by {other_doc['public_key']} "
        f"({other_doc['fingerprint']})",
        "hint: check that you were given the right public key; do not import a bundle you cannot attribute",
    ]
    assert target.raw_client().catalog() == []


def _edit_signed_manifest(src: Path, dst: Path, old: bytes, new: bytes) -> None:
    """Change bytes inside arcgap.yaml and keep the original signature member (recompressed)."""
    raw = zstandard.ZstdDecompressor().stream_reader(src.open("rb")).read()
    size = int(raw[124:136].rstrip(b"\0 "), 8)
    body = raw[512 : 512 + size]
    assert old in body
    body = body.replace(old, new, 1)
    rest = raw[512 + size + (-size % 512) :]
    dst.write_bytes(zstandard.ZstdCompressor().compress(
        tarstream.member_header("arcgap.yaml", len(body)) + body + tarstream.padding(len(body)) + rest))


def test_edited_arcgap_yaml_is_refused(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, signed_bundle: Path, keys, fresh_registry,
    tmp_path: Path,
) -> None:
    edited = tmp_path / "edited.tar.zst"
    host = synth_small.registry.host
    # a repointed source annotation: harmless to the graph, but not what was signed
    _edit_signed_manifest(signed_bundle, edited, f"source: {host}/synth/docker-image:v1".encode(),
                          f"source: {host}/evil/docker-image:v1".encode())
    target: Registry = fresh_registry()
    res = arcgap(capsys, "import", str(edited), *target_args(target), "--target-repository", "arc",
                 "--verify-key", str(keys[1]))
    assert res.code == 11
    assert res.error_lines == [
        f"error: {edited}: the signature does not match arcgap.yaml: it was changed after it was signed",
        "hint: copy the bundle again from the original; do not import this one",
    ]
    assert no_tags(target) and target.raw_client().catalog() == []
    assert arcgap(capsys, "verify", str(edited), "--verify-key", str(keys[1])).code == 11


def test_encrypted_key_and_key_mixups(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARCGAP_KEY_PASSPHRASE", "s3cret pass")
    made = json.loads(arcgap(capsys, "keygen", "--output", str(tmp_path / "enc"), "--json").out)
    assert made["encrypted"] is True
    private = Path(made["private_key"])
    assert private.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    monkeypatch.delenv("ARCGAP_KEY_PASSPHRASE")
    out = tmp_path / "x.tar.zst"
    res = arcgap(capsys, "export", "docker-image", "--source-registry", synth_small.registry.host,
                 "--source-plain-http", "--source-repository", "synth", "--source-tag", "v1", "-o", str(out),
                 "--sign", str(private))
    assert res.code == 2
    assert res.error_lines == [f"error: {private} is encrypted and ARCGAP_KEY_PASSPHRASE is not set",
                               "hint: set ARCGAP_KEY_PASSPHRASE to the key's passphrase"]
    assert not out.exists()
    monkeypatch.setenv("ARCGAP_KEY_PASSPHRASE", "wrong")
    res = arcgap(capsys, "export", "docker-image", "--source-registry", synth_small.registry.host,
                 "--source-plain-http", "--source-repository", "synth", "--source-tag", "v1", "-o", str(out),
                 "--sign", str(private))
    assert res.code == 2 and res.error_lines[0] == f"error: cannot decrypt {private}: wrong passphrase"
    assert "wrong" not in res.err.replace("wrong passphrase", "")
    monkeypatch.setenv("ARCGAP_KEY_PASSPHRASE", "s3cret pass")
    export_small(capsys, synth_small, out, "--sign", str(private))
    assert b"s3cret" not in zstandard.ZstdDecompressor().stream_reader(out.open("rb")).read()
    res = arcgap(capsys, "verify", str(out), "--verify-key", str(private))
    assert res.code == 2
    assert res.error_lines == [
        f"error: {private} is a private key; --verify-key takes the public key",
        "hint: give NAME.pub written by 'arcgap keygen --output NAME'; keep NAME.key off this side",
    ]
    res = arcgap(capsys, "verify", str(out), "--verify-key", made["public_key"])
    assert res.code == 0, res.err
