"""Image references (``registry/repo/name:tag@sha256:…``) parsed after the distribution reference grammar."""

from __future__ import annotations

import re
from dataclasses import dataclass

from arcgap.errors import UsageError
from arcgap.oci.digest import Digest

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_NAMES = frozenset({DOCKER_HUB, "index.docker.io", DOCKER_HUB_API})  # every name Docker Hub goes by


def api_host(registry: str) -> str:
    """Host to talk to: Docker Hub's API lives on registry-1.docker.io, under whichever of its names."""
    return DOCKER_HUB_API if registry.lower() in DOCKER_HUB_NAMES else registry

# distribution/reference grammar (reference/regexp.go), restricted to lower-case paths.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$"
)


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``registry`` is the host[:port] as written (``docker.io`` for Docker Hub)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def ref(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag (``latest`` if none)."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or "latest"

    def __str__(self) -> str:
        s = f"{self.registry}/{self.repository}"
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def validate_tag(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag):
        raise UsageError(
            f"invalid tag {tag!r}",
            hint="a tag is 1-128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'",
        )
    return tag


def validate_repository(repo: str) -> str:
    if not repo or len(repo) > 255 or not _REPO_RE.fullmatch(repo):
        raise UsageError(
            f"invalid repository name {repo!r}",
            hint="repository paths are lower-case components of letters, digits and . _ - separated by '/'",
        )
    return repo


def validate_registry(host: str) -> str:
    if not _HOST_RE.fullmatch(host):
        raise UsageError(
            f"invalid registry {host!r}", hint="give a host name or address with an optional :port, "
            "e.g. registry.example.com:5000 (no scheme, no path)"
        )
    return host


def _looks_like_host(component: str) -> bool:
    # Same rule as docker: the first component is a registry if it has '.', ':' or is 'localhost'.
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def parse_reference(text: str, *, default_registry: str = DOCKER_HUB) -> Reference:
    """Parse ``text``; a name without a registry component gets ``default_registry``.

    Docker Hub single-component names get the ``library/`` prefix, as docker does.
    """
    original = text
    if not text or text != text.strip():
        raise UsageError(f"invalid image reference {original!r}", hint="remove surrounding spaces")
    if "://" in text:
        raise UsageError(
            f"invalid image reference {original!r}: a reference has no scheme",
            hint="write host:port/repository:tag; use --*-plain-http for a registry without TLS",
        )
    digest: Digest | None = None
    if "@" in text:
        text, _, digest_text = text.partition("@")
        digest = Digest.parse(digest_text)
    tag: str | None = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], text[colon + 1 :]
        validate_tag(tag)
    first, sep, rest = text.partition("/")
    if sep and _looks_like_host(first):
        registry, repository = first, rest
    else:
        registry, repository = default_registry, text
    validate_registry(registry)
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    try:
        validate_repository(repository)
    except UsageError as exc:
        raise UsageError(f"invalid image reference {original!r}: {exc.message}", hint=exc.hint) from None
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest)


def join_repository(*parts: str) -> str:
    """Join repository path parts, ignoring empty ones: ('mirror/arcdata', 'arc-dns') → 'mirror/arcdata/arc-dns'."""
    return validate_repository("/".join(p.strip("/") for p in parts if p and p.strip("/")))
