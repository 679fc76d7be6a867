"""arcgap.registry.bodyread: large blob bodies read straight from the socket, byte for byte, over HTTP and TLS."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from arcgap.oci.digest import Digest
from arcgap.registry import bodyread
from arcgap.registry.client import CHUNK_BYTES, RegistryClient
from arcgap.registry.credentials import Credentials
from arcgap.registry.transport import TLSOptions
from arcgap.util.secret import Secret
from devtools.images import Pusher
from devtools.registries import Registry


def _noise(seed: bytes, size: int) -> bytes:
    return hashlib.shake_256(seed).digest(size)


BIG = _noise(b"big blob", 3 * CHUNK_BYTES + 12345)  # several chunks and a short last one
SMALL = _noise(b"small blob", 200_000)  # under DIRECT_MIN_BYTES: the ordinary path, connection kept


@pytest.fixture
def direct_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = bodyread._direct

    def spy(sock: object, first: bytes, remaining: int, chunk_bytes: int, watch: object = None) -> Iterator[bytes]:
        calls.append(remaining)
        return real(sock, first, remaining, chunk_bytes, watch)  # type: ignore[arg-type]

    monkeypatch.setattr(bodyread, "_direct", spy)
    return calls


def _client(reg: Registry) -> RegistryClient:
    if reg.scheme == "http":
        return RegistryClient(reg.host, tls=TLSOptions(plain_http=True))
    creds = Credentials(reg.username or "", Secret(reg.password or ""), source="options")
    return RegistryClient(reg.host, credentials=creds, tls=TLSOptions(ca_file=reg.ca_file))


@pytest.mark.parametrize("which", ["plain", "tls"])
def test_blobs_read_back_byte_for_byte(
    which: str, plain_registry: Registry, tls_registry: Registry, direct_calls: list[int]
) -> None:
    reg = plain_registry if which == "plain" else tls_registry
    with Pusher(reg) as pusher:
        for data in (BIG, SMALL):
            pusher.push_blob("bodyread/blobs", data)
    client = _client(reg)
    for data in (BIG, SMALL, BIG):  # the connection the direct read closed is replaced
        chunks = list(client.stream_blob("bodyread/blobs", Digest.of(data), len(data)))
        assert b"".join(chunks) == data
        assert all(len(c) == CHUNK_BYTES for c in chunks[:-1]) and 0 < len(chunks[-1]) <= CHUNK_BYTES
    assert len(direct_calls) == 2  # the two large reads, never the small one
    assert all(0 < r <= len(BIG) for r in direct_calls)


def test_joined_makes_chunks_of_at_least_the_size() -> None:
    pieces = [b"a" * 3, b"b" * 5, b"c" * 10, b"d"]
    assert list(bodyread.joined(pieces, 8)) == [b"aaabbbbb", b"c" * 10, b"d"]
    assert list(bodyread.joined([], 8)) == []
