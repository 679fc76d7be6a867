"""How many requests referrer discovery costs (issue 16 item 5), counted by a proxy in front of a real
distribution registry: one tag list per repository and one API probe per registry, not a HEAD per fallback and
cosign tag per manifest; a registry that refuses the tag list is asked tag by tag and finds the same referrers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from arcgap.oci.digest import Digest
from arcgap.oci.reference import Reference
from arcgap.registry.client import RegistryClient
from arcgap.registry.referrers import COSIGN_SUFFIXES, fallback_tag
from arcgap.registry.resolve import Wanted, resolve_all
from arcgap.registry.transport import TLSOptions
from arcgap.transfer.referrers import ReferrerOptions, discover_for_images
from devtools.faultproxy import Fault, FaultProxy
from devtools.images import Pusher, push_artifact, push_image, push_index
from devtools.layers import make_layer
from devtools.registries import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SBOM = "application/spdx+json"
FALLBACK_HEAD = r"^HEAD /v2/\S+/manifests/sha256-"


@pytest.fixture(scope="module")
def release(plain_registry: Registry) -> list[tuple[str, str]]:
    """Four images in four repositories (the last an index of two platforms: six manifests); the first has an
    SBOM behind its fallback tag and a legacy cosign ``.sig``. Returns (repository, tag) of each."""
    repos = [f"refcount/app-{n}" for n in range(4)]
    with Pusher(plain_registry) as p:
        first = None
        for n, repo in enumerate(repos[:3]):
            info = push_image(p, repo, "v1", layers=[make_layer(f"refcount:{n}", 512)], flavor="oci")
            first = first or info
        kids = [push_image(p, repos[3], None, layers=[make_layer(f"refcount:idx:{a}", 512)], flavor="oci",
                           arch=a) for a in ("amd64", "arm64")]
        push_index(p, repos[3], "v1", kids, flavor="oci")
        assert first is not None
        subject = (first.digest, len(first.manifest), first.media_type)
        sbom, sbom_raw = push_artifact(p, repos[0], subject, SBOM, b"sbom")
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sbom, "size": len(sbom_raw), "artifactType": SBOM}]}
        p.push_manifest(repos[0], fallback_tag(Digest.parse(first.digest)), json.dumps(index).encode(), OCI_INDEX)
        _, legacy_raw = push_artifact(p, repos[0], None, SBOM, b"legacy signature")
        p.push_manifest(repos[0], fallback_tag(Digest.parse(first.digest)) + ".sig", legacy_raw, OCI_MANIFEST)
    return [(repo, "v1") for repo in repos]


@pytest.fixture
def proxy(plain_registry: Registry) -> Iterator[FaultProxy]:
    front = FaultProxy(plain_registry.host)
    try:
        yield front
    finally:
        front.stop()


def _discover(proxy: FaultProxy, release: list[tuple[str, str]]) -> tuple[dict[str, set[tuple[str, str]]], int]:
    """Discovery of the release through ``proxy``; (found_by, kind) per image, and the requests sent before it."""
    client = RegistryClient(proxy.host, tls=TLSOptions(plain_http=True))
    wanted = [Wanted(repo, Reference(proxy.host, repo, tag, None)) for repo, tag in release]
    resolved = resolve_all(lambda _: client, wanted, jobs=4)
    proxy.wait_idle()
    before = len(proxy.seen)
    found = discover_for_images(lambda _: client, resolved, ReferrerOptions(), jobs=4)
    proxy.wait_idle()
    client.close()
    return {name: {(r.found_by, r.tag or r.artifact_type) for r in d.referrers} for name, d in found.items()}, before


def _count(proxy: FaultProxy, pattern: str, after: int) -> int:
    return sum(1 for line in proxy.seen[after:] if re.search(pattern, line))


def test_one_tag_list_per_repository_and_one_api_probe(proxy: FaultProxy, release: list[tuple[str, str]]) -> None:
    got, start = _discover(proxy, release)
    legacy_tag = next(t for _, t in got["refcount/app-0:v1"] if t.endswith(".sig"))
    assert got == {"refcount/app-0:v1": {("fallback", SBOM), ("tag", legacy_tag)},
                   **{f"refcount/app-{n}:v1": set() for n in (1, 2, 3)}}
    assert _count(proxy, r"^GET /v2/\S+/referrers/", start) == 1  # the probe: distribution has no API
    assert _count(proxy, r"^GET /v2/\S+/tags/list", start) == len(release)
    assert _count(proxy, FALLBACK_HEAD, start) == 0
    # Only the two tags that exist are fetched (the fallback index and the .sig), and the SBOM by digest.
    assert _count(proxy, r"^GET /v2/\S+/manifests/sha256-", start) == 2
    assert _count(proxy, r"^GET /v2/\S+/manifests/sha256:", start) == 1
    assert len(proxy.seen) - start == 1 + len(release) + 3


@pytest.mark.parametrize("status", [403, 404])
def test_a_refused_tag_list_is_asked_tag_by_tag(proxy: FaultProxy, release: list[tuple[str, str]],
                                                status: int) -> None:
    proxy.faults.append(Fault(r"^GET /v2/\S+/tags/list", status=status, times=10**9))
    got, start = _discover(proxy, release)
    legacy_tag = next(t for _, t in got["refcount/app-0:v1"] if t.endswith(".sig"))
    assert got == {"refcount/app-0:v1": {("fallback", SBOM), ("tag", legacy_tag)},
                   **{f"refcount/app-{n}:v1": set() for n in (1, 2, 3)}}
    # Six image manifests and the two referrers found, each asked for its fallback tag and the cosign tags.
    assert _count(proxy, FALLBACK_HEAD, start) == 8 * (1 + len(COSIGN_SUFFIXES))
    assert _count(proxy, r"^GET /v2/\S+/tags/list", start) == len(release)
