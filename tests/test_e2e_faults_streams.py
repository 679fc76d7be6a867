"""Faults in the middle of a stream: a download cut mid-blob, an upload chunk cut or its answer lost, a slow
registry; and permanent errors on the export side, which stop at once. A fault proxy before a real registry."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from arcgap.commands.options import NetworkOptions
from arcgap.registry.client import CHUNK_BYTES
from arcgap.registry.ranged import RangedOptions
from devtools.faultproxy import Fault, FaultProxy
from devtools.registries import Registry
from tests import e2e_helpers
from tests.e2e_helpers import oracle_digest
from tests.test_e2e_roundtrip import clean_env  # noqa: F401 (autouse fixture)

if TYPE_CHECKING:
    from tests.conftest import MediumSet

BLOB_COMMIT = r"^PUT /v2/.*/blobs/uploads/"
UPLOAD_STATUS = r"^GET /v2/.*/blobs/uploads/"


QUICK_RETRIES = NetworkOptions(retry_base_delay_s=0.02)
SMALL_CHUNKS = NetworkOptions(retry_base_delay_s=0.02, upload_chunk_bytes=512 * 1024)  # 1-3 MiB layers: several PATCHes
arcgap = functools.partial(e2e_helpers.arcgap, network=QUICK_RETRIES)  # every run here: quick retries
# One stream per blob, as below the ranged threshold: the 3 MiB base layer would otherwise start with a Range
# probe (test_e2e_ranged cuts the ranged path).
ONE_STREAM = replace(QUICK_RETRIES, ranged=RangedOptions(threshold_bytes=16 << 20))


@pytest.fixture
def source(synth_medium: MediumSet) -> Iterator[FaultProxy]:
    proxy = FaultProxy(synth_medium.registry.host)
    yield proxy
    proxy.stop()


@pytest.fixture
def target(fresh_registry) -> Iterator[tuple[Registry, FaultProxy]]:
    registry: Registry = fresh_registry()
    proxy = FaultProxy(registry.host)
    yield registry, proxy
    proxy.stop()


def export_via(capsys: pytest.CaptureFixture[str], medium: MediumSet, host: str, out: Path, *extra: str,
               network: NetworkOptions = QUICK_RETRIES):
    return arcgap(capsys, "export", *medium.names, "--source-registry", host, "--source-plain-http",
                  "--source-repository", medium.repository, "--source-tag", medium.tag, "-o", str(out),
                  "--no-cache", "-q", *extra, network=network)


def import_via(capsys: pytest.CaptureFixture[str], bundle: Path, host: str, *extra: str,
               network: NetworkOptions = QUICK_RETRIES):
    return arcgap(capsys, "import", str(bundle), "--target-registry", host, "--target-plain-http",
                  "--target-repository", "arc", "-q", *extra, network=network)


def biggest_layer(medium: MediumSet) -> str:
    """The 3 MiB base layer every image shares."""
    first = next(iter(medium.images.values()))
    layers = first.children[0].layer_digests if first.children else first.layer_digests
    return layers[0]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, synth_medium: MediumSet) -> Path:
    from tests.e2e_helpers import run

    out = tmp_path_factory.mktemp("streams") / "medium.tar.zst"
    host = synth_medium.registry.host
    assert run(["export", *synth_medium.names, "--source-registry", host, "--source-plain-http",
                "--source-repository", synth_medium.repository, "--source-tag", synth_medium.tag,
                "-o", str(out), "-q", "--no-cache"]) == 0
    return out


def no_tags(registry: Registry) -> bool:
    client = registry.raw_client()
    try:
        return all(client.list_tags(repo) == [] for repo in client.catalog())
    finally:
        client.close()


def assert_identical_digests(registry: Registry, medium: MediumSet) -> None:
    for name, info in medium.images.items():
        assert oracle_digest(registry, f"arc/{name}", medium.tag) == info.digest
        for child in info.children:
            assert oracle_digest(registry, f"arc/{name}", child.digest) == child.digest


# -- export ----------------------------------------------------------------------------------------------


def test_export_resumes_a_blob_cut_midway_with_a_range_request(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source: FaultProxy, tmp_path: Path
) -> None:
    layer = biggest_layer(synth_medium)
    reference = tmp_path / "reference.tar.zst"
    assert export_via(capsys, synth_medium, source.host, reference).code == 0
    source.faults.append(Fault(rf"^GET /v2/.*/blobs/{layer}$", kind="cut_response", after_bytes=1_000_000,
                               times=2))
    t0 = time.monotonic()
    out = tmp_path / "cut.tar.zst"
    res = export_via(capsys, synth_medium, source.host, out, network=ONE_STREAM)
    assert res.code == 0, res.err
    assert time.monotonic() - t0 < 10
    source.wait_idle()
    gets = source.matching(rf"^GET /v2/.*/blobs/{layer}$")[-3:]
    # The first GET was cut after 1 MB, the second after 1 MB more, the third finished. Each resumed from the
    # bytes already verified and passed on: whole chunks of at least CHUNK_BYTES, joined from the connection's
    # reads (at most 64 KiB each), so the chunk cut short (fetched again) is less than CHUNK_BYTES + 64 KiB.
    assert [r.headers.get("range") for r in gets][0] is None
    starts = [int(r.headers["range"].removeprefix("bytes=").removesuffix("-")) for r in gets[1:]]
    lost = CHUNK_BYTES + 64 * 1024
    assert 1_000_000 - lost < starts[0] <= 1_000_000, starts
    assert starts[0] + 1_000_000 - lost < starts[1] <= starts[0] + 1_000_000, starts
    assert [r.response_bytes for r in gets[:2]] == [1_000_000, 1_000_000]
    assert [r.status for r in gets] == [200, 206, 206]
    assert out.read_bytes() == reference.read_bytes()


def test_export_from_a_slow_registry(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source: FaultProxy, tmp_path: Path
) -> None:
    reference = tmp_path / "reference.tar.zst"
    assert export_via(capsys, synth_medium, source.host, reference).code == 0
    source.latency_s = 0.05  # every request
    source.throttle_bytes_per_s = 4_000_000  # every connection's body
    t0 = time.monotonic()
    out = tmp_path / "slow.tar.zst"
    res = export_via(capsys, synth_medium, source.host, out, "--json")
    assert res.code == 0, res.err
    seconds = time.monotonic() - t0
    # ~10 MB at 4 MB/s per connection, 4 connections: a few seconds, bounded
    assert 1.0 < seconds < 20, seconds
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize(("status", "code", "where"), [
    (401, 3, "blob"), (403, 3, "blob"), (404, 4, "blob"), (404, 4, "manifest"), (403, 3, "manifest"),
])
def test_export_stops_on_permanent_errors_without_retrying(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source: FaultProxy, tmp_path: Path,
    status: int, code: int, where: str,
) -> None:
    if where == "blob":
        pattern = rf"^GET /v2/.*/blobs/{biggest_layer(synth_medium)}$"
    else:
        pattern = r"^(GET|HEAD) /v2/medium/arc-dns/manifests/v1$"
    source.faults.append(Fault(pattern, status=status, times=100))
    out = tmp_path / "denied.tar.zst"
    t0 = time.monotonic()
    res = export_via(capsys, synth_medium, source.host, out, "--jobs", "1")
    assert res.code == code, res.err
    assert time.monotonic() - t0 < 5
    assert source.count(pattern) <= 2  # a 401 earns one fresh login; nothing else is tried twice
    assert len(res.error_lines) == 2 and "Traceback" not in res.err
    if where == "blob":
        assert f": {status} " in res.error_lines[0]
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_export_gives_up_on_a_registry_that_keeps_failing(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source: FaultProxy, tmp_path: Path
) -> None:
    pattern = rf"^GET /v2/.*/blobs/{biggest_layer(synth_medium)}$"
    source.faults.append(Fault(pattern, status=503, times=1000))
    res = export_via(capsys, synth_medium, source.host, tmp_path / "x.tar.zst", "--jobs", "1", "--retry-budget", "2")
    assert res.code == 5, res.err
    tries = source.count(pattern)
    assert "503" in res.error_lines[0] and f"gave up after {tries} tries in 2 s" in res.error_lines[0]
    assert tries > 6  # a 2 s budget of short jittered waits: more tries than the old count


# -- import ----------------------------------------------------------------------------------------------


MID_PATCH = {
    # nothing reached the registry: it says where it stands (Range), the chunk goes again
    "reset-before-the-registry-saw-it": Fault(r"^PATCH ", kind="reset", skip=1),
    # the same on the first chunk: distribution says "Range: 0-0" for an empty upload (not one byte)
    "first-chunk-reset-before-the-registry-saw-it": Fault(r"^PATCH ", kind="reset"),
    # part of the first chunk landed: distribution refuses the old location; all bytes are here, so start over
    "first-chunk-cut-midway": Fault(r"^PATCH ", kind="cut_request", after_bytes=100_000),
    # the registry took the whole chunk but the answer (with the new location) was lost
    "answer-to-a-first-chunk-lost": Fault(r"^PATCH ", kind="lose_response"),
    # the final PUT committed the blob but its answer was lost: a HEAD finds the blob, nothing is sent again
    "answer-to-the-commit-lost": Fault(BLOB_COMMIT, kind="lose_response", skip=1),
    # part of a later chunk landed: distribution refuses the old location; the held blob starts over
    "later-chunk-cut-midway": Fault(r"^PATCH ", kind="cut_request", after_bytes=100_000,
                                    header=("content-range", r"^[1-9]")),
    # a later chunk landed, its answer (the next location) lost: the same
    "answer-to-a-later-chunk-lost": Fault(r"^PATCH ", kind="lose_response", header=("content-range", r"^[1-9]")),
}


@pytest.mark.parametrize("case", list(MID_PATCH))
def test_import_survives_a_fault_in_the_middle_of_an_upload(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, bundle: Path, target: tuple[Registry, FaultProxy],
    case: str,
) -> None:
    registry, proxy = target
    fault = MID_PATCH[case]
    proxy.faults.append(Fault(fault.pattern, kind=fault.kind, after_bytes=fault.after_bytes, skip=fault.skip,
                              header=fault.header))
    res = import_via(capsys, bundle, proxy.host, "--json", network=SMALL_CHUNKS)
    assert res.code == 0, res.err
    assert proxy.faults[0].hits == 1
    if case.endswith("reset-before-the-registry-saw-it"):
        assert proxy.count(UPLOAD_STATUS) >= 1  # asked where the upload stands
    if case in ("first-chunk-cut-midway", "answer-to-a-first-chunk-lost", "later-chunk-cut-midway",
                "answer-to-a-later-chunk-lost"):
        assert proxy.count(UPLOAD_STATUS) >= 1  # asked, and learnt that the session was gone
    if case == "answer-to-the-commit-lost":
        proxy.wait_idle()
        assert proxy.count(BLOB_COMMIT) == proxy.completed(BLOB_COMMIT) + 1  # the lost one was not sent again
    assert_identical_digests(registry, synth_medium)


def test_import_cut_in_a_later_chunk_of_a_streamed_blob_stops_cleanly_and_the_rerun_completes(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, bundle: Path, target: tuple[Registry, FaultProxy],
) -> None:
    """Once bytes of a second chunk landed, distribution refuses the location the client holds (its offset is
    signed into ``_state``). A blob streamed from the bundle (too large to hold) cannot be read again from its
    start: a clean stop, then a rerun."""
    streamed = replace(SMALL_CHUNKS, background_max_bytes=0)  # every blob streamed from the bundle, none held
    registry, proxy = target
    # A chunk after the first (Content-Range not from 0), whichever upload it belongs to: uploads run on
    # several threads, so "the second PATCH" could be another blob's first chunk, which is re-sent.
    proxy.faults.append(Fault(r"^PATCH ", kind="cut_request", after_bytes=100_000, header=("content-range", r"^[1-9]")))
    res = import_via(capsys, bundle, proxy.host, network=streamed)
    assert res.code == 5, res.err
    assert re.fullmatch(r"error: uploading blob sha256:\w+ to [\d.:]+/arc/[\w-]+: the registry lost the upload "
                        r"after \d+ bytes \(404 BLOB_UPLOAD_INVALID\)", res.error_lines[0]), res.error_lines[0]
    assert res.error_lines[1] == ("hint: the registry restarted or the connection broke mid-chunk; run the same "
                                  "command again: blobs already at the target are skipped")
    assert no_tags(registry)
    res = import_via(capsys, bundle, proxy.host, "--json", network=streamed)
    assert res.code == 0, res.err
    assert_identical_digests(registry, synth_medium)


def test_import_into_a_slow_registry(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, bundle: Path, target: tuple[Registry, FaultProxy]
) -> None:
    registry, proxy = target
    proxy.latency_s = 0.02
    proxy.throttle_bytes_per_s = 8_000_000
    t0 = time.monotonic()
    res = import_via(capsys, bundle, proxy.host, "--json")
    assert res.code == 0, res.err
    assert time.monotonic() - t0 < 20
    assert json.loads(res.out)["uploaded_bytes"] > 8_000_000
    assert_identical_digests(registry, synth_medium)


def mirror_via(capsys: pytest.CaptureFixture[str], medium: MediumSet, host: str, target: Registry):
    return arcgap(capsys, "mirror", *medium.names, "--source-registry", host, "--source-plain-http",
                  "--source-repository", medium.repository, "--source-tag", medium.tag,
                  "--target-registry", target.host, "--target-plain-http", "--target-repository", "arc")


def test_mirror_fetches_a_blob_that_failed_its_digest_at_the_source_once_more(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source: FaultProxy,
    target: tuple[Registry, FaultProxy],
) -> None:
    """One corrupt answer: the source is blamed in a warning, the blob fetched again, the mirror completes."""
    registry, _ = target
    layer = biggest_layer(synth_medium)
    fault = Fault(rf"^GET /v2/.*/blobs/{layer}$", kind="corrupt", after_bytes=1000, times=1)
    source.faults.append(fault)
    res = mirror_via(capsys, synth_medium, source.host, registry)
    assert res.code == 0, res.err
    assert fault.hits == 1
    warned = [line for line in res.err.splitlines() if "fetching it once more" in line]
    assert len(warned) == 1 and f"{source.host} served " in warned[0] and layer in warned[0], res.err
    assert "bundle" not in warned[0]
    assert_identical_digests(registry, synth_medium)


def test_mirror_stops_when_the_source_serves_a_blob_with_other_content_twice(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source: FaultProxy,
    target: tuple[Registry, FaultProxy],
) -> None:
    registry, _ = target
    layer = biggest_layer(synth_medium)
    source.faults.append(Fault(rf"^GET /v2/.*/blobs/{layer}$", kind="corrupt", after_bytes=1000, times=1000))
    res = mirror_via(capsys, synth_medium, source.host, registry)
    assert res.code == 7, res.err
    error, hint = res.error_lines
    assert error.startswith(f"error: {source.host} served ") and layer in error, error
    assert "(the second time it was fetched too)" in error
    assert "bundle" not in hint and "report the digest above" in hint
    for name in synth_medium.names:
        assert registry.list_tags(f"arc/{name}") == []  # no tag moved


def test_a_blob_that_fails_its_digest_at_the_source_blames_the_registry(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source: FaultProxy, tmp_path: Path
) -> None:
    """Every answer corrupt: fetched twice, then one error blaming the registry; no bundle left behind."""
    layer = biggest_layer(synth_medium)
    fault = Fault(rf"^GET /v2/.*/blobs/{layer}$", kind="corrupt", after_bytes=1000, times=1000)
    source.faults.append(fault)
    res = export_via(capsys, synth_medium, source.host, tmp_path / "c.tar.zst", network=ONE_STREAM)
    assert res.code == 7, res.err
    assert fault.hits == 2
    assert res.error_lines[0].startswith(f"error: {source.host} served ") and layer in res.error_lines[0]
    assert "(the second time it was fetched too)" in res.error_lines[0]
    assert "bundle" not in res.error_lines[1] and "report the digest above" in res.error_lines[1]
    assert list(tmp_path.iterdir()) == []  # no bundle, no partial file, no sidecar


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "no-cache"])
def test_export_fetches_a_blob_that_failed_its_digest_at_the_source_once_more(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source: FaultProxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, cached: bool,
) -> None:
    """One corrupt answer: a warning blames the source, the bundle is written again from its start and comes
    out byte for byte the bundle of a clean export."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    clean = tmp_path / "clean" / "b.tar.zst"
    assert export_via(capsys, synth_medium, source.host, clean).code == 0  # arcgap.yaml names the source
    layer = biggest_layer(synth_medium)
    fault = Fault(rf"^GET /v2/.*/blobs/{layer}$", kind="corrupt", after_bytes=1000, times=1)
    source.faults.append(fault)
    out = tmp_path / "faulted" / "b.tar.zst"
    cache = ("--cache-dir", str(tmp_path / "cache")) if cached else ("--no-cache",)
    res = arcgap(capsys, "export", *synth_medium.names, "--source-registry", source.host, "--source-plain-http",
                 "--source-repository", synth_medium.repository, "--source-tag", synth_medium.tag,
                 "-o", str(out), *cache)
    assert res.code == 0, res.err
    assert fault.hits == 1
    warned = [line for line in res.err.splitlines() if "fetching it once more" in line]
    assert len(warned) == 1, res.err
    assert warned[0].startswith(f"warning: {source.host} served ") and layer in warned[0], warned[0]
    assert "writing the bundle again from its start" in warned[0]
    assert out.read_bytes() == clean.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["b.tar.zst", "b.tar.zst.parts.yaml"]


