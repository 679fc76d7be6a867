"""The command line's hint for a registry's neutral error, worded by side (table-driven, no I/O)."""

from __future__ import annotations

import pytest

from arcgap.cli.hints import hint_for
from arcgap.errors import (
    ArcgapError,
    AuthError,
    Fault,
    NetworkError,
    NotFoundError,
    RegistryDetail,
    RegistryError,
    TLSError,
)

HOST = "r.example:5000"


def _error(cls: type[ArcgapError], fault: str, side: str | None, status: int = 0) -> ArcgapError:
    exc = cls("message", detail=RegistryDetail(HOST, "fetching manifest r.example:5000/a:t", fault, status))
    exc.side = side
    return exc


@pytest.mark.parametrize(("cls", "fault", "side", "hint"), [
    (TLSError, Fault.TLS_UNTRUSTED, "target",
     f"give the registry's CA with --target-ca-file (or put it in /etc/docker/certs.d/{HOST}/ca.crt); "
     "use --target-plain-http if the registry speaks plain HTTP"),
    (TLSError, Fault.TLS_HANDSHAKE, "source",
     f"give the registry's CA with --source-ca-file (or put it in /etc/docker/certs.d/{HOST}/ca.crt); "
     "use --source-plain-http if the registry speaks plain HTTP"),
    (NetworkError, Fault.UNREACHABLE, "target", "check TARGET_DOCKER_REGISTRY and the network path to it"),
    (RegistryError, Fault.NOT_A_REGISTRY, "source", "check SOURCE_DOCKER_REGISTRY"),
    (AuthError, Fault.UNAUTHORIZED, "source", "check SOURCE_DOCKER_USERNAME and SOURCE_DOCKER_PASSWORD"),
    (AuthError, Fault.CREDENTIALS, "target",
     f"check TARGET_DOCKER_USERNAME and TARGET_DOCKER_PASSWORD (or your docker login for {HOST})"),
    (AuthError, Fault.DENIED, "target", "the target user lacks permission on this repository"),
    (NotFoundError, Fault.NOT_FOUND, "source", "check the image name and SOURCE_DOCKER_TAG"),
    (NetworkError, Fault.TRANSIENT, "target", "the registry kept failing for the whole retry budget; try again "
     "later (export, import and mirror wait longer with --retry-budget SECONDS)"),
    (RegistryError, Fault.MALFORMED, "source",
     f"{HOST} answers outside the OCI distribution spec; report it to its operator"),
    (RegistryError, Fault.ANSWER, "source", ""),
    # no side known (a client outside the command's pools): still something to check, never a wrong side
    (AuthError, Fault.UNAUTHORIZED, None, "check the username and password"),
    (NetworkError, Fault.UNREACHABLE, None, f"check the address of {HOST} and the network path to it"),
])  # fmt: skip
def test_hint_by_fault_and_side(cls: type[ArcgapError], fault: str, side: str | None, hint: str) -> None:
    assert hint_for(_error(cls, fault, side)) == hint


def test_an_explicit_hint_wins() -> None:
    exc = NetworkError("lost", hint="run the same command again",
                       detail=RegistryDetail(HOST, "uploading", Fault.UNREACHABLE))
    exc.side = "target"
    assert hint_for(exc) == "run the same command again"


def test_errors_without_detail_keep_their_hint() -> None:
    assert hint_for(ArcgapError("x", hint="do y")) == "do y"
    assert hint_for(ArcgapError("x")) == ""


def test_registry_error_takes_status_and_codes_from_its_detail() -> None:
    exc = RegistryError("m", detail=RegistryDetail(HOST, "op", Fault.ANSWER, 400, ("MANIFEST_INVALID",)))
    assert (exc.status, exc.codes, exc.hint) == (400, ("MANIFEST_INVALID",), "")


def test_every_registry_answer_gets_a_hint_that_fits_it() -> None:
    full = _error(RegistryError, Fault.STORAGE_FULL, "target", 500)
    assert hint_for(full).startswith("the target registry's storage is full (no space left on its disk)")
    assert "no tag was moved" in hint_for(full)
    refused = _error(RegistryError, Fault.DIGEST_REFUSED, "target", 400)
    assert hint_for(refused).startswith("the registry received bytes that do not match the blob's digest")
    served = _error(RegistryError, Fault.BAD_CONTENT, "source")
    assert "bundle" not in hint_for(served) and "report the digest" in hint_for(served)
    lasting = _error(NetworkError, Fault.TRANSIENT, "target", 500)  # distribution on a full disk: 500 UNKNOWN
    assert "storage may be full" in hint_for(lasting) and "run the same command again" in hint_for(lasting)
    assert "half wrote are uploaded again" in hint_for(lasting) and "garbage collection" in hint_for(lasting)
    assert "storage" not in hint_for(_error(NetworkError, Fault.TRANSIENT, "source", 500))
    assert "storage" not in hint_for(_error(NetworkError, Fault.TRANSIENT, "target", 503))
    other = RegistryError("m", detail=RegistryDetail(HOST, "op", Fault.ANSWER, 418, ("TEAPOT",)))
    assert hint_for(other) == f"{HOST} refused the request with 418 (TEAPOT), in its own words above; its log at " \
        "this time says why"


def test_tls_hints_follow_the_cause() -> None:
    expired = _error(TLSError, Fault.TLS_EXPIRED, "target")
    assert "date -u" in hint_for(expired) and "renew" in hint_for(expired) and "--target-insecure" in hint_for(expired)
    exc = TLSError("m", detail=RegistryDetail(HOST, "op", Fault.TLS_OTHER_NAME, names=("*.x.example", "reg.example")))
    exc.side = "source"
    assert hint_for(exc) == ("name the registry in SOURCE_DOCKER_REGISTRY by a name its certificate is issued for "
                             "(e.g. reg.example:5000), or have the certificate reissued for r.example")
