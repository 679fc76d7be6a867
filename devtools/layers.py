"""Deterministic synthetic layers: gzip-compressed tars whose files mix random and repetitive bytes.

The same ``(seed, size_bytes, compressible)`` always gives the same bytes (``random.Random`` seeded with a
string, tar headers with mtime 0 and uid/gid 0, gzip header with mtime 0). ``size_bytes`` is the amount of
file content in the tar; the share ``compressible`` of it is repetitive text, the rest random bytes, so the
compressed blob is roughly ``(1 - compressible) * size_bytes`` long. Gzip level 1 keeps it fast.

- :func:`make_layer` -- the compressed blob in memory.
- :func:`build_layer` / :func:`write_layer_file` -- a :class:`Layer` with digest, size and diff_id (the
  sha256 of the uncompressed tar, which image configs need), in memory or streamed to a file.
"""

from __future__ import annotations

import hashlib
import random
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

BLOCK = 1 << 20  # content is generated in 1 MiB blocks
MAX_FILE = 16 << 20  # files in a layer are at most 16 MiB
Seed = Union[int, str]


@dataclass(frozen=True)
class Layer:
    """A compressed layer blob: in memory (``data``) or on disk (``path``)."""

    digest: str
    size: int
    diff_id: str
    data: bytes | None = field(default=None, repr=False)
    path: Path | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def _file_plan(seed: Seed, size_bytes: int) -> list[tuple[str, int]]:
    """(name, size) of the regular files: one small text file, then data files of at most MAX_FILE."""
    tag = hashlib.sha256(f"arcgap-layer-name:{seed}".encode()).hexdigest()[:12]
    plan = [(f"etc/arcgap/{tag}.txt", 0)]
    remaining, index = max(size_bytes, 1), 0
    while remaining > 0:
        chunk = min(remaining, MAX_FILE)
        plan.append((f"opt/arc/{tag}/data-{index:04d}.bin", chunk))
        remaining -= chunk
        index += 1
    return plan


def _dirs(plan: list[tuple[str, int]]) -> list[str]:
    seen: dict[str, None] = {}
    for name, _ in plan:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            seen.setdefault("/".join(parts[:i]), None)
    return list(seen)


def _tarinfo(name: str, size: int, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _content(rng: random.Random, size: int, compressible: float, pattern: bytes) -> Iterator[bytes]:
    offset = 0
    while offset < size:
        block = min(BLOCK, size - offset)
        n_random = int(block * (1.0 - compressible))
        n_text = block - n_random
        start = offset % len(pattern)
        text = (pattern[start:] + pattern * (n_text // len(pattern) + 1))[:n_text]
        yield rng.randbytes(n_random) + text
        offset += block


def _tar_stream(seed: Seed, size_bytes: int, compressible: float) -> Iterator[bytes]:
    """The uncompressed tar, in pieces."""
    if not 0.0 <= compressible <= 1.0:
        raise ValueError("compressible must be within [0, 1]")
    rng = random.Random(f"arcgap-layer:{seed}")
    pattern = (
        f"arcgap synthetic layer {seed}: the quick brown fox jumps over the lazy dog 0123456789\n".encode()
    )
    plan = _file_plan(seed, size_bytes)
    for directory in _dirs(plan):
        yield _tarinfo(directory + "/", 0, directory=True)
    for name, size in plan:
        if size == 0:
            text = f"seed={seed}\nsize_bytes={size_bytes}\ncompressible={compressible}\n".encode()
            yield _tarinfo(name, len(text))
            yield text + b"\0" * (-len(text) % 512)
            continue
        yield _tarinfo(name, size)
        yield from _content(rng, size, compressible, pattern)
        yield b"\0" * (-size % 512)
    yield b"\0" * 1024


def _compress(seed: Seed, size_bytes: int, compressible: float, write: Callable[[bytes], object]) -> Layer:
    raw_hash, blob_hash = hashlib.sha256(), hashlib.sha256()
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: gzip wrapper, mtime 0
    size = 0

    def emit(data: bytes) -> None:
        nonlocal size
        if data:
            blob_hash.update(data)
            size += len(data)
            write(data)

    for piece in _tar_stream(seed, size_bytes, compressible):
        raw_hash.update(piece)
        emit(gz.compress(piece))
    emit(gz.flush())
    return Layer(
        digest=f"sha256:{blob_hash.hexdigest()}", size=size, diff_id=f"sha256:{raw_hash.hexdigest()}"
    )


def build_layer(seed: Seed, size_bytes: int, *, compressible: float = 0.5, path: Path | None = None) -> Layer:
    """A :class:`Layer`; written to ``path`` (streamed, constant memory) when given, else kept in memory."""
    if path is not None:
        path = Path(path)
        with open(path, "wb") as fh:
            layer = _compress(seed, size_bytes, compressible, fh.write)
        return Layer(layer.digest, layer.size, layer.diff_id, path=path)
    chunks: list[bytes] = []
    layer = _compress(seed, size_bytes, compressible, chunks.append)
    return Layer(layer.digest, layer.size, layer.diff_id, data=b"".join(chunks))


def make_layer(seed: Seed, size_bytes: int, *, compressible: float = 0.5) -> bytes:
    """The compressed layer blob (gzip'd tar) for ``seed``, in memory."""
    data = build_layer(seed, size_bytes, compressible=compressible).data
    assert data is not None
    return data


def write_layer_file(path: Path, seed: Seed, size_bytes: int, *, compressible: float = 0.5) -> Layer:
    """Stream the layer to ``path``; returns a :class:`Layer` (digest, size, diff_id, path)."""
    return build_layer(seed, size_bytes, compressible=compressible, path=path)


def diff_id_of(blob: bytes | BinaryIO) -> str:
    """sha256 of the uncompressed content of a gzip blob (bytes or a binary file object)."""
    inflate = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header, auto-detected
    digest = hashlib.sha256()
    if isinstance(blob, (bytes, bytearray, memoryview)):
        digest.update(inflate.decompress(bytes(blob)))
    else:
        for chunk in iter(lambda: blob.read(BLOCK), b""):
            digest.update(inflate.decompress(chunk))
    digest.update(inflate.flush())
    return f"sha256:{digest.hexdigest()}"


def layer_from_bytes(blob: bytes) -> Layer:
    """Wrap an existing gzip'd layer blob (computes digest and diff_id)."""
    return Layer(f"sha256:{hashlib.sha256(blob).hexdigest()}", len(blob), diff_id_of(blob), data=blob)
