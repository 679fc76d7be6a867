"""Blob placement shared by import and mirror: which target repositories need each blob, and how it got there."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, NamedTuple, Protocol

from arcgap.digest import Digest

How = Literal["present", "mounted", "uploaded"]


class BlobClient(Protocol):
    """The registry calls placement makes (:class:`arcgap.registry.client.RegistryClient` has both)."""

    def blob_exists(self, repository: str, digest: Digest, *, push_scope: bool = False) -> bool: ...

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool: ...


class Summary(NamedTuple):
    """How one image's blobs got to its repository, and the action that makes of it (pushed | mounted)."""

    action: str
    uploaded: int
    mounted: int
    present: int


class Placements:
    """Blob → repositories that need it, and how each (repository, blob) got there; safe to share by threads."""

    def __init__(self, client: BlobClient) -> None:
        self.client = client
        self._needs: dict[Digest, list[str]] = {}  # in order of first need
        self._how: dict[tuple[str, Digest], How] = {}  # a pair not here is missing
        self._lock = threading.Lock()
        self.uploaded_blobs = 0
        self.uploaded_bytes = 0
        self.mounted_blobs = 0

    def need(self, repository: str, blobs: Iterable[Digest]) -> None:
        """``repository`` needs every one of ``blobs``."""
        for digest in sorted(blobs):
            repos = self._needs.setdefault(digest, [])
            if repository not in repos:
                repos.append(repository)

    @property
    def digests(self) -> list[Digest]:
        """Every needed blob, in order of first need."""
        return list(self._needs)

    def __contains__(self, digest: object) -> bool:
        return digest in self._needs

    def check(self, *, jobs: int) -> None:
        """Ask the target about every (repository, blob) pair, ``jobs`` at a time; those it has are present."""
        pairs = [(repo, d) for d, repos in self._needs.items() for repo in repos]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            found = list(pool.map(lambda p: self.client.blob_exists(p[0], p[1], push_scope=True), pairs))
        with self._lock:
            self._how = {pair: "present" for pair, there in zip(pairs, found) if there}

    def has(self, repository: str, digest: Digest) -> bool:
        with self._lock:
            return (repository, digest) in self._how

    def missing(self, digest: Digest) -> list[str]:
        """The repositories that need ``digest`` and lack it."""
        with self._lock:
            return [r for r in self._needs.get(digest, []) if (r, digest) not in self._how]

    def holder(self, digest: Digest) -> str | None:
        """The first repository needing ``digest`` that holds it: a source to mount from."""
        with self._lock:
            return next((r for r in self._needs.get(digest, []) if (r, digest) in self._how), None)

    def placed(self, repository: str, digest: Digest, how: Literal["mounted", "uploaded"], size: int = 0) -> None:
        """Record that ``digest`` is now in ``repository``; ``size`` counts towards the uploaded bytes."""
        with self._lock:
            self._how[(repository, digest)] = how
            if how == "mounted":
                self.mounted_blobs += 1
            else:
                self.uploaded_blobs += 1
                self.uploaded_bytes += size

    def mount(self, repository: str, digest: Digest, source: str) -> bool:
        """Mount ``digest`` from ``source`` into ``repository``; False when the registry wants the bytes instead."""
        ok = self.client.mount_blob(repository, digest, source)
        if ok:
            self.placed(repository, digest, "mounted")
        return ok

    def summary(self, repository: str, blobs: Iterable[Digest], *, dry_run: bool) -> Summary:
        """How ``blobs`` got to ``repository``: "pushed" if any was uploaded, else "mounted". A dry run names what
        would happen: "mounted" when every lacking blob is held by another repository, else "pushed"."""
        blobs = list(blobs)
        with self._lock:
            hows = [self._how.get((repository, d), "missing") for d in blobs]
        uploaded, mounted = hows.count("uploaded"), hows.count("mounted")
        if dry_run:
            lacking = [d for d, how in zip(blobs, hows) if how == "missing"]
            action = "mounted" if all(self.holder(d) is not None for d in lacking) else "pushed"
        else:
            action = "pushed" if uploaded else "mounted"
        return Summary(action, uploaded, mounted, hows.count("present"))
