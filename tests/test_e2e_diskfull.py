"""A full disk at the target registry's storage ends the import with one clear error, tags unmoved, and a rerun
completes once there is room (issue 17 item 7). The registry is real distribution with its storage on a small
tmpfs; the bundle side's full disk is tested in test_e2e_errors.py."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.registries import Registry
from devtools.synth import SmallSet
from tests.e2e_helpers import arcgap, oracle_digest, source_args, target_args
from tests.test_e2e_errors import no_tags
from tests.test_e2e_roundtrip import ROLES, clean_env, export_small  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.services


@pytest.fixture
def small_storage(tmp_path: Path) -> Iterator[Path]:
    storage = tmp_path / "registry-1" / "storage"  # where fresh_registry's first registry keeps its blobs
    storage.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(storage)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield storage
    finally:
        subprocess.run(["umount", "-l", str(storage)], check=False)


def test_a_full_target_disk_stops_the_import_and_a_rerun_completes(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, fresh_registry, small_storage: Path, tmp_path: Path,
) -> None:
    bundle = tmp_path / "small.tar.zst"
    export_small(capsys, synth_small, bundle)
    target: Registry = fresh_registry()
    args = ["import", str(bundle), *target_args(target), "--target-repository", "arcdata", "--retry-budget", "5"]
    res = arcgap(capsys, *args)
    assert res.code != 0, res.out
    assert len(res.error_lines) == 2, res.err
    # distribution 2.8 answers a full disk with "500 UNKNOWN: unknown error" and no detail: the error names the
    # blob and the answer (a registry whose detail says "no space left on device" gets the storage hint:
    # test_e2e_faults.py)
    assert res.error_lines[0].startswith("error: ") and "blob sha256:" in res.error_lines[0], res.err
    assert "500" in res.error_lines[0] and res.error_lines[1].startswith("hint: "), res.err
    assert "storage may be full" in res.error_lines[1] and "run the same command again" in res.error_lines[1]
    assert "Traceback" not in res.err
    assert no_tags(target)
    # distribution 2.8 keeps what it half wrote when the disk filled: a blob whose link file is empty, answered
    # 500 to every HEAD and GET. The rerun, once there is room, takes such a blob for missing and uploads it again
    # (an upload repairs it), says so once, and completes.
    broken = [p for p in small_storage.rglob("link") if p.stat().st_size == 0]
    if subprocess.run(["mount", "-o", "remount,size=64m", str(small_storage)], capture_output=True).returncode:
        pytest.skip("cannot grow the tmpfs here")
    res = arcgap(capsys, *args)
    assert res.code == 0, res.err
    warned = [line for line in res.err.splitlines() if "answers 500 to a HEAD of blob" in line]
    assert len(warned) == (1 if broken else 0), res.err
    for info in synth_small.images.values():
        name = info.repository.rpartition("/")[2]
        assert oracle_digest(target, f"arcdata/{name}", info.tag or "v1") == info.digest



def test_a_full_disk_at_the_blob_cache_stops_the_export_and_a_rerun_completes(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, tmp_path: Path,
) -> None:
    """The cache on a 12 KiB tmpfs: one error naming the cache and its file system, no bundle (not even a
    partial one), nothing half-written in the cache; grown, the same command completes and reuses the cache."""
    cache = tmp_path / "cache"
    cache.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(cache)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = tmp_path / "out" / "small.tar.zst"
        names = [synth_small[r].repository.split("/", 1)[1] for r in ROLES]
        args = ["export", *names, *source_args(synth_small.registry), "--source-repository", "synth",
                "--source-tag", "v1", "-o", str(out), "--cache-dir", str(cache)]
        res = arcgap(capsys, *args)
        assert res.code == 9, res.err
        assert len(res.error_lines) == 2, res.err
        assert res.error_lines[0] == (f"error: disk full while writing the blob cache in {cache} (the file system "
                                      f"mounted at {cache}); the export stopped, its partial files were removed")
        assert res.error_lines[1].startswith("hint: free space there, or give the cache another place with "
                                             "--cache-dir"), res.err
        assert "Traceback" not in res.err
        assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no bundle, no partial, no sidecar
        assert list((cache / "tmp").iterdir()) == []
        if subprocess.run(["mount", "-o", "remount,size=64m", str(cache)], capture_output=True).returncode:
            pytest.skip("cannot grow the tmpfs here")
        res = arcgap(capsys, *args, "--json")
        assert res.code == 0, res.err
        assert json.loads(res.out)["cache"]["hits"] >= 1  # what the first run stored is used
        assert arcgap(capsys, "verify", str(out)).code == 0
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)
