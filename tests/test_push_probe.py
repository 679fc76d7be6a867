"""The engine asks the sink about every target repository before any blob moves (ECR creates no repositories on
push; hosted registries limit path depth): in-memory fakes from the engine's tests."""

from __future__ import annotations

import pytest

from arcgap.errors import NotFoundError
from arcgap.oci.digest import Digest
from tests.test_engine import FakeSink, FakeSource, Release, _copy, both


class NoCreateSink(FakeSink):
    """A sink where only ``existing`` repositories can be pushed to."""

    def __init__(self, existing: set[str]) -> None:
        super().__init__()
        self.existing = existing
        self.probed: list[str] = []

    def prepare_push(self, repository: str, blob: Digest | None = None) -> None:
        self.probed.append(repository)
        if repository not in self.existing:
            raise NotFoundError(f"{repository} does not exist")


def _release() -> Release:
    return Release({f"img{n}": [f"layer {n}".encode(), b"shared"] for n in range(5)})


@both
def test_a_refused_repository_stops_the_copy_before_any_blob(sequential: bool) -> None:
    release = _release()
    sink = NoCreateSink({"arc/img0", "arc/img2"})
    with pytest.raises(NotFoundError) as info:
        _copy(FakeSource(release, sequential=sequential), sink, release)
    assert info.value.message == "arc/img1 does not exist; the same for arc/img3, arc/img4"
    assert not sink.calls("upload") and not sink.calls("mount")
    assert not sink.calls("put-digest") and not sink.calls("put-tag")


def test_the_first_repository_is_asked_alone_first() -> None:
    release = _release()
    sink = NoCreateSink(set())
    with pytest.raises(NotFoundError, match="arc/img0 does not exist$"):
        _copy(FakeSource(release, sequential=False), sink, release)
    assert sink.probed == ["arc/img0"]  # a refusal of the first costs one question, not one per repository


def test_every_repository_is_asked_once_and_a_dry_run_asks_none() -> None:
    release = _release()
    sink = NoCreateSink({f"arc/img{n}" for n in range(5)})
    _copy(FakeSource(release, sequential=True), sink, release)
    assert sorted(sink.probed) == [f"arc/img{n}" for n in range(5)]
    dry = NoCreateSink(set())
    _copy(FakeSource(release, sequential=True), dry, release, dry_run=True)
    assert dry.probed == []
