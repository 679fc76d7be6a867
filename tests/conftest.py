"""Shared fixtures: real distribution registries, fresh empty ones on demand, and small synthetic image sets.

Session-scoped (started once, shared; push to unique repositories):

- ``test_ca`` -- the test CA (:class:`devtools.pki.CA`) every TLS registry's certificate comes from.
- ``plain_registry`` -- HTTP, no auth.
- ``tls_registry`` -- HTTPS (test CA) + htpasswd (``arcuser`` / ``arc-secret-pass``).
- ``token_registry`` -- HTTPS (test CA) + Bearer tokens; anonymous pull, authenticated push;
  ``token_registry.token_server.requests_served`` counts /token requests.
- ``synth_small`` / ``synth_small_token`` -- :class:`devtools.synth.SmallSet` pushed into ``plain_registry``
  / ``token_registry`` (roles: docker, oci, index_docker, index_oci, indented).

Function-scoped:

- ``fresh_registry`` -- factory ``fresh_registry(tls=False, auth="none", netns=None) -> Registry`` for
  empty targets; all stopped at the end of the test. ``netns=True`` puts it in a namespace of its own
  (``registry.netns``; skips when namespaces are unusable); ``netns="name"`` in an existing one.
- ``netns`` -- a new network namespace with only loopback up (skips when namespaces are unusable).

Tests using any of these get the ``services`` marker automatically (``-m "not services"`` deselects them).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the project root on sys.path
    sys.path.insert(0, str(ROOT))

from devtools.netns import netns_usable, network_namespace  # noqa: E402
from devtools.pki import CA, make_ca  # noqa: E402
from devtools.registries import AuthMode, Registry, start_registry  # noqa: E402
from devtools.synth import SmallSet, push_small_set  # noqa: E402

REQUIRED_TOOLS = ("docker-registry", "skopeo", "htpasswd")
SERVICE_FIXTURES = frozenset(
    {
        "plain_registry",
        "tls_registry",
        "token_registry",
        "fresh_registry",
        "synth_small",
        "synth_small_token",
        "netns",
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
def netns() -> Iterator[str]:
    usable, reason = netns_usable()
    if not usable:
        pytest.skip(reason)
    with network_namespace() as name:
        yield name


@pytest.fixture(scope="session")
def synth_small(plain_registry: Registry) -> SmallSet:
    return push_small_set(plain_registry)


@pytest.fixture(scope="session")
def synth_small_token(token_registry: Registry) -> SmallSet:
    return push_small_set(token_registry)
