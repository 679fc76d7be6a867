"""read_ahead keeps order and raises a blob's error from that blob's chunks, as the plain reader does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from arcgap.errors import IntegrityError
from arcgap.transfer.readahead import read_ahead


def source(n: int, *, fail_at: int | None = None) -> Iterator[tuple[int, Iterator[bytes]]]:
    for i in range(n):
        def chunks(i: int = i) -> Iterator[bytes]:
            for k in range(3):
                yield f"{i}.{k}".encode()
            if i == fail_at:
                raise IntegrityError(f"blob {i}: digest mismatch")
        yield i, chunks()


def test_order_and_content() -> None:
    got = [(i, b"".join(c)) for i, c in read_ahead(source(50), depth=2)]
    assert got == [(i, f"{i}.0{i}.1{i}.2".encode()) for i in range(50)]


def test_error_surfaces_in_the_failing_blob() -> None:
    seen: list[int] = []
    with pytest.raises(IntegrityError, match="blob 3: digest mismatch"):
        for i, chunks in read_ahead(source(10, fail_at=3)):
            data = list(chunks)
            assert len(data) == 3
            seen.append(i)
    assert seen == [0, 1, 2]


def test_unconsumed_chunks_are_skipped_and_early_stop_is_clean() -> None:
    got = []
    for i, _chunks in read_ahead(source(5)):
        got.append(i)  # chunks never read
        if i == 3:
            break
    assert got == [0, 1, 2, 3]
