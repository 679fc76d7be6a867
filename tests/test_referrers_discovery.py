"""Referrer discovery (arcgap.registry.referrers, arcgap.transfer.referrers).

On a real distribution registry (no referrers API: the fallback tag ``sha256-<hex>``, legacy cosign tags, a
signature on an SBOM, a GitLab-like fallback tag that is the image itself), and the API path with ``Link`` pages
against a small server that serves the referrers API.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import parse_manifest
from arcgap.oci.reference import Reference
from arcgap.registry.client import FetchedManifest, RegistryClient
from arcgap.registry.referrers import fallback_tag, list_referrers
from arcgap.registry.resolve import PlatformManifest, ResolvedImage, Wanted
from arcgap.registry.transport import TLSOptions
from arcgap.transfer.referrers import ReferrerOptions, TagListPrefetch, _TagLists, discover, discover_for_images
from arcgap.util.parallel import lookup_jobs
from devtools.images import Pusher, push_artifact, push_image
from devtools.layers import make_layer
from devtools.registries import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = b"{}"
EMPTY_DESC = {"mediaType": "application/vnd.oci.empty.v1+json",
              "digest": str(Digest.of(EMPTY)), "size": 2}


def _index_of(entries: list[tuple[str, bytes, str]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": len(raw), "artifactType": kind}
        for d, raw, kind in entries]}).encode()


def _client(reg: Registry) -> RegistryClient:
    return RegistryClient(reg.host, tls=TLSOptions(plain_http=True))


def test_fallback_tags_cosign_tags_and_referrers_of_referrers(plain_registry: Registry) -> None:
    repo = "referrers/fallback"
    with Pusher(plain_registry) as p:
        img = push_image(p, repo, "v1", layers=[make_layer("ref:img", 1024)], flavor="oci")
        subj = (img.digest, len(img.manifest), img.media_type)
        sbom, sbom_raw = push_artifact(p, repo, subj, "application/spdx+json", b"sbom")
        sig, sig_raw = push_artifact(p, repo, (sbom, len(sbom_raw), OCI_MANIFEST), "application/vnd.dev.cosign", b"s")
        p.push_manifest(repo, fallback_tag(Digest.parse(img.digest)),
                        _index_of([(sbom, sbom_raw, "application/spdx+json")]), OCI_INDEX)
        p.push_manifest(repo, fallback_tag(Digest.parse(sbom)),
                        _index_of([(sig, sig_raw, "application/vnd.dev.cosign")]), OCI_INDEX)
        legacy, legacy_raw = push_artifact(p, repo, None, "application/vnd.dev.cosign.simplesigning.v1+json", b"old")
        p.push_manifest(repo, fallback_tag(Digest.parse(img.digest)) + ".sig", legacy_raw, OCI_MANIFEST)
    found = discover(_client(plain_registry), repo, [Digest.parse(img.digest)])
    assert found.has_api is False  # distribution has no referrers API
    got = {(str(r.manifest.digest), r.found_by, str(r.subject)) for r in found.referrers}
    assert got == {(sbom, "fallback", img.digest), (legacy, "tag", img.digest), (sig, "fallback", sbom)}
    assert found.counts() == {"application/spdx+json": 1, "tag:sig": 1, "application/vnd.dev.cosign": 1}
    assert str(Digest.of(b"sbom")) in {str(d) for d in found.blobs()}
    only = discover(_client(plain_registry), repo, [Digest.parse(img.digest)],
                    types=frozenset({"application/vnd.dev.cosign"}))
    assert {str(r.manifest.digest) for r in only.referrers} == {legacy}  # the SBOM dropped, its signature too


def test_a_fallback_tag_that_is_the_image_itself_is_not_trusted(plain_registry: Registry) -> None:
    repo = "referrers/gitlab"
    with Pusher(plain_registry) as p:
        child = push_image(p, repo, None, layers=[make_layer("ref:gl", 512)], flavor="oci")
        index = _index_of([(child.digest, child.manifest, "")])
        digest = Digest.of(index)
        p.push_manifest(repo, str(digest), index, OCI_INDEX)
        p.push_manifest(repo, fallback_tag(digest), index, OCI_INDEX)  # what GitLab answers
    refs, has_api = list_referrers(_client(plain_registry), repo, digest)
    assert refs == [] and has_api is False


class _Api(BaseHTTPRequestHandler):
    pages: list[bytes] = []
    subject = ""
    manifests: dict[str, bytes] = {}
    asked: list[str] = []  # the subjects whose referrers were listed, in order

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = self.path
        if path == "/v2/":
            return self._send(200, b"{}", "application/json")
        if "/referrers/" in path:
            self.asked.append(path.split("/referrers/")[1].split("?")[0])
            if path.split("/referrers/")[1].split("?")[0] != self.subject:
                return self._send(200, _index_of([]), OCI_INDEX)
            page = int(path.rsplit("page=", 1)[1]) if "page=" in path else 0
            link = {"Link": f'<{path.split("?")[0]}?page={page + 1}>; rel="next"'} if page + 1 < len(self.pages) else {}
            return self._send(200, self.pages[page], OCI_INDEX, link)
        ref = path.rsplit("/", 1)[1]
        if ref in self.manifests:
            return self._send(200, self.manifests[ref], OCI_MANIFEST, {"Docker-Content-Digest": ref})
        return self._send(404, b'{"errors":[]}', "application/json")

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(404, b"", "application/json")

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture
def api_server() -> Iterator[tuple[str, type[_Api]]]:
    handler = type("Api", (_Api,), {"pages": [], "manifests": {}, "asked": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_api_is_followed_across_link_pages(api_server: tuple[str, type[_Api]]) -> None:
    host, handler = api_server
    subject = Digest.of(b"image")
    made = []
    for i in range(3):
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": f"k/{i}",
                          "config": EMPTY_DESC, "layers": [],
                          "subject": {"mediaType": OCI_MANIFEST, "digest": str(subject), "size": 5}}).encode()
        handler.manifests[str(Digest.of(raw))] = raw
        made.append((str(Digest.of(raw)), raw, f"k/{i}"))
    handler.pages = [_index_of(made[:2]), _index_of(made[2:])]
    handler.subject = str(subject)
    found = discover(RegistryClient(host, tls=TLSOptions(plain_http=True)), "a/b", [subject])
    assert found.has_api is True
    assert [(str(r.manifest.digest), r.found_by) for r in found.referrers] == [(d, "api") for d, _, _ in made]


def test_an_api_entry_whose_subject_is_another_manifest_is_refused(api_server: tuple[str, type[_Api]]) -> None:
    from arcgap.errors import RegistryError
    host, handler = api_server
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY_DESC, "layers": [],
                      "subject": {"mediaType": OCI_MANIFEST, "digest": str(Digest.of(b"other")),
                                  "size": 5}}).encode()
    handler.manifests[str(Digest.of(raw))] = raw
    handler.pages = [_index_of([(str(Digest.of(raw)), raw, "")])]
    handler.subject = str(Digest.of(b"image"))
    with pytest.raises(RegistryError, match="subject is another manifest"):
        list_referrers(RegistryClient(host, tls=TLSOptions(plain_http=True)), "a/b", Digest.of(b"image"))


class _ListingClient:
    """Enough of a registry client for :class:`TagListPrefetch`: ``list_tags`` records and may wait."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.asked: list[str] = []
        self.gate = gate
        self.lock = threading.Lock()

    def list_tags(self, repository: str, ok: object = None) -> list[str]:
        with self.lock:
            self.asked.append(repository)
        if self.gate is not None:
            self.gate.wait(5)
        return [f"tag-of-{repository}"]


