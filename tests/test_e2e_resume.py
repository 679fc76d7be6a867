"""Resume: an import killed or cut off midway completes when run again, sending only what the target lacks;
an export killed midway does not download again what it already fetched (the blob cache)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devtools.faultproxy import FaultProxy
from devtools.registries import Registry, start_registry
from tests.e2e_helpers import arcgap, flip_byte, oracle_digest, source_args
from tests.test_e2e_roundtrip import clean_env  # noqa: F401 (autouse fixture)

if TYPE_CHECKING:
    from tests.conftest import MediumSet

ROOT = Path(__file__).resolve().parent.parent
BLOB_COMMIT = r"^PUT /v2/.*/blobs/uploads/"
BLOB_GET = r"^GET /v2/.*/blobs/sha256:"


@pytest.fixture(scope="module")
def medium_bundle(tmp_path_factory: pytest.TempPathFactory, synth_medium: MediumSet) -> Path:
    from tests.e2e_helpers import run

    out = tmp_path_factory.mktemp("medium") / "medium.tar.zst"
    code = run(["export", *synth_medium.names, *source_args(synth_medium.registry), "--source-repository",
                synth_medium.repository, "--source-tag", synth_medium.tag, "-o", str(out), "-q", "--no-cache"])
    assert code == 0
    return out


def start_cli(*argv: str) -> subprocess.Popen[str]:
    """``python -m arcgap ARGV`` in a process of its own, in the test's directory (receipts land there),
    with the test's environment."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "arcgap", *argv], cwd=Path.cwd(), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_when(proc: subprocess.Popen[str], ready: object, timeout: float = 30.0) -> None:
    """SIGKILL our own child as soon as ``ready()`` is true (fails the test if it finished first)."""
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        assert proc.poll() is None, f"finished before the kill point: {proc.communicate()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def tags_at(target: Registry) -> dict[str, list[str]]:
    client = target.raw_client()
    try:
        return {repo: tags for repo in client.catalog() if (tags := client.list_tags(repo))}
    finally:
        client.close()


def assert_identical_digests(target: Registry, medium: MediumSet, prefix: str = "arc") -> None:
    for name, info in medium.images.items():
        assert oracle_digest(target, f"{prefix}/{name}", medium.tag) == info.digest
        for child in info.children:
            assert oracle_digest(target, f"{prefix}/{name}", child.digest) == child.digest


def import_args(bundle: Path, host: str) -> list[str]:
    return ["import", str(bundle), "--target-registry", host, "--target-plain-http", "--target-repository", "arc"]


@pytest.fixture
def full_import_bytes(capsys: pytest.CaptureFixture[str], medium_bundle: Path, fresh_registry) -> int:
    """What an uninterrupted import into an empty registry uploads."""
    target: Registry = fresh_registry()
    res = arcgap(capsys, *import_args(medium_bundle, target.host), "--json", "-q")
    assert res.code == 0, res.err
    return int(json.loads(res.out)["uploaded_bytes"])


# -- import ----------------------------------------------------------------------------------------------