def test_a_layout_export_fetches_a_blob_that_failed_its_digest_at_the_source_once_more(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, source: FaultProxy, tmp_path: Path
) -> None:
    layer = biggest_layer(synth_medium)
    fault = Fault(rf"^GET /v2/.*/blobs/{layer}$", kind="corrupt", after_bytes=1000, times=1)
    source.faults.append(fault)
    out = tmp_path / "layout"
    res = arcgap(capsys, "export", *synth_medium.names, "--source-registry", source.host, "--source-plain-http",
                 "--source-repository", synth_medium.repository, "--source-tag", synth_medium.tag,
                 "--format", "oci-layout", "-o", str(out), "--no-cache")
    assert res.code == 0, res.err
    assert fault.hits == 1 and "fetching it once more (writing the layout's blobs again)" in res.err
    blob = out / "blobs" / "sha256" / layer.removeprefix("sha256:")
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == layer
    assert not list(out.rglob("*.partial"))


def test_an_upload_whose_answer_stalls_is_said_before_it_would_be_dropped(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, bundle: Path, target: tuple[Registry, FaultProxy],
) -> None:
    """The commit of the biggest layer is answered 3 s late: with a 4 s stall window the run says, after 2 s,
    that the upload has made no progress (every byte sent, the answer awaited), then completes."""
    registry, proxy = target
    layer = biggest_layer(synth_medium)
    hex_digits = layer.removeprefix("sha256:")
    commit = Fault(rf"^PUT /v2/.*/blobs/uploads/.*digest=sha256(:|%3A){hex_digits}", kind="headers", delay_s=3.0)
    proxy.faults.append(commit)
    res = import_via(capsys, bundle, proxy.host, "--stall-timeout", "4")
    assert res.code == 0, res.err
    assert commit.hits == 1
    said = [line for line in res.err.splitlines() if "no progress for" in line]
    assert len(said) == 1, res.err
    assert said[0].startswith("warning: committing ") and layer in said[0], said[0]
    assert "every byte is sent, waiting for the answer" in said[0]
    assert_identical_digests(registry, synth_medium)


def test_an_upload_whose_answer_stays_away_is_dropped_and_settled(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, bundle: Path, target: tuple[Registry, FaultProxy],
) -> None:
    """The commit's answer comes 8 s late with a 3 s stall window: said after 1.5 s, dropped at 3 s, the upload
    settled by asking the registry (never sent blindly again), and the import completes."""
    registry, proxy = target
    layer = biggest_layer(synth_medium)
    hex_digits = layer.removeprefix("sha256:")
    commit = Fault(rf"^PUT /v2/.*/blobs/uploads/.*digest=sha256(:|%3A){hex_digits}", kind="headers", delay_s=8.0)
    proxy.faults.append(commit)
    t0 = time.monotonic()
    res = import_via(capsys, bundle, proxy.host, "--stall-timeout", "3")
    assert res.code == 0, res.err
    assert commit.hits == 1
    assert len([line for line in res.err.splitlines() if "no progress for" in line and layer in line]) == 1, res.err
    assert time.monotonic() - t0 < 60
    assert_identical_digests(registry, synth_medium)
