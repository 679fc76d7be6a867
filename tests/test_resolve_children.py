"""An index's children are resolved side by side (each child's manifest, then its config), in the index's order."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from arcgap.errors import RegistryError
from arcgap.oci.digest import Digest
from arcgap.oci.reference import parse_reference
from arcgap.registry.client import FetchedManifest
from arcgap.registry.resolve import Wanted, resolve_all, resolve_image
from arcgap.util.parallel import lookup_jobs

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
ARCHES = ("amd64", "arm64", "s390x")


def _desc(media_type: str, raw: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(Digest.of(raw)), "size": len(raw), **extra}


def _release() -> tuple[bytes, dict[str, bytes], dict[str, bytes]]:
    manifests: dict[str, bytes] = {}
    configs: dict[str, bytes] = {}
    children = []
    for arch in ARCHES:
        doc = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        config = json.dumps(doc).encode()
        layer = arch.encode() * 10
        child = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _desc(OCI_CONFIG, config),
                            "layers": [_desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)]}).encode()
        manifests[str(Digest.of(child))] = child
        configs[str(Digest.of(config))] = config
        children.append(_desc(OCI_MANIFEST, child, platform={"os": "linux", "architecture": arch}))
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    return index, manifests, configs


class Client:
    """``parties`` child manifests answer only once that many are asked for at once (a walk one by one would
    wait, and the barrier's timeout fails it); ``peak`` counts the child requests in flight at once."""

    def __init__(self, *, parties: int = len(ARCHES), fail: int | None = None, delay_s: float = 0.0) -> None:
        self.index, self.manifests, self.configs = _release()
        self.barrier = threading.Barrier(parties, timeout=5)
        self.fail = fail
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.now = self.peak = 0  # child manifest requests in flight
        self.requests_now = self.requests_peak = 0  # every request: child manifests and configs

    def _request(self, step: int) -> None:
        with self.lock:
            self.requests_now += step
            self.requests_peak = max(self.requests_peak, self.requests_now)

    def get_manifest(self, repository: str, ref: str, *, reuse: bool = False) -> FetchedManifest:
        if ref == "v1":
            return FetchedManifest(self.index, OCI_INDEX, Digest.of(self.index))
        self._request(1)
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        self.barrier.wait()
        time.sleep(self.delay_s)
        with self.lock:
            self.now -= 1
        self._request(-1)
        raw = self.manifests[ref]
        if self.fail is not None and ref == list(self.manifests)[self.fail]:
            raw += b" "  # not the bytes the index describes
        return FetchedManifest(raw, OCI_MANIFEST, Digest.of(raw))

    def stream_blob(self, repository: str, digest: Digest, size_bytes: int, *, what: str = "") -> Iterator[bytes]:
        self._request(1)
        time.sleep(self.delay_s)
        self._request(-1)
        yield self.configs[str(digest)]


WANTED = Wanted("multi", parse_reference("reg.example/arc/multi:v1"))


def test_the_children_of_an_index_are_asked_for_side_by_side_in_its_order() -> None:
    client = Client()
    image = resolve_image(client, WANTED, jobs=8)  # type: ignore[arg-type]
    assert client.peak == len(ARCHES)
    assert [p.platform for p in image.platforms] == [f"linux/{a}" for a in ARCHES]
    assert [p.manifest.raw for p in image.platforms] == list(client.manifests.values())
    assert sorted(image.configs) == sorted(Digest.parse(d) for d in client.configs)


def test_a_child_that_fails_its_check_stops_the_image() -> None:
    with pytest.raises(RegistryError, match="size differs from the index"):
        resolve_image(Client(fail=1), WANTED, jobs=8)  # type: ignore[arg-type]


def test_one_job_asks_for_one_child_at_a_time() -> None:
    client = Client(parties=1)  # --jobs 1: one request at a time, everywhere
    image = resolve_image(client, WANTED, jobs=1)  # type: ignore[arg-type]
    assert [p.platform for p in image.platforms] == [f"linux/{a}" for a in ARCHES]
    assert client.peak == 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_look_ups_in_flight_stay_within_lookup_jobs_children_included(jobs: int) -> None:
    """24 indexes of three platforms: their children add no requests beyond the resolve's bound (and with
    ``--jobs 1`` one request at a time)."""
    client = Client(parties=1, delay_s=0.01)
    wanted = [Wanted(f"multi-{n}", parse_reference(f"reg.example/arc/multi-{n}:v1")) for n in range(24)]
    images = resolve_all(lambda _registry: client, wanted, jobs=jobs)  # type: ignore[arg-type, return-value]
    assert [len(i.platforms) for i in images] == [len(ARCHES)] * 24
    assert client.requests_peak <= lookup_jobs(jobs)
    assert client.requests_peak == 1 if jobs == 1 else client.requests_peak > 1
