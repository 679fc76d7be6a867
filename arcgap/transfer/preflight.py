"""``arcgap preflight``: is every image of a release at the target, under its reference, at its digest, with every
platform of an index, with every referrer a bundle carries for it (by digest, and listed for its subject by the
referrers API or the fallback tag)? Only the target is asked (HEAD/GET); nothing is written.

What is expected comes from a bundle's table of contents, an import receipt (digests known) or an image list
(presence only: a list names no digests). Each image is checked on its own thread (:func:`arcgap.util.parallel.each`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from arcgap.arc.imagelist import ImageList
from arcgap.bundle.format import TableOfContents
from arcgap.oci.digest import Digest
from arcgap.oci.mediatypes import is_index, parse_manifest
from arcgap.oci.reference import join_repository, validate_tag
from arcgap.registry.client import RegistryClient
from arcgap.registry.referrers import listed_referrers, probe_api
from arcgap.transfer.plan import map_targets
from arcgap.transfer.receipt import Receipt
from arcgap.util.parallel import DEFAULT_JOBS, each

OK, MISSING, DIFFERENT, INCOMPLETE, PRESENT = "ok", "missing", "different", "incomplete", "present"
# ok: at the expected digest with every platform (and, with blobs, every blob); present: there, but the input
# named no digest to compare (an image list); missing: the tag does not exist; different: the tag points at
# another digest; incomplete: at the expected digest, but a platform manifest (or a blob) is not there.


@dataclass(frozen=True)
class ExpectedReferrer:
    """A referrer the target should hold and list: by digest, and findable from its subject."""

    subject: Digest
    digest: Digest
    kind: str  # artifactType (or "tag:sig" … for a legacy cosign tag)
    tag: str | None = None  # legacy cosign: found under this tag, not by its subject

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "digest": str(self.digest), "subject": str(self.subject), "tag": self.tag}


@dataclass(frozen=True)
class Expected:
    """One image as the target should hold it."""

    name: str  # relative to the target repository ("arc-controller")
    repository: str  # full repository path at the target ("arcdata/arc-controller")
    tag: str
    digest: Digest | None  # None: an image list, which names no digest
    platforms: tuple[tuple[str, Digest], ...] = ()  # (os/arch[/variant], manifest digest) of an index's children
    referrers: tuple[ExpectedReferrer, ...] = ()  # a bundle's referrers of this image (subjects first)

    def reference(self, registry: str) -> str:
        return f"{registry}/{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Check:
    """What the target holds for one expected image."""

    expected: Expected
    status: str  # one of OK, PRESENT, MISSING, DIFFERENT, INCOMPLETE
    found: Digest | None  # the digest the tag points at (None: no such tag)
    problems: tuple[str, ...] = ()  # one line each: a missing platform or blob
    platforms_checked: int = 0
    blobs_checked: int = 0
    referrers_missing: tuple[ExpectedReferrer, ...] = ()  # not at the target, or not findable from the subject

    def to_dict(self, registry: str) -> dict[str, Any]:
        e = self.expected
        return {
            "reference": e.reference(registry),
            "name": e.name,
            "tag": e.tag,
            "status": self.status,
            "expected_digest": str(e.digest) if e.digest else None,
            "found_digest": str(self.found) if self.found else None,
            "platforms": [{"platform": p, "digest": str(d)} for p, d in e.platforms],
            "problems": list(self.problems),
            "platforms_checked": self.platforms_checked,
            "blobs_checked": self.blobs_checked,
            "referrers_checked": len(e.referrers),
            "referrers_missing": [r.to_dict() for r in self.referrers_missing],
        }


@dataclass
class PreflightResult:
    registry: str
    repository: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for c in self.checks if c.status == status)

    @property
    def ok(self) -> bool:
        return all(c.status in (OK, PRESENT) for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status not in (OK, PRESENT)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "preflight", "ok": self.ok,
            "target": {"registry": self.registry, "repository": self.repository},
            "images": [c.to_dict(self.registry) for c in self.checks],
            "checked": len(self.checks), "missing": self.count(MISSING), "different": self.count(DIFFERENT),
            "incomplete": self.count(INCOMPLETE), "unverified": self.count(PRESENT), "seconds": round(self.seconds, 3),
        }


# -- what is expected -----------------------------------------------------------------------------------------


def expected_from_toc(toc: TableOfContents, *, registry: str, repository: str,
                           tag: str | None) -> list[Expected]:
    """A bundle's images where ``arcgap import`` puts them (same mapping, same ``TARGET_DOCKER_TAG`` rule)."""
    return [
        Expected(t.entry.name, t.repository, t.tag, t.entry.digest,
                 tuple((p.platform, p.digest) for p in t.entry.platforms if p.digest != t.entry.digest),
                 tuple(ExpectedReferrer(r.subject, r.digest, _kind(r.artifact_type, r.tag), r.tag)
                       for r in toc.referrers if r.image == t.entry.ref_name))
        for t in map_targets(toc, registry=registry, repository=repository, tag=tag)
    ]


def _kind(artifact_type: str, tag: str | None) -> str:
    if tag is not None:
        return "tag:" + tag.rpartition(".")[2]
    return artifact_type or "unknown"


