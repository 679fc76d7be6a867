"""Shared fixtures: real distribution registries, fresh empty ones on demand, and small synthetic image sets.

Session-scoped (started once, shared; push to unique repositories):

- ``test_ca`` -- the test CA (:class:`devtools.pki.CA`) every TLS registry's certificate comes from.
- ``plain_registry`` -- HTTP, no auth.
- ``tls_registry`` -- HTTPS (test CA) + htpasswd (``arcuser`` / ``arc-secret-pass``).
- ``token_registry`` -- HTTPS (test CA) + Bearer tokens; anonymous pull, authenticated push;
  ``token_registry.token_server.requests_served`` counts /token requests.
- ``synth_small`` / ``synth_small_token`` -- :class:`devtools.synth.SmallSet` pushed into ``plain_registry``
  / ``token_registry`` (roles: docker, oci, index_docker, index_oci, indented).
- ``dockerd`` -- a private Docker engine (:mod:`devtools.dockerd`: vfs, no bridge, no iptables, its own data root
  and socket; ``dockerd.host`` is its DOCKER_HOST); skips with the reason when dockerd is missing or cannot start.
- ``synth_medium`` -- :class:`MediumSet`: four images with incompressible layers (~11 MB of blobs, 1–3 MiB
  each, a shared base, one multi-arch index) in ``plain_registry`` under ``medium/``: a bundle with a middle,
  for interrupting and resuming.

Function-scoped:

- autouse: ``XDG_CACHE_HOME`` points into the test's own temporary directory, so every test starts with an
  empty blob cache and none touches ``~/.cache/arcgap`` (module- and session-scoped fixtures share one
  session-wide temporary cache).

- ``fresh_registry`` -- factory ``fresh_registry(tls=False, auth="none", netns=None) -> Registry`` for
  empty targets; all stopped at the end of the test. ``netns=True`` puts it in a namespace of its own
  (``registry.netns``; skips when namespaces are unusable); ``netns="name"`` in an existing one.
- ``netns`` -- a new network namespace with only loopback up (skips when namespaces are unusable).
- ``fresh_crane_registry`` -- factory ``fresh_crane_registry(disk=True) -> Registry``: go-containerregistry's
  ``crane registry serve`` (a second registry implementation; plain HTTP, no auth), stopped at the end of the
  test. Skips when crane is missing (``make crane`` builds it), unless ``ARCGAP_REQUIRE_CRANE=1`` (set by
  ``make test``), which makes a missing crane an error.

Tests using any of these get the ``services`` marker automatically (``-m "not services"`` deselects them).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the project root on sys.path
    sys.path.insert(0, str(ROOT))

from devtools.dockerd import Dockerd, dockerd_usable, start_dockerd  # noqa: E402
from devtools.netns import netns_usable, network_namespace  # noqa: E402
from devtools.pki import CA, make_ca  # noqa: E402
from devtools.registries import AuthMode, Registry, crane_binary, start_crane_registry, start_registry  # noqa: E402
from devtools.synth import ImageInfo, SmallSet, generate_release_infos, push_small_set  # noqa: E402

REQUIRED_TOOLS = ("docker-registry", "skopeo", "htpasswd")
SERVICE_FIXTURES = frozenset(
    {
        "plain_registry",
        "tls_registry",
        "token_registry",
        "fresh_registry",
        "synth_small",
        "synth_small_token",
        "synth_medium",
        "netns",
        "dockerd",
        "fresh_crane_registry",
    }
)

RegistryFactory = Callable[..., Registry]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def require_tools() -> None:
    """Skip (with the reason) when the registry, skopeo or htpasswd binaries are missing."""
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (apt-get install docker-registry skopeo apache2-utils)")


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return make_ca(tmp_path_factory.mktemp("pki"))


def _session_registry(
    tmp_path_factory: pytest.TempPathFactory, name: str, ca: CA, *, tls: bool, auth: AuthMode
) -> Iterator[Registry]:
    require_tools()
    with start_registry(tmp_path_factory.mktemp(name), tls=tls, auth=auth, ca=ca) as registry:
        yield registry


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory, test_ca: CA) -> Iterator[Registry]:
    yield from _session_registry(tmp_path_factory, "plain-registry", test_ca, tls=False, auth="none")


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, test_ca: CA) -> Iterator[Registry]:
    yield from _session_registry(tmp_path_factory, "tls-registry", test_ca, tls=True, auth="htpasswd")


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, test_ca: CA) -> Iterator[Registry]:
    yield from _session_registry(tmp_path_factory, "token-registry", test_ca, tls=True, auth="token")


@pytest.fixture
def fresh_registry(tmp_path: Path, test_ca: CA) -> Iterator[RegistryFactory]:
    require_tools()
    with ExitStack() as stack:
        count = 0

        def make(*, tls: bool = False, auth: AuthMode = "none", netns: str | bool | None = None) -> Registry:
            nonlocal count
            count += 1
            if netns is True:  # a namespace of its own, deleted after the registry stops
                usable, reason = netns_usable()
                if not usable:
                    pytest.skip(reason)
                netns = stack.enter_context(network_namespace())
            workdir = tmp_path / f"registry-{count}"
            ns = netns if isinstance(netns, str) else None
            return stack.enter_context(start_registry(workdir, tls=tls, auth=auth, netns=ns, ca=test_ca))

        yield make


@pytest.fixture
def fresh_crane_registry(tmp_path: Path) -> Iterator[RegistryFactory]:
    crane = crane_binary()
    if crane is None:
        if os.environ.get("ARCGAP_REQUIRE_CRANE") == "1":
            pytest.fail("crane is required (ARCGAP_REQUIRE_CRANE=1) but not found: run 'make crane'")
        pytest.skip("crane not found: 'make crane' builds it (scripts/build-crane.sh), or set ARCGAP_CRANE")
    with ExitStack() as stack:
        count = 0

        def make(*, disk: bool = True) -> Registry:
            nonlocal count
            count += 1
            workdir = tmp_path / f"crane-registry-{count}"
            return stack.enter_context(start_crane_registry(workdir, disk=disk, crane=crane))

        yield make


@pytest.fixture
def netns() -> Iterator[str]:
    usable, reason = netns_usable()
    if not usable:
        pytest.skip(reason)
    with network_namespace() as name:
        yield name


@pytest.fixture(scope="session")
def synth_small(plain_registry: Registry) -> SmallSet:
    return push_small_set(plain_registry)


@dataclass(frozen=True)
class MediumSet:
    registry: Registry
    repository: str  # "medium": images are medium/<name>:<tag>
    tag: str
    images: dict[str, ImageInfo]  # name -> top-level manifest

    @property
    def names(self) -> list[str]:
        return list(self.images)

    @property
    def layer_digests(self) -> set[str]:
        return {d for info in self.images.values() for i in (info, *info.children) for d in i.layer_digests}


@pytest.fixture(scope="session")
def synth_medium(plain_registry: Registry) -> MediumSet:
    names = ["arc-controller", "arc-dns", "arc-kafka", "arc-sqlmi"]
    infos = generate_release_infos(plain_registry, repository="medium", tag="v1", names=names,
                                   base_layer_bytes=3 << 20, app_layer_bytes=1 << 20, compressible=0.0)
    return MediumSet(plain_registry, "medium", "v1", infos)


@pytest.fixture(scope="session", autouse=True)
def _session_blob_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module- and session-scoped fixtures run before any test's own fixtures: they get a cache of their own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(autouse=True)
def _private_blob_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="session")
def synth_small_token(token_registry: Registry) -> SmallSet:
    return push_small_set(token_registry)


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A private Docker engine (vfs, no bridge, no iptables) for the whole session; skips with the reason when
    dockerd is missing or cannot start here."""
    usable, reason = dockerd_usable()
    if not usable:
        pytest.skip(reason)
    try:
        ctx = start_dockerd(tmp_path_factory.mktemp("dockerd"))
        engine = ctx.__enter__()
    except Exception as exc:  # StartupError, OSError: the reason is in the skip message
        pytest.skip(f"dockerd cannot start here: {str(exc)[:500]}")
    try:
        yield engine
    finally:
        ctx.__exit__(None, None, None)
