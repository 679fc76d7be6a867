"""A release's image set from the source itself, against a real registry (CNCF distribution 2.8): the catalog
with its pagination (real ``Link`` headers, a page size the registry refuses, pages that repeat), a catalog
refused (404/403 through the fault proxy), an image under the prefix without the tag, the difference from a
shipped list shown before any download, the default tag that follows the source (and falls back to the newest
shipped list, with a warning, when the source cannot be asked), and ``arcgap releases --release TAG --sizes``."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from arcgap.arc.discover import discover_release
from arcgap.arc.imagelist import default_release_tag, load_shipped_release
from arcgap.bundle.reader import open_bundle
from arcgap.commands.options import RunContext, Selection, SourceOptions
from arcgap.commands.transfer import collect_source, newest_for_prompt
from arcgap.errors import RegistryError
from arcgap.registry.client import RegistryClient
from arcgap.registry.transport import TLSOptions
from devtools.faultproxy import Fault, FaultProxy
from devtools.pki import CA
from devtools.procs import free_port
from devtools.registries import Registry, start_registry
from devtools.synth import generate_release
from tests.conftest import require_tools
from tests.e2e_helpers import arcgap, isolate_env, source_args

pytestmark = pytest.mark.services

SHIPPED = default_release_tag()  # the newest shipped list (v1.29.0_2024-04-09 when this was written)
NEWER = "v1.90.0_2030-01-08"  # newer than any shipped list: the source's newest
SIZES = {"base_layer_bytes": 2048, "app_layer_bytes": 512, "multiarch_names": ()}
SHIPPED_NAMES = [e.name for e in load_shipped_release(SHIPPED).images]
GONE = "arc-dns"  # in the shipped list, not at the source at SHIPPED
ADDED = "arc-new-thing"  # at the source at SHIPPED, not in the shipped list
ONLY_OLD = "arc-retired"  # under arcdata/ but only at an older tag: never part of SHIPPED or NEWER
AT_NEWER = ["arc-controller", "arc-bootstrapper", "arc-sqlmi"]
NESTED = ("test", "preview")  # arcdata/test/…, arcdata/preview/…: not the release's images


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, test_ca: CA) -> Iterator[Registry]:
    require_tools()
    with start_registry(tmp_path_factory.mktemp("discovery-source")) as reg:
        at_shipped = [n for n in SHIPPED_NAMES if n != GONE] + [ADDED]
        generate_release(reg, tag=SHIPPED, names=at_shipped, **SIZES)
        generate_release(reg, tag=NEWER, names=AT_NEWER, seed=1, **SIZES)
        generate_release(reg, tag="v1.1.0_2020-01-01", names=[ONLY_OLD], seed=2, **SIZES)
        generate_release(reg, repository="other", tag=NEWER, names=["arc-controller"], seed=3, **SIZES)
        generate_release(reg, repository="arcdata-mirror", tag=NEWER, names=["arc-lookalike"], seed=4, **SIZES)
        # MCR: pre-release images under the release's own repository, with the release's tag
        for seed, nest in enumerate(NESTED, start=5):
            generate_release(reg, repository=f"arcdata/{nest}", tag=NEWER, names=["arc-controller", "arc-sqlmi"],
                             seed=seed, **SIZES)
        yield reg


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


def client(host: str) -> RegistryClient:
    return RegistryClient(host, credentials=None, tls=TLSOptions(plain_http=True))


def proxied(proxy: FaultProxy | str) -> list[str]:
    host = proxy if isinstance(proxy, str) else proxy.host
    return ["--source-registry", host, "--source-plain-http"]


def everything(reg: Registry) -> list[str]:
    return sorted(["arcdata/" + n for n in [*SHIPPED_NAMES, ADDED, ONLY_OLD] if n != GONE]
                  + ["other/arc-controller", "arcdata-mirror/arc-lookalike"]
                  + [f"arcdata/{nest}/{n}" for nest in NESTED for n in ("arc-controller", "arc-sqlmi")])


def test_catalog_pages_follow_the_link_header(source: Registry) -> None:
    proxy = FaultProxy(source.host)
    try:
        with client(proxy.host) as c:
            assert sorted(c.list_catalog(page_size=4)) == everything(source)
        proxy.wait_idle()
        pages = proxy.matching(r"^GET /v2/_catalog")
        assert len(pages) == -(-len(everything(source)) // 4)  # one request a page: Link followed to the end
        assert all("n=4" in p.line for p in pages) and sum("last=" in p.line for p in pages) == len(pages) - 1
    finally:
        proxy.stop()


def test_a_page_size_the_registry_refuses_is_asked_again_without_it(source: Registry) -> None:
    proxy = FaultProxy(source.host)
    try:
        with client(proxy.host) as c:  # distribution 2.8 answers 400 PAGINATION_NUMBER_INVALID above 1000
            assert sorted(c.list_catalog(page_size=10000)) == everything(source)
        proxy.wait_idle()
        assert [p.line.split(" ")[1] for p in proxy.matching(r"^GET /v2/_catalog")][:2] == \
            ["/v2/_catalog?n=10000", "/v2/_catalog"]
    finally:
        proxy.stop()


class _ForgetLast(BaseHTTPRequestHandler):
    """In front of the real registry, drops ``last`` from every catalog request: a registry that ignores it
    and serves its first page again, with a Link to the next, forever."""

    upstream = ""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?")[0] + "?n=2" if self.path.startswith("/v2/_catalog") else self.path
        conn = http.client.HTTPConnection(self.upstream, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            self.send_response(resp.status)
            for name, value in resp.getheaders():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            conn.close()


def test_pages_that_repeat_are_an_error_not_a_short_catalog(source: Registry) -> None:
    handler = type("Handler", (_ForgetLast,), {"upstream": source.host})
    server = ThreadingHTTPServer(("127.0.0.1", free_port("127.0.0.1")), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with client(f"127.0.0.1:{server.server_address[1]}") as c, \
                pytest.raises(RegistryError, match="repeats earlier pages"):
            c.list_catalog(page_size=2)
    finally:
        server.shutdown()
        server.server_close()


def test_discovery_keeps_the_repositories_that_carry_the_tag(source: Registry) -> None:
    with client(source.host) as c:
        found = discover_release(c, repository="arcdata", tag=NEWER, jobs=4)
    assert found.answered and sorted(found.images) == sorted(AT_NEWER)
    assert ONLY_OLD in found.untagged and GONE not in found.untagged  # exists without the tag / not at all
    assert "arc-lookalike" not in found.images + found.untagged  # arcdata-mirror/ is not under arcdata/


class _ClampedTags(BaseHTTPRequestHandler):
    """A registry that pages tag lists at 3 whatever ``n`` asks (distribution 3.1 does so at 1000), with
    ``Link: </v2/r/tags/list?last=…&n=3>; rel="next"`` while more follow."""

    TAGS = [f"v{i}" for i in range(8)]
    asked: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        from urllib.parse import parse_qs, urlsplit

        type(self).asked.append(self.path)
        url = urlsplit(self.path)
        body, link = b"{}", ""
        if url.path == "/v2/r/tags/list":
            last = parse_qs(url.query).get("last", [""])[0]
            rest = [t for t in self.TAGS if t > last]
            page = rest[:3]
            body = json.dumps({"name": "r", "tags": page}).encode()
            if len(rest) > 3:
                link = f'</v2/r/tags/list?last={page[-1]}&n=3>; rel="next"'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if link:
            self.send_header("Link", link)
        self.end_headers()
        self.wfile.write(body)


def test_tag_pages_follow_the_link_header_when_the_server_clamps_the_page_size() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ClampedTags)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with client(f"127.0.0.1:{server.server_address[1]}") as c:
            assert c.list_tags("r", page_size=1000) == _ClampedTags.TAGS
    finally:
        server.shutdown()
        server.server_close()
    pages = [p for p in _ClampedTags.asked if "/tags/list" in p]
    assert pages == ["/v2/r/tags/list?n=1000", "/v2/r/tags/list?last=v2&n=3", "/v2/r/tags/list?last=v5&n=3"]


def test_discovery_takes_direct_children_only(source: Registry) -> None:
    """arcdata/test/arc-controller and arcdata/preview/arc-controller carry the release's tag (MCR publishes
    pre-release images there 14 and 7 days before a release): they are not the release's images."""
    with client(source.host) as c:
        assert any(r.startswith("arcdata/test/") for r in c.list_catalog())  # the catalog does list them
        found = discover_release(c, repository="arcdata", tag=NEWER, jobs=4)
    assert sorted(found.images) == sorted(AT_NEWER)
    assert not any("/" in n for n in found.images + found.untagged)


