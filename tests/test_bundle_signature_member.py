"""arcgap.bundle.reader and arcgap.yaml.sig: accepted only right after arcgap.yaml, only in a version 2 bundle."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from arcgap.bundle.format import TOC_NAME
from arcgap.bundle.reader import BundleReader
from arcgap.bundle.signature import SIGNATURE_NAME, BundleSignature
from arcgap.bundle.signing import check_signature, generate_key, load_signer, load_verify_key
from arcgap.errors import BundleFormatError, IntegrityError
from arcgap.oci.digest import Digest
from tests.test_bundle_rw import CONTENT, ORIGIN, _read, _tar, _zst

V2 = replace(CONTENT.manifest, format_version=2)
V2_YAML = V2.to_yaml()


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    keys = generate_key(tmp_path_factory.mktemp("keys") / "k", passphrase=None)
    return load_signer(keys.private, passphrase=None).sign(V2_YAML).to_bytes(), keys.public


def _members(sig: bytes | None, *, at: int = 1, manifest: bytes = V2_YAML) -> list[tuple[str, bytes]]:
    members = [(TOC_NAME, manifest), *CONTENT.members()[1:]]
    if sig is not None:
        members.insert(at, (SIGNATURE_NAME, sig))
    return members


def test_signature_right_after_arcgap_yaml_is_read_and_checks(signed: tuple[bytes, Path]) -> None:
    sig, public = signed
    reader, got = _read(_zst(_tar(_members(sig))))
    assert got == CONTENT.data
    signature = reader.signature()
    assert isinstance(signature, BundleSignature)
    assert reader.identity == Digest.of(V2_YAML)
    check_signature(reader.toc_bytes, signature, load_verify_key(public), origin=ORIGIN)


def test_signature_is_available_before_the_blobs_and_reading_it_twice_is_harmless(signed: tuple[bytes, Path]) -> None:
    reader = BundleReader(io.BytesIO(_zst(_tar(_members(signed[0])))), origin=ORIGIN)
    first = reader.signature()
    assert reader.signature() is first
    assert {e.digest: b"".join(c) for e, c in reader.blobs()} == CONTENT.data


def test_unsigned_bundle_has_no_signature() -> None:
    reader, got = _read(_zst(_tar(_members(None))))
    assert reader.signature() is None and got == CONTENT.data


@pytest.mark.parametrize(("at", "name"), [(2, "arcgap.yaml.sig"), (3, "arcgap.yaml.sig")])
def test_signature_anywhere_else_is_refused(signed: tuple[bytes, Path], at: int, name: str) -> None:
    with pytest.raises(BundleFormatError) as info:
        _read(_zst(_tar(_members(signed[0], at=at))))
    assert info.value.message == f"{ORIGIN}: unexpected member '{name}'"


def test_signature_twice_is_refused(signed: tuple[bytes, Path]) -> None:
    members = _members(signed[0])
    members.insert(2, (SIGNATURE_NAME, signed[0]))
    with pytest.raises(BundleFormatError) as info:
        _read(_zst(_tar(members)))
    assert info.value.message == f"{ORIGIN}: unexpected member 'arcgap.yaml.sig'"


def test_signature_in_a_version_1_bundle_is_refused(signed: tuple[bytes, Path]) -> None:
    """A version 1 bundle never carries one (arcgap 0.1 would stop at it): the member is not allowed there."""
    with pytest.raises(BundleFormatError) as info:
        _read(_zst(_tar(_members(signed[0], manifest=CONTENT.manifest.to_yaml()))))
    assert info.value.message == f"{ORIGIN}: unexpected member 'arcgap.yaml.sig'"


def test_damaged_or_huge_signature_member() -> None:
    with pytest.raises(BundleFormatError) as info:
        _read(_zst(_tar(_members(b"{not json"))))
    assert info.value.message == f"{ORIGIN}: arcgap.yaml.sig: not JSON"
    with pytest.raises(BundleFormatError) as info:
        _read(_zst(_tar(_members(b" " * (64 * 1024 + 1)))))
    assert info.value.message == f"{ORIGIN}: member arcgap.yaml.sig is implausibly large"


def test_truncated_right_after_the_signature(signed: tuple[bytes, Path]) -> None:
    members = _members(signed[0])[:2]
    raw = _zst(_tar(members, trailer=b""))
    reader = BundleReader(io.BytesIO(raw), origin=ORIGIN)
    assert reader.signature() is not None  # the table of contents and its signature are whole
    with pytest.raises(IntegrityError, match="truncated"):
        list(reader.blobs())