def _wanted(pairs: list[tuple[str, str]]) -> list[Wanted]:
    return [Wanted(repo, Reference(registry, repo, "v1")) for registry, repo in pairs]


def test_tag_lists_are_asked_beside_the_resolve_and_once() -> None:
    client = _ListingClient()
    repos = [("r.example", f"arc/app-{n}") for n in range(6)] + [("r.example", "arc/app-0")]
    prefetch = TagListPrefetch(lambda _r: client, _wanted(repos), ReferrerOptions(), jobs=4)  # type: ignore[arg-type,return-value]
    deadline = time.monotonic() + 5
    while len(client.asked) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(client.asked) == sorted(f"arc/app-{n}" for n in range(6))  # each once, unasked by anyone
    assert prefetch.lists.get("r.example", "arc/app-3") == frozenset({"tag-of-arc/app-3"})
    assert len(client.asked) == 6  # discovery found it answered
    prefetch.close()


@pytest.mark.parametrize(("options", "jobs"), [("off", 4), ("on", 1)])
def test_no_tag_list_beside_the_resolve_with_discovery_off_or_one_job(options: str, jobs: int) -> None:
    client = _ListingClient()
    prefetch = TagListPrefetch(lambda _r: client, _wanted([("r.example", "arc/a"), ("r.example", "arc/b")]),  # type: ignore[arg-type,return-value]
                               ReferrerOptions(enabled=options == "on"), jobs=jobs)
    time.sleep(0.2)
    assert client.asked == []
    prefetch.close()


