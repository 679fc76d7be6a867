"""Ed25519 keys and bundle signatures: ``arcgap keygen``, ``export --sign``, ``--verify-key`` on the far side.

Keys are standard PEM (PKCS#8 private key, SubjectPublicKeyInfo public key). A key's fingerprint is the sha256
of its DER SubjectPublicKeyInfo (``openssl pkey -pubin -in K.pub -outform DER | sha256sum`` gives the same hex).
The private key is only ever read to sign ``arcgap.yaml``; nothing of it reaches the bundle, logs or reprs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from arcgap.bundle.reader import BundleReader
from arcgap.bundle.signature import BundleSignature
from arcgap.errors import LocalIOError, SignatureError, UsageError, option, variable
from arcgap.oci.digest import Digest
from arcgap.util.regularfile import read_regular

PASSPHRASE_ENV = "ARCGAP_KEY_PASSPHRASE"
MAX_KEY_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class KeyFiles:
    private: Path
    public: Path
    fingerprint: Digest
    encrypted: bool


@dataclass(frozen=True)
class Signer:
    """A loaded private key; ``repr`` shows only its fingerprint."""

    path: Path
    fingerprint: Digest
    _key: Ed25519PrivateKey = field(repr=False)

    def sign(self, data: bytes) -> BundleSignature:
        return BundleSignature(self.fingerprint, Digest.of(data), self._key.sign(data))


@dataclass(frozen=True)
class VerifyKey:
    path: Path
    fingerprint: Digest
    key: Ed25519PublicKey = field(repr=False)


def fingerprint_of(public_key: Ed25519PublicKey) -> Digest:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Digest.of(der)


def key_paths(output: Path) -> tuple[Path, Path]:
    """``NAME`` → ``NAME.key``, ``NAME.pub`` (a trailing ``.key`` or ``.pub`` on NAME is not doubled)."""
    base = output.with_suffix("") if output.suffix in (".key", ".pub") else output
    return base.with_name(base.name + ".key"), base.with_name(base.name + ".pub")


def generate_key(output: Path, *, passphrase: str | None) -> KeyFiles:
    """Write a new key pair; the private key is created 0600 and never overwrites an existing file."""
    private_path, public_path = key_paths(output)
    for path in (private_path, public_path):
        if path.exists():
            raise LocalIOError(f"{path} already exists",
                               hint=f"choose another {option('output')}; arcgap never overwrites a key")
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        private_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)  # whatever the umask
            fh.write(private_pem)
        fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(public_pem)
    except OSError as exc:
        raise LocalIOError(f"cannot write {exc.filename or private_path}: {exc.strerror or exc}",
                           hint=f"check the {option('output')} path") from None
    return KeyFiles(private_path, public_path, fingerprint_of(key.public_key()), encrypted=bool(passphrase))


def _read_pem(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise UsageError(f"{path} is not a PEM {what} key (too large)")
        return read_regular(path)
    except FileNotFoundError:
        raise LocalIOError(f"{path}: no such file", hint="check the key path") from None
    except OSError as exc:
        raise LocalIOError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_signer(path: Path, *, passphrase: str | None) -> Signer:
    """The private key for ``export --sign``; a passphrase is used only when the key is encrypted."""
    data = _read_pem(path, "private")
    if b"-----BEGIN PUBLIC KEY-----" in data:
        raise UsageError(f"{path} is a public key; {option('sign')} takes the private key",
                         hint=f"give NAME.key written by 'arcgap keygen {option('output')} NAME'")
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and not passphrase:
        raise UsageError(f"{path} is encrypted and {variable('sign.passphrase')} is not set",
                         hint=f"set {variable('sign.passphrase')} to the key's passphrase")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() if encrypted and passphrase
                                                 else None)
    except (ValueError, TypeError):
        if encrypted:
            raise UsageError(f"cannot decrypt {path}: wrong passphrase",
                             hint=f"check {variable('sign.passphrase')}") from None
        raise UsageError(f"{path} is not a PEM private key",
                         hint=f"give NAME.key written by 'arcgap keygen {option('output')} NAME'") from None
    except UnsupportedAlgorithm:
        raise UsageError(f"{path} is not a usable private key", hint="create one with 'arcgap keygen'") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 key; arcgap signs with Ed25519",
                         hint="create one with 'arcgap keygen'")
    return Signer(path, fingerprint_of(key.public_key()), key)


def load_verify_key(path: Path) -> VerifyKey:
    """The public key for ``--verify-key``; a private key is refused (it does not belong on this side)."""
    data = _read_pem(path, "public")
    if b"PRIVATE KEY-----" in data:
        raise UsageError(f"{path} is a private key; {option('verify_key')} takes the public key",
                         hint=f"give NAME.pub written by 'arcgap keygen {option('output')} NAME'; "
                              "keep NAME.key off this side")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(f"{path} is not a PEM public key",
                         hint=f"give NAME.pub written by 'arcgap keygen {option('output')} NAME'") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key; arcgap signs with Ed25519",
                         hint=f"give NAME.pub written by 'arcgap keygen {option('output')} NAME'")
    return VerifyKey(path, fingerprint_of(key), key)


def check_signature(
    toc_bytes: bytes, signature: BundleSignature | None, key: VerifyKey, *, origin: str
) -> Digest:
    """Raise SignatureError unless ``key`` signed exactly these arcgap.yaml bytes; returns the fingerprint."""
    if signature is None:
        raise SignatureError(f"{origin} is not signed; {option('verify_key')} {key.path} requires a signature",
                             hint=f"ask for a bundle exported with 'arcgap export {option('sign')} KEY'")
    if signature.key_fingerprint != key.fingerprint:
        raise SignatureError(
            f"{origin} is signed by another key ({signature.key_fingerprint}), not by {key.path} ({key.fingerprint})",
            hint="check that you were given the right public key; do not import a bundle you cannot attribute",
        )
    if signature.signed_digest != Digest.of(toc_bytes):
        raise SignatureError(
            f"{origin}: the signature does not match arcgap.yaml: it was changed after it was signed",
            hint="copy the bundle again from the original; do not import this one",
        )
    try:
        key.key.verify(signature.signature, toc_bytes)
    except InvalidSignature:  # arcgap.yaml is what the signature claims to cover, but the key did not sign it
        raise SignatureError(
            f"{origin}: the signature is not valid for {key.path} ({key.fingerprint}): it names that key but was "
            "not made with it (forged or damaged)",
            hint="do not import this bundle; ask the exporting side for a new copy signed with the key",
        ) from None
    return key.fingerprint


def check_bundle_signature(reader: BundleReader, key: VerifyKey, *, accept_partial: bool = False) -> Digest:
    """Check ``reader``'s signature with ``key``, then every member the signed arcgap.yaml covers besides the blobs
    (``oci-layout``, ``index.json``, ``manifest.json``), before anything else happens; raises SignatureError.

    The blobs are covered by the digests arcgap.yaml lists; the reader checks each one as it streams.
    """
    fingerprint = check_signature(reader.toc_bytes, reader.signature(), key, origin=reader.origin)
    if not reader.toc.members and not accept_partial:
        # Before format 3 a signature covered arcgap.yaml alone: oci-layout, index.json and manifest.json (what
        # docker load reads: which config and layers make each image) could be swapped under a valid signature.
        raise SignatureError(
            f"{reader.origin}: the signature covers arcgap.yaml only: this bundle's format (version "
            f"{reader.toc.format_version}) leaves oci-layout, index.json and manifest.json outside it",
            hint=f"re-export the bundle with this arcgap (its signature covers every member), or pass "
                 f"{option('accept_partial_signature')} to accept it as it is")
    reader.signature_checked = True
    reader.read_layout()
    return fingerprint
