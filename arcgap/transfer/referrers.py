"""Referrer discovery for a transfer: every referrer of every manifest carried, and referrers of referrers.

Pure orchestration over :mod:`arcgap.registry.referrers`: breadth first from the roots (an image's top manifest
and each index child), each subject asked once, to ``MAX_DEPTH`` levels (a signature on an SBOM on an image is
two). The registry is probed once: after the first subject whose API call answers 404, the rest go straight to
the fallback tag. ``types`` keeps only referrers of those artifact types (legacy cosign tags carry no type and
are always kept); a dropped referrer's own referrers are not asked (their subject would not be carried).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import parse_manifest
from arcgap.registry.client import RegistryClient
from arcgap.registry.referrers import Referrer, list_referrers

MAX_DEPTH = 4
MAX_REFERRERS = 10_000  # per run; a registry listing more is refused rather than followed


@dataclass
class Discovery:
    """What :func:`discover` found: the referrers in the order to place them (subjects before referrers)."""

    referrers: list[Referrer] = field(default_factory=list)
    has_api: bool | None = None  # None: never asked (no roots)

    def blobs(self) -> dict[Digest, tuple[int, str]]:
        """Config and layer blobs the referrers need: digest → (size, media type)."""
        out: dict[Digest, tuple[int, str]] = {}
        for r in self.referrers:
            parsed = parse_manifest(r.manifest.raw, r.manifest.media_type, what=f"referrer {r.manifest.digest}")
            for d in parsed.blobs:
                out.setdefault(d.digest, (d.size, d.media_type))
        return out

    def counts(self) -> dict[str, int]:
        """Referrers per artifact type (cosign legacy tags as ``tag:.sig`` …)."""
        out: dict[str, int] = {}
        for r in self.referrers:
            key = f"tag:{r.tag.rsplit('.', 1)[-1]}" if r.tag else (r.artifact_type or "unknown")
            out[key] = out.get(key, 0) + 1
        return out


def discover(client: RegistryClient, repository: str, roots: Iterable[Digest], *,
             types: frozenset[str] = frozenset(), has_api: bool | None = None) -> Discovery:
    """Referrers of ``roots`` in ``repository``, recursively; ``types`` (empty: all) filters by artifactType."""
    found = Discovery(has_api=has_api)
    asked: set[Digest] = set()
    level = list(dict.fromkeys(roots))
    seen: set[Digest] = set(level)
    for _ in range(MAX_DEPTH):
        following: list[Digest] = []
        for subject in level:
            if subject in asked:
                continue
            asked.add(subject)
            refs, answered = list_referrers(client, repository, subject,
                                            api=None if found.has_api is None else found.has_api)
            if found.has_api is None:
                found.has_api = answered
            for r in refs:
                if r.manifest.digest in seen:
                    continue
                seen.add(r.manifest.digest)
                if types and r.artifact_type not in types and not r.tag:
                    continue
                found.referrers.append(r)
                if len(found.referrers) > MAX_REFERRERS:
                    from arcgap.errors import RegistryError
                    raise RegistryError(f"{client.registry}/{repository}: more than {MAX_REFERRERS} referrers")
                following.append(r.manifest.digest)
        if not following:
            break
        level = following
    return found
