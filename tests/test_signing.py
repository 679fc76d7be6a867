"""arcgap.bundle.signing and arcgap.bundle.signature: keys in PEM, fingerprints, signing and every way a check fails."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from arcgap.bundle.signature import BundleSignature
from arcgap.bundle.signing import check_signature, generate_key, key_paths, load_signer, load_verify_key
from arcgap.cli.hints import words
from arcgap.errors import BundleFormatError, ExitCode, LocalIOError, SignatureError, UsageError
from arcgap.oci.digest import Digest

DOC = b"# arcgap bundle manifest\nformat: arcgap-bundle\nformat_version: 2\n"


@pytest.mark.parametrize(
    ("output", "expected"),
    [("release", ("release.key", "release.pub")), ("release.key", ("release.key", "release.pub")),
     ("release.pub", ("release.key", "release.pub")), ("k.v1", ("k.v1.key", "k.v1.pub"))],
)
def test_key_paths(output: str, expected: tuple[str, str]) -> None:
    private, public = key_paths(Path("/keys") / output)
    assert (private.name, public.name) == expected
    assert private.parent == Path("/keys")


def test_generate_writes_pem_files_private_0600(tmp_path: Path) -> None:
    keys = generate_key(tmp_path / "sub" / "rel", passphrase=None)
    assert stat.S_IMODE(keys.private.stat().st_mode) == 0o600
    assert keys.private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert keys.public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert not keys.encrypted
    # the fingerprint is sha256 of the DER SubjectPublicKeyInfo (what openssl pkey -pubin -outform DER gives)
    public = serialization.load_pem_public_key(keys.public.read_bytes())
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert keys.fingerprint == Digest("sha256", hashlib.sha256(der).hexdigest())
    assert load_verify_key(keys.public).fingerprint == keys.fingerprint
    assert load_signer(keys.private, passphrase=None).fingerprint == keys.fingerprint


def test_generate_never_overwrites(tmp_path: Path) -> None:
    generate_key(tmp_path / "k", passphrase=None)
    before = (tmp_path / "k.key").read_bytes()
    with pytest.raises(LocalIOError) as info:
        generate_key(tmp_path / "k", passphrase=None)
    assert info.value.message == f"{tmp_path / 'k.key'} already exists"
    assert (tmp_path / "k.key").read_bytes() == before


def test_encrypted_key_needs_the_passphrase(tmp_path: Path) -> None:
    keys = generate_key(tmp_path / "k", passphrase="correct horse")
    assert keys.encrypted
    assert keys.private.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(UsageError) as info:
        load_signer(keys.private, passphrase=None)
    assert words(info.value.message) == f"{keys.private} is encrypted and ARCGAP_KEY_PASSPHRASE is not set"
    assert words(info.value.hint) == "set ARCGAP_KEY_PASSPHRASE to the key's passphrase"
    with pytest.raises(UsageError) as info:
        load_signer(keys.private, passphrase="wrong")
    assert info.value.message == f"cannot decrypt {keys.private}: wrong passphrase"
    assert load_signer(keys.private, passphrase="correct horse").fingerprint == keys.fingerprint


def test_passphrase_ignored_for_an_unencrypted_key(tmp_path: Path) -> None:
    keys = generate_key(tmp_path / "k", passphrase=None)
    assert load_signer(keys.private, passphrase="anything").fingerprint == keys.fingerprint


def test_keys_in_the_wrong_place(tmp_path: Path) -> None:
    keys = generate_key(tmp_path / "k", passphrase=None)
    with pytest.raises(UsageError) as info:
        load_signer(keys.public, passphrase=None)
    assert words(info.value.message) == f"{keys.public} is a public key; --sign takes the private key"
    with pytest.raises(UsageError) as info:
        load_verify_key(keys.private)
    assert words(info.value.message) == f"{keys.private} is a private key; --verify-key takes the public key"
    assert "keep NAME.key off this side" in info.value.hint
    with pytest.raises(LocalIOError) as missing:
        load_verify_key(tmp_path / "nope.pub")
    assert missing.value.message == f"{tmp_path / 'nope.pub'}: no such file"


def test_non_ed25519_and_garbage_keys(tmp_path: Path) -> None:
    ec = generate_private_key(SECP256R1())
    (tmp_path / "ec.key").write_bytes(ec.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (tmp_path / "ec.pub").write_bytes(ec.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "junk").write_bytes(b"not a key\n")
    with pytest.raises(UsageError, match="is not an Ed25519 key"):
        load_signer(tmp_path / "ec.key", passphrase=None)
    with pytest.raises(UsageError, match="is not an Ed25519 public key"):
        load_verify_key(tmp_path / "ec.pub")
    with pytest.raises(UsageError) as info:
        load_signer(tmp_path / "junk", passphrase=None)
    assert info.value.message == f"{tmp_path / 'junk'} is not a PEM private key"
    with pytest.raises(UsageError) as info:
        load_verify_key(tmp_path / "junk")
    assert info.value.message == f"{tmp_path / 'junk'} is not a PEM public key"


def test_signer_repr_hides_the_key(tmp_path: Path) -> None:
    keys = generate_key(tmp_path / "k", passphrase=None)
    signer = load_signer(keys.private, passphrase=None)
    assert "_key=" not in repr(signer) and "Ed25519" not in repr(signer)
    assert str(keys.fingerprint.hex) in repr(signer)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    keys = generate_key(tmp_path / "k", passphrase=None)
    return keys.private, keys.public


def test_sign_and_check(pair: tuple[Path, Path]) -> None:
    private, public = pair
    signature = load_signer(private, passphrase=None).sign(DOC)
    again = BundleSignature.from_bytes(signature.to_bytes(), origin="b")
    assert again == signature
    assert again.signed_digest == Digest.of(DOC)
    assert len(again.signature) == 64
    assert check_signature(DOC, again, load_verify_key(public), origin="b") == again.key_fingerprint


def test_check_refuses_unsigned_other_key_and_edited(pair: tuple[Path, Path], tmp_path: Path) -> None:
    private, public = pair
    key = load_verify_key(public)
    signature = load_signer(private, passphrase=None).sign(DOC)
    with pytest.raises(SignatureError) as info:
        check_signature(DOC, None, key, origin="b.tar.zst")
    assert words(info.value.message) == f"b.tar.zst is not signed; --verify-key {public} requires a signature"
    assert info.value.exit_code == ExitCode.SIGNATURE == 11

    other = generate_key(tmp_path / "other", passphrase=None)
    with pytest.raises(SignatureError) as info:
        check_signature(DOC, signature, load_verify_key(other.public), origin="b.tar.zst")
    assert info.value.message == (f"b.tar.zst is signed by another key ({key.fingerprint}), "
                                  f"not by {other.public} ({other.fingerprint})")

    edited = DOC.replace(b"format_version: 2", b"format_version: 2 ")
    with pytest.raises(SignatureError) as info:
        check_signature(edited, signature, key, origin="b.tar.zst")
    assert info.value.message == ("b.tar.zst: the signature does not match arcgap.yaml: "
                                  "it was changed after it was signed")

    # the signed_sha256 field agrees but the signature bytes were swapped for another document's
    forged = BundleSignature(signature.key_fingerprint, Digest.of(edited),
                             load_signer(private, passphrase=None).sign(DOC + b"x").signature)
    with pytest.raises(SignatureError) as info:
        check_signature(edited, forged, key, origin="b.tar.zst")
    assert info.value.message == (f"b.tar.zst: the signature is not valid for {key.path} ({key.fingerprint}): it "
                                  "names that key but was not made with it (forged or damaged)")


def _sig_doc(**changes: object) -> bytes:
    doc: dict[str, object] = {
        "format": "arcgap-signature", "algorithm": "ed25519", "key_fingerprint": str(Digest.of(b"k")),
        "signed_member": "arcgap.yaml", "signed_sha256": str(Digest.of(b"d")),
        "signature": "A" * 86 + "==",
    }
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def test_signature_document_parses() -> None:
    parsed = BundleSignature.from_bytes(_sig_doc(), origin="b")
    assert parsed.signature == bytes(64) and parsed.algorithm == "ed25519"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not an arcgap signature"),
        (_sig_doc(format="x"), "not an arcgap signature"),
        (_sig_doc(algorithm="rsa"), "unsupported algorithm 'rsa'"),
        (_sig_doc(signature=None), "missing key_fingerprint, signed_sha256 or signature"),
        (_sig_doc(signature="!!!"), "invalid fingerprint, digest or signature encoding"),
        (_sig_doc(key_fingerprint="md5:00"), "invalid fingerprint, digest or signature encoding"),
        (_sig_doc(signature="AAAA"), "an Ed25519 signature has 64 bytes, not 3"),
    ],
)
def test_signature_document_rejects(data: bytes, message: str) -> None:
    with pytest.raises(BundleFormatError) as info:
        BundleSignature.from_bytes(data, origin="b.tar.zst")
    assert info.value.message == f"b.tar.zst: arcgap.yaml.sig: {message}"
