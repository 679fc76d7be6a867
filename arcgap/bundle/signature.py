"""``arcgap.yaml.sig``: the optional signature member right after ``arcgap.yaml`` (its schema only; pure).

The signature is Ed25519 over the exact bytes of ``arcgap.yaml``, which lists every digest in the bundle.
The cryptography lives in :mod:`arcgap.bundle.signing`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from arcgap.errors import BundleFormatError, UsageError
from arcgap.oci.digest import Digest

SIGNATURE_NAME = "arcgap.yaml.sig"
SIGNATURE_FORMAT = "arcgap-signature"
ALGORITHM = "ed25519"
MAX_SIGNATURE_BYTES = 64 * 1024
ED25519_SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class BundleSignature:
    key_fingerprint: Digest  # sha256 of the signer's public key (DER SubjectPublicKeyInfo)
    signed_digest: Digest  # sha256 of the arcgap.yaml bytes it signs (informative: the signature decides)
    signature: bytes
    algorithm: str = ALGORITHM

    def to_bytes(self) -> bytes:
        doc = {
            "format": SIGNATURE_FORMAT,
            "algorithm": self.algorithm,
            "key_fingerprint": str(self.key_fingerprint),
            "signed_member": "arcgap.yaml",
            "signed_sha256": str(self.signed_digest),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, origin: str) -> BundleSignature:
        def fail(why: str) -> BundleFormatError:
            return BundleFormatError(f"{origin}: {SIGNATURE_NAME}: {why}",
                                     hint="the bundle is damaged or was not written by arcgap")

        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            raise fail("not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != SIGNATURE_FORMAT:
            raise fail("not an arcgap signature")
        if doc.get("algorithm") != ALGORITHM:
            raise fail(f"unsupported algorithm {str(doc.get('algorithm'))[:40]!r}")
        fields = [doc.get(k) for k in ("key_fingerprint", "signed_sha256", "signature")]
        if not all(isinstance(v, str) for v in fields):
            raise fail("missing key_fingerprint, signed_sha256 or signature")
        fingerprint, signed, sig = fields
        try:
            raw = base64.b64decode(sig, validate=True)
            parsed = cls(Digest.parse(fingerprint), Digest.parse(signed), raw)
        except (binascii.Error, ValueError, UsageError):
            raise fail("invalid fingerprint, digest or signature encoding") from None
        if len(raw) != ED25519_SIGNATURE_BYTES:
            raise fail(f"an Ed25519 signature has {ED25519_SIGNATURE_BYTES} bytes, not {len(raw)}")
        return parsed
