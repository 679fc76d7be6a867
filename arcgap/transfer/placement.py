"""Blob placement, the one place that owns it: which target repositories need each blob, whether each holds it
already, mounts it from another repository or gets it uploaded, the fallback when a mount is refused, and the
record of how every (repository, blob) got there."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal, NamedTuple, Protocol

from arcgap.errors import ArcgapError
from arcgap.oci.digest import Digest

How = Literal["present", "mounted", "uploaded"]


class BlobClient(Protocol):
    """The sink calls placement makes (a part of :class:`arcgap.transfer.sink.Sink`)."""

    registry: str

    def blob_exists(self, repository: str, digest: Digest, *, push_scope: bool = False) -> bool: ...

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool: ...

    def upload_blob(self, repository: str, digest: Digest, chunks: Iterable[bytes], *, what: str = "",
                    size: int | None = None, reopen: Callable[[], Iterable[bytes]] | None = None) -> int: ...

    def prepare_push(self, repository: str, blob: Digest | None = None) -> None: ...


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
        self._asked: dict[Digest, Future[None]] = {}  # start_check: the answers for each blob, as they come
        self._probes: dict[str, Future[None]] = {}  # start_check(probe=True): each repository checked for pushes
        self._probe_error: BaseException | None = None
        self._probe_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
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

    @property
    def repositories(self) -> list[str]:
        """Every repository that needs a blob, in order of first need."""
        return list(dict.fromkeys(r for repos in self._needs.values() for r in repos))

    def check(self, *, jobs: int, probe: bool = False) -> None:
        """Ask the target about every (repository, blob) pair, ``jobs`` at a time; those it has are present."""
        self.start_check(jobs=jobs, probe=probe)
        try:
            for digest in self.digests:
                self._await_probe(digest)
        finally:
            self.close()

    def start_check(self, *, jobs: int, order: Iterable[Digest] = (), probe: bool = False) -> None:
        """Start asking the target about every pair in the background, blobs in ``order`` first (then the rest).

        Every read of a blob's state (``has``, ``missing``, ``holder``, ``summary``) waits for that blob's answers
        only, so an import can place its first blob while the target is still asked about the others (84 HEADs
        took 0.12 s on the bench release, all before the first byte went out). A failed question is raised
        by the first read that needs it. Call :meth:`close` at the end.

        With ``probe``, each repository is first checked for pushes (``prepare_push``), and every read waits for
        all of them: a target that will not take a repository (ECR creates none on push; some registries limit
        path depth) stops the run before any blob is sent.
        """
        first = [d for d in dict.fromkeys(order) if d in self._needs]
        asked = set(first)  # built once: a set per element made this quadratic in the number of blobs
        queue = first + [d for d in self._needs if d not in asked]
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="arcgap-check")
        if probe:
            # The first repository alone, then the rest in parallel: a refused credential costs one request.
            repos = self.repositories
            lead = self._pool.submit(self._probe_after, None, repos[0]) if repos else None
            self._probes = {r: self._pool.submit(self._probe_after, lead, r) for r in repos[1:]}
            if lead is not None:
                self._probes = {repos[0]: lead, **self._probes}
        self._asked = {d: self._pool.submit(self._ask, d) for d in queue}

    def _ask(self, digest: Digest) -> None:
        repos = list(self._needs[digest])
        found = [r for r in repos if self.client.blob_exists(r, digest, push_scope=True)]
        with self._lock:
            for repo in found:
                self._how.setdefault((repo, digest), "present")

    def _probe_after(self, lead: Future[None] | None, repository: str) -> None:
        if lead is not None:
            lead.result()
        self.client.prepare_push(repository, next(d for d, repos in self._needs.items() if repository in repos))

    def _check_probes(self) -> None:
        """Raise the first refusal of a repository, naming the others refused the same way."""
        with self._probe_lock:
            self._gather_probes()
        if self._probe_error is not None:
            raise self._probe_error

    def _gather_probes(self) -> None:
        if self._probe_error is None and self._probes:
            refused: list[tuple[str, BaseException]] = []
            for repo, probed in self._probes.items():
                exc = probed.exception()
                if exc is not None and not (refused and exc is refused[0][1]):
                    refused.append((repo, exc))
            if refused:
                error = refused[0][1]
                more = [r for r, e in refused[1:] if type(e) is type(error)]
                if more and isinstance(error, ArcgapError):
                    error.message += f"; the same for {', '.join(more)}"
                    error.args = (error.message,)
                self._probe_error = error
            self._probes = {}

    def _await_probe(self, digest: Digest) -> None:
        self._check_probes()
        asked = self._asked.get(digest)
        if asked is not None:
            asked.result()

    def close(self) -> None:
        """Stop asking (questions not started are dropped) and wait for those in flight."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def has(self, repository: str, digest: Digest) -> bool:
        self._await_probe(digest)
        with self._lock:
            return (repository, digest) in self._how

    def missing(self, digest: Digest) -> list[str]:
        """The repositories that need ``digest`` and lack it."""
        self._await_probe(digest)
        with self._lock:
            return [r for r in self._needs.get(digest, []) if (r, digest) not in self._how]

    def holder(self, digest: Digest) -> str | None:
        """The first repository needing ``digest`` that holds it: a source to mount from."""
        self._await_probe(digest)
        with self._lock:
            return next((r for r in self._needs.get(digest, []) if (r, digest) in self._how), None)

    def answered(self, digests: Iterable[Digest]) -> list[Digest]:
        """Those of ``digests`` whose answers are already in (without waiting for any): the ones asked so far."""
        done = []
        for digest in digests:
            asked = self._asked.get(digest)
            if asked is None or (asked.done() and not asked.cancelled() and asked.exception() is None):
                done.append(digest)
        return done

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

    def mount_from_holder(self, digest: Digest) -> list[str]:
        """Mount ``digest`` into every repository lacking it from one that holds it; those still lacking it."""
        missing = self.missing(digest)
        holder = self.holder(digest)
        if holder is not None and missing:
            missing = [r for r in missing if not self.mount(r, digest, holder)]
        return missing

    def upload(self, digest: Digest, size: int, missing: list[str], chunks: Iterable[bytes], *,
               copy_from: Callable[[str], Iterable[bytes]],
               reopen: Callable[[], Iterable[bytes]] | None = None) -> None:
        """Upload ``chunks`` into the first of ``missing``, then mount the blob from there into the others.

        Where a mount is refused, the blob is uploaded once more from ``copy_from(first)``: the source again
        when it can be re-read, else the verified copy just placed in ``first``. ``reopen`` gives the blob's
        bytes from the start once more, should the sink lose the first upload midway (None: the source cannot).
        """
        first = missing[0]
        self.client.upload_blob(first, digest, chunks, what=f"blob {digest} to {self.client.registry}/{first}",
                                size=size, reopen=reopen)
        self.placed(first, digest, "uploaded", size)
        for repo in missing[1:]:
            if not self.mount(repo, digest, first):
                self.client.upload_blob(repo, digest, copy_from(first), size=size, reopen=lambda: copy_from(first),
                                        what=f"blob {digest} to {self.client.registry}/{repo}")
                self.placed(repo, digest, "uploaded", size)

    def summary(self, repository: str, blobs: Iterable[Digest], *, dry_run: bool) -> Summary:
        """How ``blobs`` got to ``repository``: "pushed" if any was uploaded, else "mounted". A dry run names what
        would happen: "mounted" when every lacking blob is held by another repository, else "pushed"."""
        blobs = list(blobs)
        for digest in blobs:
            self._await_probe(digest)
        with self._lock:
            hows = [self._how.get((repository, d), "missing") for d in blobs]
        uploaded, mounted = hows.count("uploaded"), hows.count("mounted")
        if dry_run:
            lacking = [d for d, how in zip(blobs, hows) if how == "missing"]
            action = "mounted" if all(self.holder(d) is not None for d in lacking) else "pushed"
        else:
            action = "pushed" if uploaded else "mounted"
        return Summary(action, uploaded, mounted, hows.count("present"))
