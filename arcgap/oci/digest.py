"""Digests: parsing, computing, and the one verifying reader that checks size and digest at EOF."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from arcgap.errors import IntegrityError, UsageError

_ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^(sha256|sha512):([a-f0-9]+)$")


@dataclass(frozen=True, order=True)
class Digest:
    """An OCI content digest such as ``sha256:3f2a…``; only sha256/sha512 with lower-case hex."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        m = _DIGEST_RE.fullmatch(text)
        if not m or len(m.group(2)) != _ALGORITHMS[m.group(1)]:
            raise UsageError(
                f"invalid digest {text[:80]!r}", hint="a digest looks like sha256:<64 lower-case hex digits>"
            )
        return cls(m.group(1), m.group(2))

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        return f"{self.algorithm}:{self.hex[:12]}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


class Verifier:
    """Hashes bytes as they pass and checks size and digest at the end.

    Raises ``IntegrityError`` as soon as more bytes than expected arrive, and at ``finish()`` when the
    size or digest differs. ``what`` names the object in the message ("blob sha256:… of image x").
    """

    def __init__(self, digest: Digest, size_bytes: int, *, what: str) -> None:
        self.digest = digest
        self.size_bytes = size_bytes
        self.what = what
        self.seen_bytes = 0
        self._hash = digest.hasher()

    def update(self, chunk: bytes | memoryview) -> None:
        self.seen_bytes += len(chunk)
        if self.seen_bytes > self.size_bytes:
            raise IntegrityError(f"{self.what}: more than the expected {self.size_bytes} bytes")
        self._hash.update(chunk)

    def finish(self) -> None:
        if self.seen_bytes != self.size_bytes:
            raise IntegrityError(
                f"{self.what}: truncated: {self.seen_bytes} of {self.size_bytes} bytes"
            )
        actual = self._hash.hexdigest()
        if actual != self.digest.hex:
            raise IntegrityError(
                f"{self.what}: digest mismatch: content hashes to {self.digest.algorithm}:{actual[:12]}…"
            )


def verified_chunks(chunks: Iterable[bytes], verifier: Verifier) -> Iterator[bytes]:
    """Pass ``chunks`` through ``verifier``, the last one held back until size and digest have been checked.

    The one verified-stream primitive: whoever reads a blob (registry download, bundle member, cache entry)
    hands its raw chunks through here, so a consumer that has received the final chunk has a verified blob,
    and a consumer that never sees the end (a push committing with the last chunk) never commits bad bytes.
    """
    pending: bytes | None = None
    for chunk in chunks:
        verifier.update(chunk)
        if pending is not None:
            yield pending
        pending = chunk
    verifier.finish()
    if pending is not None:
        yield pending
