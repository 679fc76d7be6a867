"""arcgap.transfer.placement: which repositories need each blob, which hold it, and how it got there."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from arcgap.oci.digest import Digest
from arcgap.transfer.placement import Placements, Summary

A, B, C = (Digest.of(x) for x in (b"a", b"b", b"c"))


class FakeRegistry:
    """Holds (repository, digest) pairs; mounts succeed unless refused, and every call is recorded."""

    def __init__(self, held: set[tuple[str, Digest]], *, refuse_mounts: bool = False) -> None:
        self.held = set(held)
        self.refuse_mounts = refuse_mounts
        self.heads: list[tuple[str, Digest, bool]] = []
        self.mounts: list[tuple[str, Digest, str]] = []
        self._lock = threading.Lock()

    def blob_exists(self, repository: str, digest: Digest, *, push_scope: bool = False) -> bool:
        with self._lock:
            self.heads.append((repository, digest, push_scope))
        return (repository, digest) in self.held

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        self.mounts.append((repository, digest, from_repository))
        if self.refuse_mounts or (from_repository, digest) not in self.held:
            return False
        self.held.add((repository, digest))
        return True


def _checked(registry: FakeRegistry) -> Placements:
    placements = Placements(registry)
    placements.need("one", [B, A])
    placements.need("two", [C, B])
    placements.need("one", [A])  # needing twice changes nothing
    placements.check(jobs=3)
    return placements


def test_check_asks_about_every_pair_with_push_scope() -> None:
    registry = FakeRegistry({("two", B), ("one", C)})
    placements = _checked(registry)
    assert placements.digests == [*sorted([A, B]), C]  # in order of first need, each repository's sorted
    assert A in placements and Digest.of(b"other") not in placements
    assert sorted(registry.heads) == sorted([("one", A, True), ("one", B, True), ("two", B, True),
                                             ("two", C, True)])
    assert placements.has("two", B) and not placements.has("one", B)
    assert not placements.has("one", C)  # "one" holds C but does not need it, so it was never asked
    assert placements.missing(A) == ["one"] and placements.holder(A) is None
    assert placements.missing(B) == ["one"] and placements.holder(B) == "two"
    assert placements.missing(C) == ["two"] and placements.holder(C) is None
    assert placements.missing(Digest.of(b"other")) == []


def test_mount_records_only_what_the_registry_accepted() -> None:
    registry = FakeRegistry({("two", B)})
    placements = _checked(registry)
    assert placements.mount("one", B, "two")
    assert registry.mounts == [("one", B, "two")]
    assert placements.has("one", B) and placements.missing(B) == []
    refusing = FakeRegistry({("two", B)}, refuse_mounts=True)
    placements = _checked(refusing)
    assert not placements.mount("one", B, "two")
    assert placements.missing(B) == ["one"] and placements.mounted_blobs == 0


def test_summary_counts_how_each_blob_got_there() -> None:
    registry = FakeRegistry({("two", B)})
    placements = _checked(registry)
    placements.placed("one", A, "uploaded", 10)
    placements.mount("one", B, "two")
    placements.placed("two", C, "uploaded", 5)
    assert (placements.uploaded_blobs, placements.uploaded_bytes, placements.mounted_blobs) == (2, 15, 1)
    assert placements.summary("one", [A, B], dry_run=False) == Summary("pushed", 1, 1, 0)
    assert placements.summary("two", [B], dry_run=False) == Summary("mounted", 0, 0, 1)


def test_a_dry_run_mounts_only_when_every_lacking_blob_is_held_elsewhere() -> None:
    registry = FakeRegistry({("two", B), ("two", C)})
    placements = _checked(registry)
    assert placements.summary("two", [B, C], dry_run=True) == Summary("mounted", 0, 0, 2)  # nothing lacking
    assert placements.summary("one", [B], dry_run=True) == Summary("mounted", 0, 0, 0)
    assert placements.summary("one", [A, B], dry_run=True) == Summary("pushed", 0, 0, 0)


def test_placements_from_many_threads_are_all_counted() -> None:
    placements = Placements(FakeRegistry(set()))
    digests = [Digest.of(str(i).encode()) for i in range(200)]
    placements.need("one", digests)
    placements.check(jobs=4)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda d: placements.placed("one", d, "uploaded", 3), digests))
    assert (placements.uploaded_blobs, placements.uploaded_bytes) == (200, 600)
    assert all(not placements.missing(d) for d in digests)


class GatedRegistry(FakeRegistry):
    """Answers about a blob only once its gate is opened, to see who waits for what."""

    def __init__(self, held: set[tuple[str, Digest]], gated: set[Digest], *, fail: Digest | None = None) -> None:
        super().__init__(held)
        self.gate = threading.Event()
        self.gated = gated
        self.fail = fail

    def blob_exists(self, repository: str, digest: Digest, *, push_scope: bool = False) -> bool:
        if digest in self.gated:
            assert self.gate.wait(5)
        if digest == self.fail:
            raise PermissionError(f"no access to {repository}")
        return super().blob_exists(repository, digest, push_scope=push_scope)


def test_start_check_answers_one_blob_while_others_are_still_asked() -> None:
    registry = GatedRegistry({("two", B)}, gated={C})
    placements = Placements(registry)
    placements.need("one", [A, B, C])
    placements.need("two", [B, C])
    placements.start_check(jobs=2, order=[B, A])
    try:
        assert placements.missing(B) == ["one"] and placements.holder(B) == "two"  # C is still unanswered
        assert placements.missing(A) == ["one"]
        assert (registry.heads[0][1], registry.heads[1][1]) == (B, B)  # the given order first
        registry.gate.set()
        assert placements.missing(C) == ["one", "two"]
        assert placements.summary("two", [B, C], dry_run=True).present == 1
    finally:
        registry.gate.set()
        placements.close()


def test_a_failed_question_is_raised_by_the_read_that_needs_it() -> None:
    registry = GatedRegistry(set(), gated=set(), fail=C)
    placements = Placements(registry)
    placements.need("one", [A, C])
    placements.start_check(jobs=1, order=[A, C])
    try:
        assert placements.missing(A) == ["one"]
        try:
            placements.missing(C)
        except PermissionError as exc:
            assert "no access to one" in str(exc)
        else:
            raise AssertionError("the failed HEAD was not raised")
    finally:
        placements.close()


def test_close_drops_questions_not_started() -> None:
    registry = GatedRegistry(set(), gated={A})
    placements = Placements(registry)
    placements.need("one", [A, B, C])
    placements.start_check(jobs=1, order=[A, B, C])
    registry.gate.set()
    placements.close()
    assert len(registry.heads) <= 3
