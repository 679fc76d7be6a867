"""arcgap.registry.upload: the byte window an upload sends from, and what a registry's answers teach it."""

from __future__ import annotations

import httpx

import arcgap.registry.upload as upload
from arcgap.registry.upload import UploadTraits, _Window


def test_window_sends_exact_chunks_from_the_readers_own_pieces() -> None:
    window = _Window([b"abc", b"defgh", b"ij"])
    window.fill(5)
    assert window.held == 8 and not window.ended  # whole reader chunks are taken
    head = window.head(4)
    assert head == [b"abc", b"d"]  # the straddling chunk is split, the first passed on as it is
    window.release(4)
    assert (window.held, window.released) == (4, 4)
    window.fill(100)
    assert window.ended and window.head(100) == [b"efgh", b"ij"]
    assert not window.restartable  # bytes were released: only the caller can give them again


def test_window_rest_streams_held_bytes_then_the_source_once() -> None:
    window = _Window(iter([b"12", b"34", b"56"]))
    window.fill(1)
    assert window.restartable
    assert b"".join(window.rest()) == b"123456"
    assert window.read == 6 and window.ended and not window.restartable


def test_window_drain_reads_the_source_to_its_end() -> None:
    seen: list[bytes] = []

    def source():
        for piece in (b"a", b"b", b"c"):
            seen.append(piece)
            yield piece

    window = _Window(source())
    window.fill(1)
    window.drain()
    assert seen == [b"a", b"b", b"c"] and window.read == 3


def test_traits_chunk_sizes() -> None:
    traits = UploadTraits(preferred_chunk=16 << 20)
    assert traits.chunk_bytes() == 16 << 20
    traits.learn(httpx.Headers({"OCI-Chunk-Max-Length": str(8 << 20)}))
    assert traits.chunk_bytes() == 8 << 20
    assert traits.too_large(6 << 20) and traits.chunk_bytes() == 3 << 20  # below the refused request
    assert not traits.too_large(upload.MIN_REQUEST_BYTES)  # a registry refusing 64 KiB is not helped
    traits.learn(httpx.Headers({"OCI-Chunk-Min-Length": str(4 << 20)}))
    assert traits.chunk_bytes() == 4 << 20  # the registry's minimum wins
    traits.learn(httpx.Headers({"OCI-Chunk-Min-Length": str(upload.MAX_CHUNK_BYTES + 1)}))
    assert traits.chunk_bytes() is None  # too large to hold: one streamed PUT
    fresh = UploadTraits()
    fresh.learn(httpx.Headers({"OCI-Chunk-Min-Length": "junk"}))
    fresh.no_chunks()
    assert fresh.min_chunk == 0 and fresh.chunk_bytes() is None
