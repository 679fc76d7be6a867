"""How many requests referrer discovery costs (issue 16 item 5), counted by a proxy in front of a real
distribution registry: one tag list per repository and one API probe per registry, not a HEAD per fallback and
cosign tag per manifest; a registry that refuses the tag list is asked tag by tag (one GET a tag), finds the
same referrers, and is not asked for the list of its other repositories; preflight GETs a fallback tag once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from arcgap.errors import ArcgapError
from arcgap.oci.digest import Digest
from arcgap.oci.reference import Reference
from arcgap.registry.client import RegistryClient
from arcgap.registry.referrers import COSIGN_SUFFIXES, fallback_tag
from arcgap.registry.resolve import Wanted, resolve_all
from arcgap.registry.transport import TLSOptions
from arcgap.transfer.preflight import Expected, ExpectedReferrer, preflight
from arcgap.transfer.referrers import ReferrerOptions, TagListPrefetch, _TagLists, discover_for_images
from arcgap.util.parallel import each
from devtools.faultproxy import Fault, FaultProxy
from devtools.images import Pusher, push_artifact, push_image, push_index
from devtools.layers import make_layer
from devtools.registries import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SBOM = "application/spdx+json"
FALLBACK_HEAD = r"^HEAD /v2/\S+/manifests/sha256-"
FALLBACK_GET = r"^GET /v2/\S+/manifests/sha256-"


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


def test_the_api_is_probed_during_the_resolve_and_not_again(proxy: FaultProxy,
                                                             release: list[tuple[str, str]]) -> None:
    """The first image resolved asks the referrers API while the others are still resolving; discovery then
    starts knowing the answer (distribution has no API) and asks no image first."""
    client = RegistryClient(proxy.host, tls=TLSOptions(plain_http=True))
    wanted = [Wanted(repo, Reference(proxy.host, repo, tag, None)) for repo, tag in release]
    options = ReferrerOptions()
    with TagListPrefetch(lambda _: client, wanted, options, jobs=4) as prefetch:
        resolved = resolve_all(lambda _: client, wanted, jobs=4, on_each=prefetch.probe)
        assert prefetch.has_api(proxy.host) is False
        proxy.wait_idle()
        before = len(proxy.seen)
        found = discover_for_images(lambda _: client, resolved, options, jobs=4, prefetch=prefetch)
    proxy.wait_idle()
    client.close()
    assert _count(proxy, r"^GET /v2/\S+/referrers/", 0) == 1  # the probe, asked before discovery began
    assert _count(proxy, r"^GET /v2/\S+/referrers/", before) == 0
    assert {("fallback", SBOM)} < {(r.found_by, r.tag or r.artifact_type) for r in found["refcount/app-0:v1"].referrers}
    assert all(d.has_api is False for d in found.values())


def test_a_probe_that_fails_stops_discovery_with_its_error(proxy: FaultProxy, release: list[tuple[str, str]]) -> None:
    """The probe's failure is not swallowed on its thread (it may have spent the client's retry budget): the run
    stops with it, as it stopped when discovery's own probe failed. Discovery raises it, or the resolve does
    when the refusal (a 403 is remembered for the repository's scope) meets a request still resolving there."""
    proxy.faults.append(Fault(r"^GET /v2/\S+/referrers/", status=403, times=10**9))
    client = RegistryClient(proxy.host, tls=TLSOptions(plain_http=True))
    wanted = [Wanted(repo, Reference(proxy.host, repo, tag, None)) for repo, tag in release]
    options = ReferrerOptions()
    with (TagListPrefetch(lambda _: client, wanted, options, jobs=4) as prefetch,
          pytest.raises(ArcgapError, match=r"listing referrers .*: 403")):
        resolved = resolve_all(lambda _: client, wanted, jobs=4, on_each=prefetch.probe)
        discover_for_images(lambda _: client, resolved, options, jobs=4, prefetch=prefetch)
    client.close()
    assert _count(proxy, r"^GET /v2/\S+/referrers/", 0) == 1  # asked once, by the probe


@pytest.mark.parametrize("status", [403, 404])
def test_a_refused_tag_list_is_asked_tag_by_tag(proxy: FaultProxy, release: list[tuple[str, str]],
                                                status: int) -> None:
    proxy.faults.append(Fault(r"^GET /v2/\S+/tags/list", status=status, times=10**9))
    got, start = _discover(proxy, release)
    legacy_tag = next(t for _, t in got["refcount/app-0:v1"] if t.endswith(".sig"))
    assert got == {"refcount/app-0:v1": {("fallback", SBOM), ("tag", legacy_tag)},
                   **{f"refcount/app-{n}:v1": set() for n in (1, 2, 3)}}
    # The refusal is remembered for the registry: its other repositories do not ask for a list again.
    assert _count(proxy, r"^GET /v2/\S+/tags/list", start) == 1
    # Six image manifests and the two referrers found, each asked for its fallback tag and the cosign tags, with
    # one GET each (a 404 says a tag is absent as well as a HEAD would, and an existing tag needs no second
    # request), and the SBOM by digest.
    assert _count(proxy, FALLBACK_HEAD, start) == 0
    assert _count(proxy, FALLBACK_GET, start) == 8 * (1 + len(COSIGN_SUFFIXES))
    assert _count(proxy, r"^GET /v2/\S+/manifests/sha256:", start) == 1
    assert len(proxy.seen) - start == 1 + 1 + 8 * (1 + len(COSIGN_SUFFIXES)) + 1


def test_preflight_asks_a_fallback_tag_with_one_get(plain_registry: Registry, proxy: FaultProxy,
                                                   release: list[tuple[str, str]]) -> None:
    """The image's tag, each referrer by digest (or under its cosign tag), one API probe, and the subject's
    fallback index with a single GET: no HEAD before it."""
    repo = release[0][0]
    with RegistryClient(plain_registry.host, tls=TLSOptions(plain_http=True)) as direct:
        subject = direct.head_manifest(repo, "v1")
        assert subject is not None
        index = json.loads(direct.get_manifest(repo, fallback_tag(subject)).raw)
        sbom = Digest.parse(index["manifests"][0]["digest"])
        sig_tag = fallback_tag(subject) + ".sig"
        sig = direct.head_manifest(repo, sig_tag)
        assert sig is not None
    expected = Expected(repo, repo, "v1", subject, referrers=(
        ExpectedReferrer(subject, sbom, SBOM), ExpectedReferrer(subject, sig, "tag:sig", sig_tag)))
    client = RegistryClient(proxy.host, tls=TLSOptions(plain_http=True))
    try:
        client.ping()
        proxy.wait_idle()
        start = len(proxy.seen)
        result = preflight(client, [expected], repository=repo, jobs=1)
    finally:
        client.close()
    proxy.wait_idle()
    assert [(c.status, c.referrers_missing) for c in result.checks] == [("ok", ())]
    fallback = r"/v2/\S+/manifests/sha256-[0-9a-f]{64}$"  # the fallback tag itself, not the cosign tags beside it
    assert _count(proxy, "^HEAD " + fallback, start) == 0
    assert _count(proxy, "^GET " + fallback, start) == 1
    # HEAD v1, HEAD the SBOM by digest, GET referrers (the probe: no API), GET the fallback index, HEAD the .sig
    assert len(proxy.seen) - start == 5, proxy.seen[start:]


def test_a_registry_that_refused_a_tag_list_is_not_asked_for_another(plain_registry: Registry) -> None:
    """Remembered per registry, under --jobs threads: however many repositories, one refused list, and a
    registry that lists tags is still asked for each of its repositories."""
    refusing, listing = FaultProxy(plain_registry.host), FaultProxy(plain_registry.host)
    refusing.faults.append(Fault(r"^GET /v2/\S+/tags/list", status=401, times=10**9))
    clients = {p.host: RegistryClient(p.host, tls=TLSOptions(plain_http=True)) for p in (refusing, listing)}
    try:
        lists = _TagLists(clients.__getitem__)
        repos = [f"refcount/app-{n}" for n in range(4)] * 3
        keys = [(h, r) for h in clients for r in repos]
        got = each(lambda key: lists.get(*key), keys, jobs=4)
        assert all(g is None for (h, _), g in zip(keys, got) if h == refusing.host)
        assert all(g is not None and "v1" in g for (h, _), g in zip(keys, got) if h == listing.host)
        for p in (refusing, listing):
            p.wait_idle()
        asked = [{line for line in p.seen if re.search(r"^GET /v2/\S+/tags/list", line)} for p in (refusing, listing)]
        assert len(asked[0]) == 1  # one repository's list (a 401 gets its one re-authentication)
        assert len(asked[1]) == 4 == _count(listing, r"^GET /v2/\S+/tags/list", 0)  # each repository once
    finally:
        for c in clients.values():
            c.close()
        refusing.stop()
        listing.stop()
