"""How other registries take uploads, played by the fault proxy in front of the real registry.

- Harbor answers a cross-repository mount it cannot do with 202 and a fresh upload session: the blob goes into
  that session (no DELETE, no second POST);
- ``OCI-Chunk-Min-Length`` on the session's answer: no PATCH is smaller (the proxy refuses any that is);
- a per-request size limit answered with 413 (GHCR refuses requests over 4 MiB; 1 MiB here): smaller chunks,
  learnt once, and no request over the limit reaches the registry;
- PATCH refused (405 / 501): each blob goes in one streamed PUT with its length declared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from arcgap.commands.options import NetworkOptions
from devtools.faultproxy import Fault, FaultProxy
from devtools.registries import Registry
from devtools.synth import SmallSet
from tests.e2e_helpers import QUICK_RETRIES, arcgap, oracle_digest
from tests.test_e2e_lost_answers import ALWAYS, BLOB_COMMIT, PATCH, assert_identical, run_command
from tests.test_e2e_lost_answers import bundle as small_bundle  # noqa: F401 (module fixture)
from tests.test_e2e_roundtrip import clean_env  # noqa: F401 (autouse fixture)

if TYPE_CHECKING:
    from tests.conftest import MediumSet

MOUNT = r"^POST /v2/.*/blobs/uploads/\?.*mount="
PLAIN_POST = r"^POST /v2/.*/blobs/uploads/$"
MiB = 1 << 20


@pytest.fixture
def target(fresh_registry) -> Iterator[tuple[Registry, FaultProxy]]:
    registry: Registry = fresh_registry()
    proxy = FaultProxy(registry.host)
    yield registry, proxy
    proxy.stop()


@pytest.fixture(scope="module")
def medium_bundle(tmp_path_factory: pytest.TempPathFactory, synth_medium: MediumSet) -> Path:
    from tests.e2e_helpers import run

    out = tmp_path_factory.mktemp("quirks") / "medium.tar.zst"
    host = synth_medium.registry.host
    assert run(["export", *synth_medium.names, "--source-registry", host, "--source-plain-http",
                "--source-repository", synth_medium.repository, "--source-tag", synth_medium.tag,
                "-o", str(out), "-q", "--no-cache"]) == 0
    return out


def move_medium(capsys: pytest.CaptureFixture[str], command: str, medium: MediumSet, bundle: Path, host: str, *,
                network: NetworkOptions = QUICK_RETRIES):
    target = ["--target-registry", host, "--target-plain-http", "--target-repository", "arc", "-q", "--json"]
    if command == "import":
        return arcgap(capsys, "import", str(bundle), *target, network=network)
    return arcgap(capsys, "mirror", *medium.names, "--source-registry", medium.registry.host,
                  "--source-plain-http", "--source-repository", medium.repository, "--source-tag", medium.tag,
                  *target, network=network)


def assert_medium_identical(registry: Registry, medium: MediumSet) -> None:
    client = registry.raw_client()
    try:
        for name, info in medium.images.items():
            repo = f"arc/{name}"
            assert oracle_digest(registry, repo, medium.tag) == info.digest
            for image in (info, *info.children):
                raw, _ = client.get_manifest(repo, image.digest)
                assert "sha256:" + hashlib.sha256(raw).hexdigest() == image.digest
                for blob in image.layer_digests:
                    assert "sha256:" + hashlib.sha256(client.get_blob(repo, blob)).hexdigest() == blob
    finally:
        client.close()


@pytest.mark.parametrize("command", ["import", "mirror"])
def test_a_mount_answered_with_a_fresh_session_is_uploaded_into_it(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, small_bundle: Path,  # noqa: F811
    target: tuple[Registry, FaultProxy], command: str,
) -> None:
    registry, proxy = target
    proxy.faults.append(Fault(MOUNT, kind="mount_as_upload", times=ALWAYS))
    res = run_command(capsys, command, synth_small, small_bundle, proxy.host, "arc")
    assert res.code == 0, res.err
    result = json.loads(res.out)
    assert proxy.faults[0].hits >= 1 and result["mounted_blobs"] == 0
    assert_identical(registry, synth_small, "arc", oracle=True)
    proxy.wait_idle()
    assert proxy.count(r"^DELETE ") == 0  # no session thrown away...
    # ...and none opened twice: every session (offered by a mount, or asked for) carried one blob
    assert proxy.count(MOUNT) + proxy.count(PLAIN_POST) == proxy.count(BLOB_COMMIT) == result["uploaded_blobs"]


def test_oci_chunk_min_length_is_honoured(
    capsys: pytest.CaptureFixture[str], synth_small: SmallSet, small_bundle: Path,  # noqa: F811
    target: tuple[Registry, FaultProxy],
) -> None:
    registry, proxy = target
    network = replace(QUICK_RETRIES, upload_chunk_bytes=256)  # our own preference: far below the minimum
    proxy.faults += [
        Fault(r"^POST /v2/.*/blobs/uploads/", kind="headers", response_headers={"oci-chunk-min-length": "1024"},
              times=ALWAYS),
        Fault(PATCH, status=416, body_under=1024, times=ALWAYS),  # a registry that enforces its minimum
    ]
    res = run_command(capsys, "import", synth_small, small_bundle, proxy.host, "arc", network=network)
    assert res.code == 0, res.err
    proxy.wait_idle()
    assert proxy.faults[1].hits == 0, "a PATCH below OCI-Chunk-Min-Length was sent"
    patches = proxy.matching(PATCH)
    assert patches and all(r.request_bytes == 1024 for r in patches)  # the app layers and the base took some
    assert_identical(registry, synth_small, "arc")


@pytest.mark.parametrize("command", ["import", "mirror"])
def test_a_registry_that_refuses_large_requests_gets_smaller_chunks(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, medium_bundle: Path,
    target: tuple[Registry, FaultProxy], command: str,
) -> None:
    registry, proxy = target
    limit = MiB  # GHCR's is 4 MiB; the medium set's layers are 1-3 MiB
    proxy.faults.append(Fault(r"^(PUT|PATCH) /v2/.*/blobs/uploads/", status=413, body_over=limit, times=ALWAYS))
    res = move_medium(capsys, command, synth_medium, medium_bundle, proxy.host)
    assert res.code == 0, res.err
    proxy.wait_idle()
    refused = proxy.faults[0].hits
    assert 1 <= refused <= 8, refused  # learnt once for the client, not once per blob
    uploads = [r for r in proxy.matching(r"^(PUT|PATCH) /v2/.*/blobs/uploads/") if r.fault is None]
    assert uploads and max(r.request_bytes for r in uploads) <= limit
    assert any(r.line.startswith("PATCH") for r in uploads)
    assert sum(r.request_bytes for r in uploads) == json.loads(res.out)["uploaded_bytes"]  # no byte sent twice
    assert_medium_identical(registry, synth_medium)


@pytest.mark.parametrize("status", [405, 501])
@pytest.mark.parametrize("command", ["import", "mirror"])
def test_a_registry_without_chunked_upload_gets_one_put_per_blob(
    capsys: pytest.CaptureFixture[str], synth_medium: MediumSet, medium_bundle: Path,
    target: tuple[Registry, FaultProxy], command: str, status: int,
) -> None:
    registry, proxy = target
    network = replace(QUICK_RETRIES, upload_chunk_bytes=512 * 1024)  # 1-3 MiB layers would take PATCHes
    proxy.faults.append(Fault(PATCH, status=status, times=ALWAYS))
    res = move_medium(capsys, command, synth_medium, medium_bundle, proxy.host, network=network)
    assert res.code == 0, res.err
    proxy.wait_idle()
    assert 1 <= proxy.count(PATCH) <= 4  # the uploads already under way when the first refusal came
    commits = proxy.matching(BLOB_COMMIT)
    assert all("content-length" in r.headers and "transfer-encoding" not in r.headers for r in commits)
    assert max(r.request_bytes for r in commits) >= 3 * MiB  # the base layer in one request
    assert sum(r.request_bytes for r in commits) == json.loads(res.out)["uploaded_bytes"]
    assert_medium_identical(registry, synth_medium)
