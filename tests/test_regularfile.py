"""Every path arcgap reads from the other side is checked to be a regular file first: a FIFO named as a
receipt, sidecar, key or image list hung import, verify, inspect, preflight, handoff and export --since."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from arcgap.util.regularfile import NotRegularFile, open_regular, read_regular


def test_open_regular_reads_a_file_and_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    plain = tmp_path / "r.yaml"
    plain.write_bytes(b"abc")
    assert read_regular(plain) == b"abc"
    assert read_regular(plain, limit=1) == b"ab"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFile, match=r"not a regular file \(a FIFO\)"):
        open_regular(fifo)
    with pytest.raises(IsADirectoryError):
        open_regular(tmp_path)
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing")


@pytest.mark.parametrize("argv", [
    ["handoff", "--receipt", "{fifo}", "--target-registry", "r.local:5000", "--output", "{out}"],
    ["preflight", "{fifo}", "--target-registry", "127.0.0.1:9", "--target-repository", "arcdata"],
    ["verify", "{fifo_sidecar}"],
    ["inspect", "{fifo_sidecar}"],
    ["import", "{fifo_sidecar}", "--target-registry", "127.0.0.1:9", "--target-repository", "arcdata"],
    ["export", "--images", "{fifo}", "--source-registry", "127.0.0.1:9", "--source-repository", "a", "-o", "{out}"],
    ["export", "--since", "{fifo}", "--release", "v1.0.0_2026-01-01", "--source-registry", "127.0.0.1:9",
     "--source-repository", "a", "-o", "{out}"],
    ["verify", "{plain}", "--verify-key", "{fifo}"],
])
def test_a_fifo_is_refused_in_one_line_not_waited_on(tmp_path: Path, argv: list[str]) -> None:
    fifo = tmp_path / "receipt.yaml"
    os.mkfifo(fifo)
    sidecar = tmp_path / "b.tar.zst.parts.yaml"
    os.mkfifo(sidecar)
    plain = tmp_path / "plain.tar.zst"
    plain.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    args = [a.format(fifo=fifo, fifo_sidecar=sidecar, plain=plain, out=tmp_path / "out") for a in argv]
    env = {k: v for k, v in os.environ.items() if "DOCKER" not in k}
    try:
        done = subprocess.run([sys.executable, "-m", "arcgap", *args], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=60, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"arcgap {' '.join(argv)} waited on a FIFO")
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    assert "not a regular file (a FIFO)" in done.stderr, done.stderr
