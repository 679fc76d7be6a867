"""Transient failures are retried (bounded), permanent ones are not: a fault proxy before a real registry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.faultproxy import Fault, FaultProxy
from devtools.registries import Registry
from devtools.synth import SmallSet
from tests.e2e_helpers import QUICK_RETRIES, arcgap, oracle_digest
from tests.test_e2e_roundtrip import ROLES, clean_env, export_small  # noqa: F401 (autouse fixture)


@pytest.fixture
def proxied(fresh_registry) -> Iterator[tuple[Registry, FaultProxy]]:
    target: Registry = fresh_registry()
    proxy = FaultProxy(target.host)
    yield target, proxy
    proxy.stop()


def test_import_survives_503_429_and_a_reset(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, proxied: tuple[Registry, FaultProxy], tmp_path: Path
) -> None:
    target, proxy = proxied
    bundle = tmp_path / "f.tar.zst"
    export_small(capsys, synth_small, bundle)
    proxy.faults += [
        Fault(r"^PUT /v2/.*/blobs/uploads/", status=503, times=2),
        Fault(r"^HEAD /v2/.*/blobs/", status=429, times=3, retry_after="1"),
        Fault(r"^PUT /v2/.*/manifests/v1", status=0, times=1),  # connection reset while tagging
        Fault(r"^POST /v2/.*/blobs/uploads/", status=502, times=1),
    ]
    t0 = time.monotonic()
    res = arcgap(capsys, "import", str(bundle), "--target-registry", proxy.host, "--target-plain-http",
                 "--target-repository", "arc")
    assert res.code == 0, res.err
    assert time.monotonic() - t0 < 60
    assert all(f.hits == f.times for f in proxy.faults)
    for role in ROLES:
        info = synth_small[role]
        assert oracle_digest(target, "arc/" + info.repository.split("/", 1)[1], "v1") == info.digest


@pytest.mark.parametrize("status,code", [(401, 3), (403, 3), (404, 4), (400, 6)])
def test_permanent_errors_are_not_retried(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, proxied: tuple[Registry, FaultProxy], tmp_path: Path,
    status: int, code: int,
) -> None:
    target, proxy = proxied
    bundle = tmp_path / "p.tar.zst"
    export_small(capsys, synth_small, bundle)
    proxy.faults.append(Fault(r"^POST /v2/.*/blobs/uploads/", status=status, times=100))
    res = arcgap(capsys, "import", str(bundle), "--target-registry", proxy.host, "--target-plain-http",
                 "--target-repository", "arc")
    assert res.code == code, res.err
    # 401 gets one re-authentication, then the import stops: at most the uploads already in flight (one per
    # background slot) ask, each once plus its re-authentication, and nothing is retried after that.
    from arcgap.transfer.background import BACKGROUND_SLOTS

    assert proxy.count(r"^POST /v2/.*/blobs/uploads/") <= 2 * BACKGROUND_SLOTS
    assert target.raw_client().catalog() == [] or all(
        target.list_tags(r) == [] for r in target.raw_client().catalog()
    )


def test_persistent_503_gives_up_with_a_clear_error(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, proxied: tuple[Registry, FaultProxy], tmp_path: Path,
) -> None:
    target, proxy = proxied
    bundle = tmp_path / "g.tar.zst"
    export_small(capsys, synth_small, bundle)
    proxy.faults.append(Fault(r"^HEAD /v2/.*/blobs/", status=503, times=1000))
    res = arcgap(capsys, "import", str(bundle), "--target-registry", proxy.host, "--target-plain-http",
                 "--target-repository", "arc", "--retry-budget", "2", network=QUICK_RETRIES)
    assert res.code == 5, res.err
    assert "503" in res.error_lines[0] and "gave up after" in res.error_lines[0]
    assert res.error_lines[1].startswith("hint: the registry kept failing for the whole retry budget; try again")


def test_a_full_disk_at_the_target_is_named_and_not_retried(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, proxied: tuple[Registry, FaultProxy], tmp_path: Path,
) -> None:
    target, proxy = proxied
    bundle = tmp_path / "d.tar.zst"
    export_small(capsys, synth_small, bundle)
    proxy.faults.append(Fault(r"^PUT /v2/.*/blobs/uploads/", status=500, times=1000, code="UNKNOWN",
                              message="unknown error: write /var/lib/registry/x: no space left on device"))
    res = arcgap(capsys, "import", str(bundle), "--target-registry", proxy.host, "--target-plain-http",
                 "--target-repository", "arc", "--jobs", "1")
    assert res.code == 6, res.err
    assert "no space left on device" in res.error_lines[0]
    assert res.error_lines[1].startswith("hint: the target registry's storage is full (no space left on its disk)")
    assert proxy.faults[0].hits == 1  # not sent again into a full disk


def test_digest_invalid_from_the_target_blames_the_way_there(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, proxied: tuple[Registry, FaultProxy], tmp_path: Path,
) -> None:
    target, proxy = proxied
    bundle = tmp_path / "v.tar.zst"
    export_small(capsys, synth_small, bundle)
    proxy.faults.append(Fault(r"^PUT /v2/.*/blobs/uploads/", status=400, times=1000, code="DIGEST_INVALID",
                              message="provided digest did not match uploaded content"))
    res = arcgap(capsys, "import", str(bundle), "--target-registry", proxy.host, "--target-plain-http",
                 "--target-repository", "arc")
    assert res.code == 6, res.err
    assert "DIGEST_INVALID" in res.error_lines[0]
    assert res.error_lines[1].startswith("hint: the registry received bytes that do not match the blob's digest")


def test_a_target_that_refuses_a_sparse_index_names_the_index(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, proxied: tuple[Registry, FaultProxy], tmp_path: Path,
) -> None:
    target, proxy = proxied
    bundle = tmp_path / "s.tar.zst"
    export_small(capsys, synth_small, bundle)
    index = synth_small["index_oci"].digest
    # distribution 3.1's answer to an index whose children it lacks
    proxy.faults.append(Fault(rf"^PUT /v2/.*/manifests/{index}", status=400, times=10, code="MANIFEST_BLOB_UNKNOWN",
                              message="blob unknown to registry"))
    res = arcgap(capsys, "import", str(bundle), "--target-registry", proxy.host, "--target-plain-http",
                 "--target-repository", "arc")
    assert res.code == 6, res.err
    assert f"refuses the index {index} for arc/" in res.error_lines[0]
    assert "sparse indexes" in res.error_lines[1] and "no tag was moved" in res.error_lines[1]
    assert proxy.faults[0].hits == 1  # a refusal, not retried


def test_a_blob_head_answered_500_is_taken_as_missing_at_once_and_said_once(
    proxied: tuple[Registry, FaultProxy],
) -> None:
    """distribution answers 500 to a HEAD of a blob it half wrote when its disk filled, every time: waiting out
    the retry budget cannot help, an upload repairs it. Not retried; one warning for the client."""
    from arcgap.oci.digest import Digest
    from arcgap.registry.client import RegistryClient
    from arcgap.registry.transport import TLSOptions

    _, proxy = proxied
    fault = Fault(r"^HEAD /v2/.*/blobs/", status=500, times=1000, code="UNKNOWN")
    proxy.faults.append(fault)
    warnings: list[str] = []
    with RegistryClient(proxy.host, tls=TLSOptions(plain_http=True), warn=warnings.append) as client:
        t0 = time.monotonic()
        assert client.blob_exists("arc/x", Digest.of(b"a")) is False
        assert client.blob_exists("arc/x", Digest.of(b"b")) is False
        assert time.monotonic() - t0 < 5  # the default budget would wait minutes
    assert fault.hits == 2  # one HEAD each, no retry
    assert len(warnings) == 1 and f"answers 500 to a HEAD of blob {Digest.of(b'a')}" in warnings[0]
