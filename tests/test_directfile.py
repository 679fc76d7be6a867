"""arcgap.util.directfile: the bytes on disk are the bytes written, with O_DIRECT or without."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

import arcgap.util.directfile as directfile
from arcgap.util.directfile import BLOCK, SequentialWriter

SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17, 64 * 1024, 256 * 1024 - 1, 256 * 1024 + 5000]


def _write(path: Path, data: bytes, *, seed: int, buffer_bytes: int = 64 * 1024, direct: bool = True) -> bool:
    rng = random.Random(seed)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    writer = SequentialWriter(fd, buffer_bytes=buffer_bytes, direct=direct)
    used_direct = writer.direct
    pos = 0
    while pos < len(data):  # pieces of every size, crossing buffer boundaries
        n = rng.choice([1, 7, BLOCK, 10_000, 70_000, 200_000])
        writer.write(data[pos:pos + n])
        pos += n
    writer.close()
    assert writer.written == len(data)
    return used_direct


@pytest.mark.parametrize("size", SIZES)
def test_file_holds_exactly_the_bytes_written(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    _write(tmp_path / "f", data, seed=size)
    assert (tmp_path / "f").read_bytes() == data


def test_direct_io_is_used_where_the_filesystem_takes_it(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    except OSError as exc:
        pytest.skip(f"{tmp_path} refuses O_DIRECT ({exc.strerror}), so the fallback is what runs here")
    os.close(fd)
    data = random.Random(1).randbytes(5 * 64 * 1024 + 123)
    assert _write(tmp_path / "f", data, seed=1) is True
    assert (tmp_path / "f").read_bytes() == data


def test_falls_back_to_ordinary_writes_where_direct_io_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    real_fcntl = directfile.fcntl.fcntl

    def refusing(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == directfile.fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(directfile.fcntl, "fcntl", refusing)
    data = random.Random(2).randbytes(300_000)
    assert _write(tmp_path / "f", data, seed=2) is False
    assert (tmp_path / "f").read_bytes() == data


def test_einval_on_a_direct_write_switches_to_ordinary_writes(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    real = os

    class PickyOs:  # a filesystem that takes the O_DIRECT flag but not our alignment
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        @staticmethod
        def write(fd: int, data: memoryview) -> int:
            if real.O_DIRECT & directfile.fcntl.fcntl(fd, directfile.fcntl.F_GETFL):
                raise OSError(errno.EINVAL, "Invalid argument")
            return real.write(fd, data)

    monkeypatch.setattr(directfile, "os", PickyOs())
    data = random.Random(3).randbytes(200_001)
    path = tmp_path / "f"
    fd = real.open(path, real.O_WRONLY | real.O_CREAT, 0o600)
    writer = SequentialWriter(fd, buffer_bytes=64 * 1024)
    writer.write(data)
    writer.close()
    assert writer.direct is False
    assert path.read_bytes() == data


def test_abort_closes_the_descriptor_without_writing(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    writer = SequentialWriter(fd, buffer_bytes=64 * 1024)
    writer.write(b"x" * 1000)
    writer.abort()
    with pytest.raises(OSError):
        os.fstat(fd)
    assert (tmp_path / "f").read_bytes() == b""


def test_buffer_must_be_whole_blocks() -> None:
    with pytest.raises(ValueError):
        SequentialWriter(-1, buffer_bytes=BLOCK + 1)


def test_start_writeback_is_a_hint_that_never_fails(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 100_000)
    with open(path, "rb+") as fh:
        assert directfile.start_writeback(fh.fileno(), 0, 0) is False  # nothing to write
        started = directfile.start_writeback(fh.fileno(), 0, 100_000)
        assert started is (directfile._sync_file_range is not None)
        assert directfile.start_writeback(-1, 0, 10) is False  # a bad descriptor: ignored, fsync would tell
    assert path.read_bytes() == b"a" * 100_000


def test_on_tmpfs_the_writer_falls_back_by_itself() -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm here")
    import tempfile

    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        path = Path(tmp) / "f"
        data = random.Random(4).randbytes(300_001)
        used_direct = _write(path, data, seed=4)
        assert path.read_bytes() == data
        try:
            os.close(os.open(Path(tmp) / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
        except OSError:
            assert used_direct is False  # tmpfs refuses O_DIRECT: the ordinary writes took over
