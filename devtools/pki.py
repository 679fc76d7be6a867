"""A throw-away PKI for tests: a CA, server certificates issued by it, and an ES256 token-signing pair.

All keys are ECDSA P-256 (fast to generate, accepted by Go's TLS stack, by skopeo and by dockerd).
Files are written as PEM; private keys unencrypted, mode 0600.

>>> ca = make_ca(tmp)
>>> cert, key = ca.issue_server_cert(tmp, ips=["10.99.0.2"])
>>> signer = make_token_signer(tmp)        # for distribution's auth.token.rootcertbundle
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=30)
BACKDATE = dt.timedelta(hours=1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "arcgap tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class CA:
    """A certificate authority whose PEM certificate is ``cert_path`` (give it to clients as their CA)."""

    cert_path: Path
    key_path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def issue_server_cert(
        self,
        directory: Path,
        *,
        ips: Sequence[str] = (),
        dns: Sequence[str] = (),
        name: str = "server",
        not_after: dt.datetime | None = None,
        only: bool = False,
    ) -> tuple[Path, Path]:
        """Issue a TLS server certificate for 127.0.0.1 and localhost plus ``ips``/``dns``.

        ``not_after`` in the past makes an expired certificate; ``only`` issues it for ``ips``/``dns`` alone
        (a certificate for another name than the one a client connects to).

        Writes ``<name>.crt`` (leaf followed by the CA, a full chain) and ``<name>.key`` into ``directory``
        and returns ``(cert_path, key_path)``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        all_ips = list(ips) if only else ["127.0.0.1", *[ip for ip in ips if ip != "127.0.0.1"]]
        all_dns = list(dns) if only else ["localhost", *[d for d in dns if d != "localhost"]]
        san: list[x509.GeneralName] = [x509.DNSName(d) for d in all_dns]
        san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in all_ips]
        key = _new_key()
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(all_dns[0] if all_dns else all_ips[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now - BACKDATE, (not_after or now) - VALIDITY))
            .not_valid_after(not_after or now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path = directory / f"{name}.crt"
        key_path = directory / f"{name}.key"
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.cert.public_bytes(
            serialization.Encoding.PEM
        )
        cert_path.write_bytes(chain)
        _write_key(key_path, key)
        return cert_path, key_path

    def cert_dir(self, directory: Path) -> Path:
        """A directory holding only ``ca.crt`` (skopeo's ``--cert-dir`` layout, as dockerd's certs.d)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_cert(directory / "ca.crt", self.cert)
        return directory


def make_ca(directory: Path, *, common_name: str = "arcgap test CA") -> CA:
    """Create a self-signed CA and write ``ca.crt`` / ``ca.key`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    now = _now()
    subject = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "ca.crt"
    key_path = directory / "ca.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return CA(cert_path=cert_path, key_path=key_path, cert=cert, key=key)


@dataclass(frozen=True)
class TokenSigner:
    """An ES256 key and its self-signed certificate; ``cert_path`` is distribution's ``rootcertbundle``."""

    cert_path: Path
    key_path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def make_token_signer(directory: Path, *, common_name: str = "arcgap test token signer") -> TokenSigner:
    """Create an ES256 (P-256) key and a self-signed cert: ``token-signer.crt`` / ``token-signer.key``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    now = _now()
    subject = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "token-signer.crt"
    key_path = directory / "token-signer.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return TokenSigner(cert_path=cert_path, key_path=key_path, cert=cert, key=key)


def load_token_signer(cert_path: Path, key_path: Path) -> TokenSigner:
    """Load a signer written by :func:`make_token_signer` (used by the token server subprocess)."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{key_path}: expected an EC private key")
    return TokenSigner(cert_path=Path(cert_path), key_path=Path(key_path), cert=cert, key=key)