@pytest.mark.parametrize("status", [404, 403])
def test_a_refused_catalog_leaves_the_shipped_list(source: Registry, status: int) -> None:
    proxy = FaultProxy(source.host, faults=[Fault(r"^GET /v2/_catalog", status=status, times=10**9)])
    try:
        with client(proxy.host) as c:
            found = discover_release(c, repository="arcdata", tag=SHIPPED, jobs=4)
        assert not found.answered and found.images == () and str(status) in (found.refused or "")
    finally:
        proxy.stop()


def test_export_shows_the_difference_from_the_shipped_list_and_takes_the_source(
    capsys: pytest.CaptureFixture[str], source: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "shipped.tar.zst"
    res = arcgap(capsys, "export", "--release", SHIPPED, *source_args(source), "-o", str(out), "--json", "-q")
    assert res.code == 0, res.err
    assert f"warning: the source differs from the shipped list of {SHIPPED}: 1 added ({ADDED}); " \
           f"1 gone ({GONE})" in res.err
    with open_bundle(out) as reader:
        names = {i.name for i in reader.toc.images}
    assert names == (set(SHIPPED_NAMES) - {GONE}) | {ADDED}


def test_without_a_catalog_the_shipped_list_names_what_is_missing(
    capsys: pytest.CaptureFixture[str], source: Registry, tmp_path: Path
) -> None:
    proxy = FaultProxy(source.host, faults=[Fault(r"^GET /v2/_catalog", status=404, times=10**9)])
    try:
        res = arcgap(capsys, "export", "--release", SHIPPED, *proxied(proxy), "-o", str(tmp_path / "x.tar.zst"),
                     "-q")
    finally:
        proxy.stop()
    assert res.code == 4, res.err
    assert res.error_lines[0] == f"error: image {proxy.host}/arcdata/{GONE}:{SHIPPED} not found at the source"


def test_releases_shows_a_release_its_images_and_sizes(capsys: pytest.CaptureFixture[str], source: Registry) -> None:
    res = arcgap(capsys, "releases", "--release", NEWER, "--sizes", *source_args(source), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["catalog"] is True and sorted(doc["images"]) == sorted(AT_NEWER)
    assert ONLY_OLD in doc["untagged"]
    sizes = {s["name"]: s["bytes"] for s in doc["sizes"]}
    assert set(sizes) == set(AT_NEWER) and all(b > 0 for b in sizes.values())
    assert max(sizes.values()) < doc["total_bytes"] < sum(sizes.values())  # the shared base layer counted once
    human = arcgap(capsys, "releases", "--release", SHIPPED, *source_args(source))
    assert human.code == 0, human.err
    assert f"1 added ({ADDED}); 1 gone ({GONE})" in human.out


def test_the_default_tag_follows_the_source(
    capsys: pytest.CaptureFixture[str], source: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "default.tar.zst"
    res = arcgap(capsys, "export", *source_args(source), "-o", str(out), "--json", "-q")
    assert res.code == 0, res.err
    assert sorted(json.loads(res.out)["image_digests"]) == sorted(
        f"{source.host}/arcdata/{n}:{NEWER}" for n in AT_NEWER)


def test_the_prompt_offers_the_newest_release_at_the_source(source: Registry) -> None:
    asked: list[tuple[str, str | None]] = []

    def prompt(label: str, default: str | None) -> str:
        asked.append((label, default))
        return ""  # Enter: the default

    choice = collect_source(
        SourceOptions(registry=source.host, plain_http=True), Selection(), RunContext(prompt=prompt, environ={}),
        newest=newest_for_prompt(ca_file=None, insecure=False, environ={}, warn=lambda _t: None))
    assert asked[-1] == ("source tag", NEWER)
    assert choice.endpoint.tag == NEWER


def test_an_unreachable_source_falls_back_to_the_newest_shipped_list_with_a_warning(
    capsys: pytest.CaptureFixture[str], source: Registry, tmp_path: Path
) -> None:
    # The reference image's tags list cannot be read: the newest release cannot be asked.
    proxy = FaultProxy(source.host, faults=[Fault(r"^GET /v2/arcdata/arc-controller/tags/list", status=404,
                                                  times=10**9)])
    try:
        out = tmp_path / "fallback.tar.zst"
        res = arcgap(capsys, "export", *proxied(proxy), "-o", str(out), "--skip-missing", "--json", "-q")
    finally:
        proxy.stop()
    assert res.code == 0, res.err
    assert f"using the newest shipped list, {SHIPPED}, which may be behind the source" in res.err
    assert all(ref.endswith(f":{SHIPPED}") for ref in json.loads(res.out)["image_digests"])
    # nothing listens: the prompt still gets a default, the newest shipped list's, and the warning names it
    warned: list[str] = []
    dead = f"127.0.0.1:{free_port('127.0.0.1')}"
    newest = newest_for_prompt(ca_file=None, insecure=False, environ={}, warn=warned.append)
    choice = collect_source(SourceOptions(registry=dead, plain_http=True), Selection(),
                            RunContext(prompt=lambda label, default: default or "", environ={}), newest=newest)
    assert choice.endpoint.tag == SHIPPED
    assert len(warned) == 1 and f"using the newest shipped list, {SHIPPED}" in warned[0]
