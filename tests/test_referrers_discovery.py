"""Referrer discovery (arcgap.registry.referrers, arcgap.transfer.referrers).

On a real distribution registry (no referrers API: the fallback tag ``sha256-<hex>``, legacy cosign tags, a
signature on an SBOM, a GitLab-like fallback tag that is the image itself), and the API path with ``Link`` pages
against a small server that serves the referrers API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from arcgap.oci.digest import Digest
from arcgap.registry.client import RegistryClient
from arcgap.registry.referrers import fallback_tag, list_referrers
from arcgap.registry.transport import TLSOptions
from arcgap.transfer.referrers import discover
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

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = self.path
        if path == "/v2/":
            return self._send(200, b"{}", "application/json")
        if "/referrers/" in path:
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
    handler = type("Api", (_Api,), {"pages": [], "manifests": {}})
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