def test_a_closed_prefetch_takes_no_new_repository() -> None:
    gate = threading.Event()
    client = _ListingClient(gate)
    repos = [("r.example", f"arc/app-{n}") for n in range(10)]
    prefetch = TagListPrefetch(lambda _r: client, _wanted(repos), ReferrerOptions(), jobs=2)  # type: ignore[arg-type,return-value]
    time.sleep(0.2)
    prefetch.close()  # the resolve failed: the run ends
    gate.set()
    time.sleep(0.2)
    # lookup_jobs(2) // 2 threads, each with the repository it had taken; none of the others is asked
    threads = lookup_jobs(2) // 2
    assert threads < len(repos)
    assert 1 <= len(client.asked) <= threads


class _SlowListingClient(_ListingClient):
    """Each tag list takes a while; records how many are being asked at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.peak = 0

    def list_tags(self, repository: str, ok: object = None) -> list[str]:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(0.1)
        with self.lock:
            self.now -= 1
        return super().list_tags(repository, ok)


def test_once_a_registry_lists_tags_the_waiting_repositories_are_asked_at_once() -> None:
    """The first repository of a registry is asked alone (its answer says whether the registry lists tags); the
    ones that waited for it are then asked side by side, not one after the other."""
    client = _SlowListingClient()
    tag_lists = _TagLists(lambda _r: client)  # type: ignore[arg-type,return-value]
    threads = [threading.Thread(target=tag_lists.get, args=("r.example", f"arc/app-{n}")) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(client.asked) == sorted(f"arc/app-{n}" for n in range(6))
    assert client.peak >= 2  # those that waited for the first answer, together (one at a time before)


def test_the_probe_s_api_answer_serves_its_image_s_discovery(api_server: tuple[str, type[_Api]]) -> None:
    """A registry with the API: the probe's listing for the first image resolved is used by that image's
    discovery, not asked for again; the other images ask for theirs."""
    host, handler = api_server
    images = []
    for n in range(3):
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY_DESC, "layers": [],
                          "annotations": {"n": str(n)}}).encode()
        top = FetchedManifest(raw, OCI_MANIFEST, Digest.of(raw))
        parsed = parse_manifest(raw, OCI_MANIFEST, what="image")
        wanted = Wanted(f"app-{n}", Reference(host, "a/b", "v1"))
        images.append(ResolvedImage(wanted, top, (PlatformManifest("linux/amd64", top, parsed),), {}))
    subject = images[0].top.digest
    sbom = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "k/sbom",
                       "config": EMPTY_DESC, "layers": [],
                       "subject": {"mediaType": OCI_MANIFEST, "digest": str(subject),
                                   "size": len(images[0].top.raw)}}).encode()
    handler.manifests[str(Digest.of(sbom))] = sbom
    handler.pages = [_index_of([(str(Digest.of(sbom)), sbom, "k/sbom")])]
    handler.subject = str(subject)
    client = RegistryClient(host, tls=TLSOptions(plain_http=True))
    options = ReferrerOptions()
    with TagListPrefetch(lambda _: client, [i.wanted for i in images], options, jobs=4) as prefetch:
        prefetch.probe(images[0])
        assert prefetch.has_api(host) is True
        found = discover_for_images(lambda _: client, images, options, jobs=4, prefetch=prefetch)
    client.close()
    assert [(str(r.manifest.digest), r.found_by) for r in found["app-0:v1"].referrers] == [
        (str(Digest.of(sbom)), "api")]
    assert all(d.has_api is True for d in found.values())
    assert handler.asked.count(str(subject)) == 1  # the probe's answer, used again
    # each image's top manifest once, and the SBOM found (referrers of referrers), once
    assert sorted(handler.asked) == sorted([*(str(i.top.digest) for i in images), str(Digest.of(sbom))])
