"""The registry client's errors are neutral: facts (registry, operation, fault, status, error codes) and the
client that raised them, never a hint or a side's setting name. Against a real registry."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from arcgap.errors import ArcgapError, AuthError, Fault, NetworkError, NotFoundError, RegistryError, TLSError
from arcgap.oci.digest import Digest
from arcgap.registry.client import RegistryClient
from arcgap.registry.credentials import Credentials
from arcgap.registry.transport import TLSOptions
from arcgap.util.secret import Secret
from devtools.registries import Registry

MANIFEST = (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":'
            b'"application/vnd.oci.image.config.v1+json","digest":"sha256:' + b"0" * 64 + b'","size":2},"layers":[]}')
SIDE_WORDS = ("SOURCE", "TARGET", "source", "target", "--")


def _raised(kind: type[ArcgapError], client: RegistryClient, call: Callable[[RegistryClient], object]) -> ArcgapError:
    """The error ``call`` raises, checked to be neutral: no hint, no side, no side's setting names."""
    with client, pytest.raises(kind) as info:
        call(client)
    exc = info.value
    _neutral(exc, client)
    return exc


def _neutral(exc: ArcgapError, client: RegistryClient) -> None:
    assert exc.hint == "" and exc.side is None and exc.origin is client
    assert not any(word in exc.message for word in SIDE_WORDS), exc.message


def test_a_missing_manifest(plain_registry: Registry) -> None:
    exc = _raised(NotFoundError, RegistryClient(plain_registry.host, tls=TLSOptions(plain_http=True)),
                  lambda c: c.get_manifest("no/such/repository", "v1"))
    detail = exc.detail
    assert detail is not None and (detail.registry, detail.fault, detail.status) == (
        plain_registry.host, Fault.NOT_FOUND, 404)
    assert detail.codes and set(detail.codes) <= {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}
    assert detail.operation == f"fetching manifest {plain_registry.host}/no/such/repository:v1"


def test_an_invalid_manifest_keeps_the_registry_codes(plain_registry: Registry) -> None:
    exc = _raised(RegistryError, RegistryClient(plain_registry.host, tls=TLSOptions(plain_http=True)),
                  lambda c: c.put_manifest("neutral/x", "v1", MANIFEST, "application/vnd.oci.image.manifest.v1+json"))
    assert isinstance(exc, RegistryError)
    assert exc.status == 400 and "MANIFEST_BLOB_UNKNOWN" in exc.codes  # its config and layer are not there
    assert exc.detail is not None and exc.detail.fault == Fault.ANSWER


def test_wrong_credentials(tls_registry: Registry) -> None:
    assert tls_registry.ca_file is not None
    creds = Credentials(tls_registry.username or "u", Secret("not-the-password"), source="options")
    client = RegistryClient(tls_registry.host, credentials=creds, tls=TLSOptions(ca_file=tls_registry.ca_file))
    exc = _raised(AuthError, client, lambda c: c.blob_exists("neutral/x", Digest.of(b"")))
    assert exc.detail is not None and exc.detail.fault == Fault.UNAUTHORIZED
    assert "not-the-password" not in repr(exc.__dict__) + repr(exc.detail) + repr(client)


def test_untrusted_tls_and_unreachable(tls_registry: Registry) -> None:
    from devtools.procs import free_port

    assert tls_registry.ca_file is not None
    untrusting = TLSOptions(certs_dir=tls_registry.ca_file.parent / "none")  # the system store only
    tls = _raised(TLSError, RegistryClient(tls_registry.host, tls=untrusting), RegistryClient.ping)
    assert tls.detail is not None and tls.detail.fault == Fault.TLS_UNTRUSTED
    host = f"127.0.0.1:{free_port()}"
    net = _raised(NetworkError, RegistryClient(host, tls=TLSOptions(plain_http=True)), RegistryClient.ping)
    assert net.detail is not None and (net.detail.fault, net.detail.registry) == (Fault.UNREACHABLE, host)
