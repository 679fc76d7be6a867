"""arcgap.transfer.cache: verified blobs kept by digest, streamed in and out, damaged entries replaced,
LRU under a cap."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arcgap.cli.hints import words
from arcgap.errors import IntegrityError, LocalIOError, UsageError
from arcgap.oci.digest import Digest, Verifier, verified_chunks
from arcgap.transfer.cache import (
    DEFAULT_MAX_BYTES,
    STALE_TEMP_S,
    BlobCache,
    cache_root,
    default_cache_dir,
    parse_cache_size,
)


def _blob(seed: str, size: int) -> tuple[Digest, bytes]:
    data = hashlib.shake_256(seed.encode()).digest(size)
    return Digest.of(data), data


class Downloads:
    """A stand-in for RegistryClient.stream_blob: verified chunks, and a count of calls."""

    def __init__(self, data: bytes, chunk: int = 1000) -> None:
        self.data = data
        self.chunk = chunk
        self.calls = 0

    def __call__(self) -> Iterator[bytes]:
        self.calls += 1
        digest = Digest.of(self.data)
        parts = (self.data[i : i + self.chunk] for i in range(0, len(self.data), self.chunk))
        return verified_chunks(parts, Verifier(digest, len(self.data), what="blob"))


def _fetch(cache: BlobCache, data: bytes, download: Downloads | None = None) -> bytes:
    download = download or Downloads(data)
    return b"".join(cache.fetch(Digest.of(data), len(data), download))


def test_download_is_stored_then_served_from_the_cache(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c")
    digest, data = _blob("a", 5000)
    download = Downloads(data)
    assert _fetch(cache, data, download) == data
    assert cache.path_for(digest) == tmp_path / "c" / "blobs" / "sha256" / digest.hex
    assert cache.path_for(digest).read_bytes() == data
    assert _fetch(cache, data, download) == data
    assert download.calls == 1
    assert cache.stats.to_dict() == {"hits": 1, "hit_bytes": 5000, "stored": 1, "stored_bytes": 5000,
                                     "discarded": 0, "evicted": 0, "evicted_bytes": 0}
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


def test_cache_is_private(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c")
    digest, data = _blob("p", 10)
    _fetch(cache, data)
    assert (tmp_path / "c").stat().st_mode & 0o077 == 0
    assert cache.path_for(digest).stat().st_mode & 0o077 == 0


def test_chunks_are_passed_on_as_they_arrive_not_joined(tmp_path: Path) -> None:
    """The tee writes each chunk and hands the same object on: no layer is ever held whole."""
    cache = BlobCache(tmp_path / "c")
    _, data = _blob("stream", 10_000)
    source = list(Downloads(data, chunk=1000)())
    got = list(cache.fetch(Digest.of(data), len(data), lambda: iter(source)))
    assert len(got) == 10 and all(a is b for a, b in zip(got, source))


def test_a_failed_download_leaves_nothing(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c")
    digest, data = _blob("bad", 3000)
    damaged = data[:-1] + b"\0"

    def download() -> Iterator[bytes]:
        return verified_chunks(iter([damaged[:1000], damaged[1000:]]), Verifier(digest, len(data), what="blob"))

    with pytest.raises(IntegrityError):
        b"".join(cache.fetch(digest, len(data), download))
    assert not cache.path_for(digest).exists()
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


def test_a_download_abandoned_half_way_leaves_nothing(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c")
    digest, data = _blob("half", 5000)
    chunks = cache.fetch(digest, len(data), Downloads(data))
    next(chunks)
    assert len(list((tmp_path / "c" / "tmp").iterdir())) == 1  # in progress: a temp file, no entry
    chunks.close()  # what the prefetcher's worker does when the export stops
    assert not cache.path_for(digest).exists()
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend", "empty"])
def test_a_damaged_entry_is_discarded_and_downloaded_again(tmp_path: Path, damage: str) -> None:
    cache = BlobCache(tmp_path / "c")
    digest, data = _blob("d", 4000)
    _fetch(cache, data)
    path = cache.path_for(digest)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[1234] ^= 0x10
    elif damage == "truncate":
        del raw[-1]
    elif damage == "extend":
        raw += b"x"
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    download = Downloads(data)
    assert _fetch(cache, data, download) == data
    assert download.calls == 1
    assert cache.stats.discarded == 1
    assert cache.stats.problems and "discarded a damaged cache entry" in cache.stats.problems[0]
    assert path.read_bytes() == data  # replaced by the fresh download


def test_an_entry_changed_while_streaming_never_passes_whole(tmp_path: Path) -> None:
    """The check before streaming passed; the file changes underneath; the replay's own check stops it."""
    cache = BlobCache(tmp_path / "c")
    digest, data = _blob("race", 3 * 512 * 1024)
    _fetch(cache, data)
    chunks = cache.fetch(digest, len(data), Downloads(data))
    first = next(chunks)  # verified by the pre-check; streaming has begun
    path = cache.path_for(digest)
    with open(path, "r+b") as fh:
        fh.seek(len(data) - 10)
        fh.write(b"0123456789")
    got = [first]
    with pytest.raises(IntegrityError) as info:
        for chunk in chunks:
            got.append(chunk)
    assert len(b"".join(got)) < len(data)
    assert "changed" not in info.value.hint and "arcgap cache clear" in info.value.hint


