"""Why a registry's certificate was refused, in facts: expired (on which date), issued for other names, or
issued by an authority the trust does not hold. From ``ssl.SSLCertVerificationError.verify_code`` and, for
the date and the names, the certificate itself, read once more without verification (it is not trusted for
anything: only its dates and names are quoted)."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h)
_EXPIRED = 10
_NOT_YET_VALID = 9
_NAME_MISMATCH = frozenset({62, 64})  # host name, IP address
_UNKNOWN_ISSUER = frozenset({2, 19, 20, 21, 18})

EXPIRED, NOT_YET_VALID, OTHER_NAME, UNKNOWN_ISSUER, UNTRUSTED = (
    "expired", "not-yet-valid", "other-name", "unknown-issuer", "untrusted")


@dataclass(frozen=True)
class CertCause:
    kind: str  # one of the constants above
    said: str  # OpenSSL's verify_message
    when: str = ""  # the date that matters (expired on / valid from), ISO 8601
    names: tuple[str, ...] = ()  # the names the certificate is issued for
    issuer: str = ""

    def text(self, registry: str) -> str:
        if self.kind == EXPIRED:
            return f"the TLS certificate of {registry} expired{' on ' + self.when if self.when else ''}"
        if self.kind == NOT_YET_VALID:
            return f"the TLS certificate of {registry} is not valid before {self.when or 'a later date'}"
        if self.kind == OTHER_NAME:
            named = ", ".join(self.names[:8]) if self.names else "other names"
            return f"the TLS certificate of {registry} is issued for {named}, not {_host(registry)}"
        if self.kind == UNKNOWN_ISSUER:
            by = f" ({self.issuer})" if self.issuer else ""
            return f"the TLS certificate of {registry} is issued by an authority that is not trusted{by}"
        return f"the TLS certificate of {registry} is not trusted ({self.said})"


def verify_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc`` (httpx wraps it), if there is one."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLCertVerificationError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
        if cur is None and exc.args and isinstance(exc.args[0], BaseException):
            cur = exc.args[0]
    return None


def cause_of(err: ssl.SSLCertVerificationError, registry: str, *, timeout_s: float = 5.0) -> CertCause:
    # cryptography only here, when a certificate was refused: importing it costs every run ~40 ms of start-up
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    code = getattr(err, "verify_code", 0) or 0
    said = str(getattr(err, "verify_message", "") or err.reason or err)
    kind = (EXPIRED if code == _EXPIRED else NOT_YET_VALID if code == _NOT_YET_VALID
            else OTHER_NAME if code in _NAME_MISMATCH else UNKNOWN_ISSUER if code in _UNKNOWN_ISSUER
            else UNTRUSTED)
    cert = _peer_certificate(registry, timeout_s)
    if cert is None:
        return CertCause(kind, said)
    when = ""
    if kind == EXPIRED:
        when = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    elif kind == NOT_YET_VALID:
        when = cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M UTC")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple([*san.get_values_for_type(x509.DNSName),
                       *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))])
    except x509.ExtensionNotFound:
        names = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    issuer = cert.issuer.rfc4514_string()[:120]
    return CertCause(kind, said, when=when, names=tuple(n[:80] for n in names), issuer=issuer)


def _host(registry: str) -> str:
    host, sep, port = registry.rpartition(":")
    return host.strip("[]") if sep and port.isdigit() else registry


def _peer_certificate(registry: str, timeout_s: float) -> x509.Certificate | None:
    """The certificate ``registry`` presents, unverified (only to quote its dates and names)."""
    host, sep, port = registry.rpartition(":")
    address = (host.strip("[]"), int(port)) if sep and port.isdigit() else (registry, 443)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(address, timeout=timeout_s) as sock, \
                ctx.wrap_socket(sock, server_hostname=address[0]) as tls:
            der = tls.getpeercert(binary_form=True)
        from cryptography import x509

        return x509.load_der_x509_certificate(der) if der else None
    except (OSError, ValueError):
        return None
