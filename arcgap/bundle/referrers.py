"""``referrers`` in arcgap.yaml (format version 5): the OCI 1.1 referrers a bundle carries.

Each entry names a referrer manifest (a signature, an SBOM, an attestation) carried among the bundle's blobs
(kind ``manifest``, listed with the other manifests before any config or layer, so the graph is checked before
big blobs arrive), the ``subject`` it refers to (an image's manifest, an index child, or another referrer), how
export found it (``api``, ``fallback`` or ``tag``: a legacy cosign tag, kept in ``tag``) and its artifact type.
Its config and layers are ordinary blobs. Entries are ordered subjects first, so placing them in order puts
every subject before its referrers.

Why a new format version: an arcgap that reads version 4 would keep ``referrers`` as an unknown field and import
the images without their signatures, and a site enforcing signature policy would then refuse them later with
no word of why. Version 5 makes it say "newer format" instead. A bundle without referrers stays at the lowest
version that describes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from arcgap.bundle import limits
from arcgap.errors import BundleFormatError, UsageError
from arcgap.oci.digest import Digest
from arcgap.oci.reference import validate_tag

REFERRERS_FORMAT_VERSION = 5
FOUND_BY = ("api", "fallback", "tag")
MAX_REFERRERS = limits.MAX_BLOBS


@dataclass(frozen=True)
class ReferrerEntry:
    image: str  # the image's ref_name ("name:tag") whose repository holds it
    subject: Digest
    digest: Digest
    media_type: str
    size: int
    artifact_type: str
    found_by: str  # one of FOUND_BY
    tag: str | None = None  # legacy cosign: sha256-<hex>.sig / .att / .sbom

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"image": self.image, "subject": str(self.subject), "digest": str(self.digest),
                               "media_type": self.media_type, "size": self.size,
                               "artifact_type": self.artifact_type, "found_by": self.found_by}
        if self.tag:
            doc["tag"] = self.tag
        return doc


def subject_of(raw: bytes) -> Digest | None:
    """The ``subject`` digest manifest bytes declare, or None."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    subject = doc.get("subject") if isinstance(doc, dict) else None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    if not isinstance(digest, str):
        return None
    try:
        return Digest.parse(digest)
    except UsageError:
        return None


def _fail(origin: str, text: str) -> BundleFormatError:
    return BundleFormatError(f"{origin}: {text}", hint="the bundle is damaged or was not written by arcgap")


def _field(obj: dict[str, Any], key: str, typ: type, origin: str, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise _fail(origin, f"{where}.{key}: missing or of the wrong type")
    if isinstance(value, str) and len(value) > limits.MAX_TEXT:
        raise _fail(origin, f"{where}.{key}: longer than {limits.MAX_TEXT} characters")
    if typ is int and not 0 <= value <= limits.MAX_MANIFEST_BYTES:
        raise _fail(origin, f"{where}.{key}: out of range")
    return value


def parse_referrers(doc: dict[str, Any], version: int, origin: str, *, manifests: dict[Digest, tuple[int, str]],
                    images: dict[str, set[Digest]]) -> tuple[ReferrerEntry, ...]:
    """Check ``referrers``: each digest a manifest blob of the bundle with that size and media type, each subject
    one of its image's manifests or a referrer listed before it, each image one of the bundle's."""
    listed = doc.get("referrers")
    if listed is None:
        return ()
    if version < REFERRERS_FORMAT_VERSION:
        raise _fail(origin, f"referrers needs format_version {REFERRERS_FORMAT_VERSION}, not {version}")
    if not isinstance(listed, list) or len(listed) > MAX_REFERRERS:
        raise _fail(origin, f"referrers: not a list of at most {MAX_REFERRERS} entries")
    out: list[ReferrerEntry] = []
    known: dict[str, set[Digest]] = {name: set(digests) for name, digests in images.items()}
    for n, item in enumerate(listed):
        where = f"referrers[{n}]"
        if not isinstance(item, dict):
            raise _fail(origin, f"{where}: not a mapping")
        try:
            entry = ReferrerEntry(
                image=_field(item, "image", str, origin, where),
                subject=Digest.parse(_field(item, "subject", str, origin, where)),
                digest=Digest.parse(_field(item, "digest", str, origin, where)),
                media_type=_field(item, "media_type", str, origin, where),
                size=_field(item, "size", int, origin, where),
                artifact_type=_field(item, "artifact_type", str, origin, where),
                found_by=_field(item, "found_by", str, origin, where),
                tag=validate_tag(item["tag"]) if isinstance(item.get("tag"), str) else None,
            )
        except UsageError as exc:
            raise _fail(origin, f"{where}: {exc.message}") from None
        if "tag" in item and entry.tag is None:
            raise _fail(origin, f"{where}.tag: not a string")
        if entry.found_by not in FOUND_BY or (entry.found_by == "tag") != (entry.tag is not None):
            raise _fail(origin, f"{where}: found_by {entry.found_by[:20]!r} does not fit its tag")
        if entry.tag is not None and not entry.tag.startswith(str(entry.subject).replace(":", "-", 1) + "."):
            raise _fail(origin, f"{where}: tag {entry.tag} is not a cosign tag of {entry.subject.short}")
        if entry.image not in known:
            raise _fail(origin, f"{where}: image {entry.image[:100]!r} is not in the bundle")
        if manifests.get(entry.digest) != (entry.size, entry.media_type):
            raise _fail(origin, f"{where}: {entry.digest.short} is not a manifest blob of that size and type")
        if entry.subject not in known[entry.image]:
            raise _fail(origin, f"{where}: subject {entry.subject.short} is neither a manifest of "
                                f"{entry.image[:100]} nor a referrer listed before")
        known[entry.image].add(entry.digest)
        out.append(entry)
    return tuple(out)