def expected_from_receipt(receipt: Receipt, *, repository: str) -> list[Expected]:
    """The images a receipt says the target received, moved under ``repository`` if it is not the receipt's."""
    out: list[Expected] = []
    prefix = f"{receipt.target_registry}/"
    for image in receipt.images:
        path, _, tag = image.target.removeprefix(prefix).rpartition(":")
        name = path.removeprefix(f"{receipt.target_repository}/") if receipt.target_repository else path
        validate_tag(tag)
        out.append(Expected(name, join_repository(repository, name), tag, image.digest,
                            tuple((p, d) for p, d in image.platforms if d != image.digest),
                            tuple(ExpectedReferrer(r.subject, r.digest, _kind(r.artifact_type, r.tag), r.tag)
                                  for r in image.referrers)))
    return out


def expected_from_list(image_list: ImageList, *, repository: str, tag: str) -> list[Expected]:
    """An image list's images at ``tag`` (an entry's own tag wins); no digests: presence and platforms only."""
    out: list[Expected] = []
    for entry in image_list.images:
        name = entry.name
        out.append(Expected(name, join_repository(repository, name), validate_tag(entry.tag or tag), None))
    return out


# -- the check ----------------------------------------------------------------------------------------------


class ApiProbe:
    """Does the target serve the referrers API? Asked once a run, by the first check that needs to know."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answer: bool | None = None

    def has_api(self, client: RegistryClient, repository: str, subject: Digest) -> bool:
        with self.lock:
            if self.answer is None:
                self.answer = probe_api(client, repository, subject)
            return self.answer


def check_image(client: RegistryClient, expected: Expected, *, blobs: bool = False,
                probe: ApiProbe | None = None) -> Check:
    """HEAD the tag; compare digests; HEAD every platform manifest of an index (GET the index first when the
    input named none); with ``blobs``, GET each image manifest and HEAD its config and layers."""
    repo = expected.repository
    found = client.head_manifest(repo, expected.tag)
    if found is None:
        return Check(expected, MISSING, None)
    if expected.digest is not None and found != expected.digest:
        return Check(expected, DIFFERENT, found)
    platforms = expected.platforms
    manifests: list[Digest] = []  # image manifests whose blobs to check
    if expected.digest is None or blobs:
        top = client.get_manifest(repo, str(found))  # by digest: the bytes are checked against it
        if is_index(top.media_type):
            parsed = parse_manifest(top.raw, top.media_type, what=expected.reference(client.registry))
            if expected.digest is None:
                platforms = tuple((c.platform or "unknown", c.digest) for c in parsed.children)
        else:
            manifests.append(found)
    problems: list[str] = []
    for platform, digest in platforms:
        if client.head_manifest(repo, str(digest)) is None:
            problems.append(f"platform {platform} ({digest}) is missing")
        else:
            manifests.append(digest)
    checked_blobs = 0
    if blobs:
        seen: set[Digest] = set()
        for digest in manifests:
            m = client.get_manifest(repo, str(digest))
            for d in parse_manifest(m.raw, m.media_type, what=f"{repo}@{digest}").blobs:
                if d.digest in seen:
                    continue
                seen.add(d.digest)
                checked_blobs += 1
                if not client.blob_exists(repo, d.digest):
                    problems.append(f"blob {d.digest} of {digest.short} is missing")
    missing_refs = tuple(_missing_referrers(client, repo, expected.referrers, probe or ApiProbe()))
    problems.extend(f"referrer {r.digest} ({r.kind}) of {r.subject.short} is missing" for r in missing_refs)
    status = INCOMPLETE if problems else (OK if expected.digest is not None else PRESENT)
    return Check(expected, status, found, tuple(problems), len(platforms), checked_blobs, missing_refs)


def _missing_referrers(client: RegistryClient, repo: str, wanted: Sequence[ExpectedReferrer],
                       probe: ApiProbe) -> list[ExpectedReferrer]:
    """The referrers the target does not hold by digest, or does not list for their subject (the referrers API,
    else the fallback tag index); a legacy cosign referrer must sit under its tag. One listing per subject."""
    listed: dict[Digest, set[Digest]] = {}
    missing: list[ExpectedReferrer] = []
    for ref in wanted:
        if ref.tag is not None:
            if client.head_manifest(repo, ref.tag) != ref.digest:
                missing.append(ref)
            continue
        if client.head_manifest(repo, str(ref.digest)) is None:
            missing.append(ref)
            continue
        if ref.subject not in listed:
            api = probe.has_api(client, repo, ref.subject)
            listed[ref.subject] = listed_referrers(client, repo, ref.subject, api=api)
        if ref.digest not in listed[ref.subject]:
            missing.append(ref)
    return missing


def preflight(client: RegistryClient, expected: Sequence[Expected], *, repository: str, jobs: int = DEFAULT_JOBS,
              blobs: bool = False) -> PreflightResult:
    """Check every expected image at the target, ``jobs`` at a time; results in the input's order."""
    started = time.monotonic()
    probe = ApiProbe()  # the referrers API: one probe a run, not one a subject
    checks = each(lambda e: check_image(client, e, blobs=blobs, probe=probe), expected, jobs=jobs,
                  name="arcgap-preflight")
    return PreflightResult(client.registry, repository, checks, time.monotonic() - started)