KILL_POINTS = {
    "after-the-first-blob": (BLOB_COMMIT, 1),
    "mid-blobs": (BLOB_COMMIT, 4),
    "while-pushing-manifests-by-digest": (r"^PUT /v2/.*/manifests/sha256:", 2),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_import_killed_midway_completes_when_run_again(
    capsys: pytest.CaptureFixture[str], medium_bundle: Path, synth_medium: MediumSet, fresh_registry,
    full_import_bytes: int, point: str,
) -> None:
    target: Registry = fresh_registry()
    proxy = FaultProxy(target.host, latency_s=0.15, latency_pattern=r"^PUT ")  # a middle long enough to hit
    try:
        pattern, count = KILL_POINTS[point]
        proc = start_cli(*import_args(medium_bundle, proxy.host), "-q")
        kill_when(proc, lambda: proxy.completed(pattern) >= count)
        proxy.wait_idle()
        committed = proxy.completed(BLOB_COMMIT)
        assert tags_at(target) == {}, "a tag moved before the whole bundle was verified"
        sent_before = proxy.request_bytes(r"^(PATCH|PUT) /v2/.*/blobs/uploads/")
        proxy.latency_s = 0.0
        proxy.requests.clear()
        res = arcgap(capsys, *import_args(medium_bundle, proxy.host), "--json", "-q")
        assert res.code == 0, res.err
        proxy.wait_idle()
        result = json.loads(res.out)
        assert result["skipped_blobs"] >= committed
        assert result["uploaded_bytes"] < full_import_bytes
        sent_again = proxy.request_bytes(r"^(PATCH|PUT) /v2/.*/blobs/uploads/")
        assert sent_again == result["uploaded_bytes"]
        if point != "after-the-first-blob":
            assert sent_again < full_import_bytes - sent_before / 2
        assert_identical_digests(target, synth_medium)
    finally:
        proxy.stop()


@pytest.mark.parametrize("reverse_proxy", [False, True], ids=["bare", "behind-a-reverse-proxy"])
def test_registry_restart_mid_import(
    capsys: pytest.CaptureFixture[str], medium_bundle: Path, synth_medium: MediumSet, tmp_path: Path,
    reverse_proxy: bool,
) -> None:
    """The registry stops and starts again (same storage, same port, a new upload secret) while blobs flow.

    Bare, clients see resets then refused connections; behind a reverse proxy they see 502 for a moment.
    Either the import rides it out within its retry budget, or it stops with a clean error and the second
    run completes; the digests end identical and no tag moved early.
    """
    with ExitStack() as stack:
        workdir = tmp_path / "restarting"
        registry = stack.enter_context(ExitStack())
        reg = registry.enter_context(start_registry(workdir))
        port = int(reg.host.rsplit(":", 1)[1])
        proxy = FaultProxy(reg.host, latency_s=0.15, latency_pattern=BLOB_COMMIT)
        stack.callback(proxy.stop)
        proc = start_cli(*import_args(medium_bundle, proxy.host), "-q", "--json")
        deadline = time.monotonic() + 30
        while proxy.completed(BLOB_COMMIT) < 3:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        t0 = time.monotonic()
        if not reverse_proxy:
            proxy.pause()
        registry.close()  # the registry stops...
        time.sleep(0.3)
        reg = stack.enter_context(start_registry(workdir, port=port))  # ...and comes back on the same port
        proxy.resume()
        outage = time.monotonic() - t0
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            assert json.loads(out)["images"]
        else:
            assert proc.returncode == 5, err
            lines = [line for line in err.splitlines() if line.startswith(("error: ", "hint: "))]
            assert len(lines) == 2 and "Traceback" not in err, err
            assert tags_at(reg) == {}
            proxy.latency_s = 0.0
            res = arcgap(capsys, *import_args(medium_bundle, proxy.host), "-q")
            assert res.code == 0, res.err
        assert outage < 2.0
        assert_identical_digests(reg, synth_medium)


# -- export: the blob cache ------------------------------------------------------------------------------


def export_args(medium: MediumSet, host: str, out: Path, *extra: str) -> list[str]:
    return ["export", *medium.names, "--source-registry", host, "--source-plain-http", "--source-repository",
            medium.repository, "--source-tag", medium.tag, "-o", str(out), *extra]


@pytest.fixture
def source_proxy(synth_medium: MediumSet) -> Iterator[FaultProxy]:
    proxy = FaultProxy(synth_medium.registry.host)
    yield proxy
    proxy.stop()


def layer_gets(proxy: FaultProxy, medium: MediumSet) -> list[str]:
    """Layer downloads the proxy saw begin, in order (configs come with the manifests while resolving; they are
    small): GETs from the first byte. A blob of at least the ranged threshold (the 3 MiB base layer) begins with
    a Range probe of its first part, and its rest follows as a second GET from the part's end."""
    proxy.wait_idle()
    return [d for r in proxy.matching(r"^GET /v2/.*/blobs/") if (d := r.line.rsplit("/", 1)[1]) in medium.layer_digests
            and r.headers.get("range", "bytes=0-").startswith("bytes=0-")]


def cached_digests(cache_dir: Path) -> set[str]:
    folder = cache_dir / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in folder.iterdir()} if folder.is_dir() else set()