def test_lru_eviction_down_to_the_cap(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c", max_bytes=2500)
    blobs = [_blob(f"lru{n}", 1000) for n in range(4)]
    for n, (digest, data) in enumerate(blobs):
        _fetch(cache, data)
        os.utime(cache.path_for(digest), (1000 + n, 1000 + n))
    _fetch(cache, blobs[0][1])  # a hit: blob 0 becomes the most recently used
    cache.prune()
    present = [cache.path_for(d).exists() for d, _ in blobs]
    assert present == [True, False, True, True] or present == [True, False, False, True]
    assert cache.info().size_bytes <= 2500
    assert cache.stats.evicted == 4 - sum(present)


def test_blobs_larger_than_the_cap_are_not_written(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c", max_bytes=100)
    digest, data = _blob("big", 1000)
    assert _fetch(cache, data) == data
    assert not cache.path_for(digest).exists()
    assert not (tmp_path / "c" / "tmp").exists()


def test_stale_temp_files_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c")
    tmp = tmp_path / "c" / "tmp"
    tmp.mkdir(parents=True)
    old, new = tmp / "aaaa.1.partial", tmp / "bbbb.2.partial"
    old.write_bytes(b"x" * 10)
    new.write_bytes(b"y" * 10)
    past = time.time() - STALE_TEMP_S - 60
    os.utime(old, (past, past))
    assert cache.info().partial_files == 2
    cache.prune()
    assert not old.exists() and new.exists()


def test_info_and_clear(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c")
    assert cache.info().entries == 0 and cache.info().size_bytes == 0  # no directory yet: empty
    for n in range(3):
        _fetch(cache, _blob(f"i{n}", 100 * (n + 1))[1])
    (tmp_path / "c" / "blobs" / "sha256" / "README").write_text("not an entry")
    info = cache.info()
    assert (info.entries, info.size_bytes) == (3, 600)
    assert info.to_dict("cache info") == {"command": "cache info", "path": str(tmp_path / "c"), "entries": 3,
                                          "size_bytes": 600, "partial_files": 0}
    removed = cache.clear()
    assert (removed.entries, removed.size_bytes) == (3, 600)
    assert cache.info().entries == 0


def test_an_unwritable_cache_is_a_warning_and_the_data_still_flows(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    cache = BlobCache(blocker / "c")
    digest, data = _blob("w", 2000)
    download = Downloads(data)
    assert _fetch(cache, data, download) == data
    assert _fetch(cache, data, download) == data
    assert download.calls == 2
    assert len(cache.stats.problems) == 1 and "continuing without it" in cache.stats.problems[0]


def test_disk_full_while_writing_the_cache_ends_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import arcgap.util.directfile as directfile_module

    class FullDisk:  # the os module, except that every write finds the disk full
        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        @staticmethod
        def write(fd: int, data: object) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(directfile_module, "os", FullDisk())
    cache = BlobCache(tmp_path / "c")
    digest, data = _blob("full", 3000)
    with pytest.raises(LocalIOError) as caught:
        _fetch(cache, data)
    assert caught.value.message.startswith(f"disk full while writing the blob cache in {tmp_path / 'c'} "
                                           "(the file system mounted at /")
    assert "run the same command again" in caught.value.hint
    assert not cache.path_for(digest).exists()
    assert list((tmp_path / "c" / "tmp").iterdir()) == []  # the partial file removed


def test_threads_fetching_the_same_blob(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c")
    digest, data = _blob("t", 200_000)
    results: list[bytes] = []

    def worker() -> None:
        results.append(_fetch(cache, data, Downloads(data, chunk=4096)))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [data] * 6
    assert cache.path_for(digest).read_bytes() == data
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


@pytest.mark.parametrize(("text", "size"), [("20GiB", 20 * 2**30), ("500MB", 500 * 10**6), ("1.5KiB", 1536),
                                            ("0B", 0), (" 2 gib ", 2 * 2**30), ("3TB", 3 * 10**12)])
def test_parse_cache_size(text: str, size: int) -> None:
    assert parse_cache_size(text) == size


@pytest.mark.parametrize("text", ["20", "", "GiB", "-1GiB", "20 parsecs", "fat32", "1e9B"])
def test_parse_cache_size_refuses(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_cache_size(text)
    assert "--cache-max-size" in words(info.value.message) and "20GiB" in words(info.value.hint)


def test_default_is_20_gib() -> None:
    assert DEFAULT_MAX_BYTES == 20 * 2**30


def test_default_dir_honours_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "arcgap"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # Unset, empty or relative (the XDG spec says to ignore relative paths): ~/.cache
    for environ in ({}, {"XDG_CACHE_HOME": ""}, {"XDG_CACHE_HOME": "relative/dir"}):
        assert default_cache_dir(environ) == tmp_path / "home" / ".cache" / "arcgap"


def test_cache_root_prefers_the_option(tmp_path: Path) -> None:
    assert cache_root(tmp_path / "x", {"XDG_CACHE_HOME": "/elsewhere"}) == tmp_path / "x"
    assert cache_root(None, {"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "arcgap"


def test_no_home_at_all_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        cache_root(None, {}, default=lambda environ: None)  # no HOME and no passwd entry: no default place
    assert words(info.value.hint) == "pass --cache-dir DIR or --no-cache"


def test_no_thread_for_the_cache_copy_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import arcgap.transfer.cache as cache_module

    def no_thread(*args: object, **kwargs: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(cache_module, "BackgroundSink", no_thread)
    cache = BlobCache(tmp_path / "c")
    digest, data = _blob("nothread", 3000)
    before = len(os.listdir("/proc/self/fd"))
    assert _fetch(cache, data) == data
    assert len(os.listdir("/proc/self/fd")) == before  # the temp file's descriptor was closed
    assert not cache.path_for(digest).exists()
    assert list((tmp_path / "c" / "tmp").iterdir()) == []
    assert "can't start new thread" in cache.stats.problems[0]