def test_export_killed_midway_does_not_download_again_what_it_fetched(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source_proxy: FaultProxy, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    out = tmp_path / "again.tar.zst"
    # one layer held back long enough that the kill always lands before it is in (many blobs are fetched at once)
    slow = sorted(synth_medium.layer_digests)[0]
    source_proxy.latency_s, source_proxy.latency_pattern = 6.0, BLOB_GET + slow.split(":", 1)[1]
    proc = start_cli(*export_args(synth_medium, source_proxy.host, out, "--cache-dir", str(cache_dir), "-q",
                                  "--jobs", "2"))
    kill_when(proc, lambda: len(cached_digests(cache_dir)) >= 3)
    source_proxy.wait_idle()
    assert not out.exists()
    kept = cached_digests(cache_dir)
    assert kept < synth_medium.layer_digests
    source_proxy.latency_s = 0.0
    source_proxy.seen.clear()
    source_proxy.requests.clear()
    res = arcgap(capsys, *export_args(synth_medium, source_proxy.host, out, "--cache-dir", str(cache_dir),
                                      "--json", "-q"))
    assert res.code == 0, res.err
    fetched_again = layer_gets(source_proxy, synth_medium)
    assert sorted(fetched_again) == sorted(synth_medium.layer_digests - kept), "a cached blob was downloaded again"
    cache = json.loads(res.out)["cache"]
    assert (cache["hits"], cache["stored"]) == (len(kept), len(fetched_again))
    reference = tmp_path / "reference.tar.zst"
    res = arcgap(capsys, *export_args(synth_medium, source_proxy.host, reference, "--no-cache", "-q"))
    assert res.code == 0, res.err
    assert out.read_bytes() == reference.read_bytes()  # the same bytes as an export without any cache


def test_second_export_downloads_nothing_and_a_damaged_entry_is_fetched_again(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source_proxy: FaultProxy, tmp_path: Path
) -> None:
    first, second, third = (tmp_path / f"{n}.tar.zst" for n in ("first", "second", "third"))
    res = arcgap(capsys, *export_args(synth_medium, source_proxy.host, first, "--json", "-q"))
    assert res.code == 0, res.err
    stored = json.loads(res.out)["cache"]["stored"]
    assert stored == len(layer_gets(source_proxy, synth_medium)) == len(synth_medium.layer_digests)
    # the default place: $XDG_CACHE_HOME/arcgap (the test's own, see conftest)
    cache_dir = Path(os.environ["XDG_CACHE_HOME"]) / "arcgap"
    assert len(cached_digests(cache_dir)) == stored

    res = arcgap(capsys, *export_args(synth_medium, source_proxy.host, second, "--json", "-q"))
    assert res.code == 0, res.err
    assert len(layer_gets(source_proxy, synth_medium)) == stored  # not one layer downloaded again
    assert json.loads(res.out)["cache"]["hits"] == stored
    assert second.read_bytes() == first.read_bytes()

    victim = sorted(cached_digests(cache_dir))[0]
    flip_byte(cache_dir / "blobs" / "sha256" / victim.split(":")[1], 100)
    res = arcgap(capsys, *export_args(synth_medium, source_proxy.host, third, "--json", "-q"))
    assert res.code == 0, res.err
    assert layer_gets(source_proxy, synth_medium)[stored:] == [victim]
    assert json.loads(res.out)["cache"]["discarded"] == 1
    assert "warning: discarded a damaged cache entry and downloaded it again" in res.err
    assert third.read_bytes() == first.read_bytes()


def test_no_cache_and_the_size_cap(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source_proxy: FaultProxy, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    res = arcgap(capsys, *export_args(synth_medium, source_proxy.host, tmp_path / "a.tar.zst", "--no-cache",
                                      "--cache-dir", str(cache_dir), "--json", "-q"))
    assert res.code == 0, res.err
    assert "cache" not in json.loads(res.out) and not cache_dir.exists()

    res = arcgap(capsys, *export_args(synth_medium, source_proxy.host, tmp_path / "b.tar.zst", "--cache-dir",
                                      str(cache_dir), "--cache-max-size", "4MiB", "--json", "-q"))
    assert res.code == 0, res.err
    cache = json.loads(res.out)["cache"]
    assert cache["evicted"] > 0
    info = arcgap(capsys, "cache", "info", "--cache-dir", str(cache_dir), "--json")
    doc = json.loads(info.out)
    assert 0 < doc["size_bytes"] <= 4 * 2**20
    assert doc["entries"] == cache["stored"] - cache["evicted"]

    res = arcgap(capsys, *export_args(synth_medium, source_proxy.host, tmp_path / "c.tar.zst", "--cache-max-size",
                                      "20"))
    assert res.code == 2
    assert res.error_lines[0] == "error: --cache-max-size '20' is not a size with a unit"


def test_cache_info_and_clear_commands(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source_proxy: FaultProxy, tmp_path: Path
) -> None:
    default = Path(os.environ["XDG_CACHE_HOME"]) / "arcgap"
    res = arcgap(capsys, "cache", "info", "--json")
    assert json.loads(res.out) == {"command": "cache info", "path": str(default), "entries": 0, "size_bytes": 0,
                                   "partial_files": 0}
    res = arcgap(capsys, *export_args(synth_medium, source_proxy.host, tmp_path / "a.tar.zst", "--json", "-q"))
    stored = json.loads(res.out)["cache"]
    res = arcgap(capsys, "cache", "info")
    assert res.code == 0
    assert res.out.startswith(f"{default}: {stored['stored']} blobs, ")
    res = arcgap(capsys, "cache", "clear", "--json")
    doc = json.loads(res.out)
    assert (doc["entries"], doc["size_bytes"]) == (stored["stored"], stored["stored_bytes"])
    assert cached_digests(default) == set()
    res = arcgap(capsys, "cache", "clear")
    assert res.out == f"removed 0 blobs (0 B) from {default}\n"


def test_cache_commands_have_help_with_an_example_and_are_documented(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text() + (ROOT / "docs" / "commands.md").read_text()
    for command in ("info", "clear"):
        res = arcgap(capsys, "cache", command, "--help")
        assert res.code == 0 and "Example: arcgap cache" in res.out
        assert f"arcgap cache {command}" in readme
    assert "--cache-max-size" in readme and "XDG_CACHE_HOME" in readme
